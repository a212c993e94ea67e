"""Where built TensorRT engines live, keyed so a stale engine is rebuilt instead of failing to deserialize.

An engine is only valid for the TensorRT version, the GPU (name and compute capability), the precision, the ONNX
it came from and the shape profiles it was built with. All of these go into the key; the key names the file, and a
sidecar JSON records the fields so a reader can say *why* an engine did not match.
"""
from __future__ import annotations

import hashlib
import json
import pathlib
import re
from dataclasses import asdict, dataclass

from ov2_ros.engines.manifest import PartSpec
from ov2_ros.errors import ConfigError

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "fp8")


@dataclass(frozen=True)
class Target:
    """The build machine: engines do not move between TensorRT versions or GPU architectures."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]


@dataclass(frozen=True)
class EngineKey:
    part: str
    onnx_sha256: str
    precision: str
    profiles: str                   # canonical JSON of the part's shape profiles
    target: Target

    @property
    def digest(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def file_name(self) -> str:
        gpu = re.sub(r"[^A-Za-z0-9]+", "-", self.target.gpu_name).strip("-").lower()
        sm = "".join(map(str, self.target.compute_capability))
        return f"{self.part}.{self.precision}.trt{self.target.tensorrt_version}.sm{sm}.{gpu}.{self.digest}.engine"


def file_sha256(path: str | pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def engine_key(export_dir: str | pathlib.Path, part: PartSpec, precision: str, target: Target) -> EngineKey:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    profiles = json.dumps([asdict(p) for p in part.profiles], sort_keys=True)
    return EngineKey(part=part.name, onnx_sha256=file_sha256(pathlib.Path(export_dir) / part.file),
                     precision=precision, profiles=profiles, target=target)


class EngineCache:
    """A directory of engines plus ``<engine>.json`` sidecars with the key fields."""

    def __init__(self, root: str | pathlib.Path):
        self.root = pathlib.Path(root)

    def path(self, key: EngineKey) -> pathlib.Path:
        return self.root / key.file_name

    def lookup(self, key: EngineKey) -> pathlib.Path | None:
        """The engine for exactly this key, or None (then build it)."""
        path = self.path(key)
        sidecar = path.with_suffix(".json")
        if not (path.is_file() and sidecar.is_file()):
            return None
        try:
            recorded = json.loads(sidecar.read_text())
        except ValueError:
            return None
        return path if recorded == json.loads(json.dumps(asdict(key))) else None

    def stale(self, key: EngineKey) -> list[pathlib.Path]:
        """Engines of the same part built for another key (other TRT, GPU, precision, ONNX or shapes)."""
        return sorted(p for p in self.root.glob(f"{key.part}.*.engine") if p.name != key.file_name)

    def store(self, key: EngineKey, engine_bytes: bytes) -> pathlib.Path:
        """Write the engine and its sidecar; remove stale engines of the same part and precision."""
        self.root.mkdir(parents=True, exist_ok=True)
        for old in self.stale(key):
            if f".{key.precision}." in old.name:
                old.unlink(missing_ok=True)
                old.with_suffix(".json").unlink(missing_ok=True)
        path = self.path(key)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(engine_bytes)
        tmp.replace(path)     # atomic: a crash mid-write never leaves a truncated engine under the real name
        path.with_suffix(".json").write_text(json.dumps(asdict(key), indent=2, sort_keys=True) + "\n")
        return path
