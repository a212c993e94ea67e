"""``manifest.json``: what an export directory holds, so engine builders and runtimes need no model code.

One ``PartSpec`` per ONNX file with its tensors' names, shapes (ints, or strings for dynamic axes), dtypes,
optimisation profiles (min/opt/max shapes per dynamic input, used by TensorRT) and the torch-vs-onnxruntime check.
"""
from __future__ import annotations

import hashlib
import json
import pathlib
from dataclasses import asdict, dataclass, field
from typing import Any

from ov2_ros.engines.errors import ManifestError

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
Dim = int | str


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[Dim, ...]
    dtype: str                      # numpy dtype name: float32, int32, int64...


@dataclass(frozen=True)
class Profile:
    """One optimisation profile: input name -> (min, opt, max) shape. Empty for fully static parts."""

    name: str
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]


@dataclass(frozen=True)
class PartSpec:
    name: str                       # e.g. sam2_image_encoder
    file: str                       # ONNX file name, relative to the manifest
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    profiles: tuple[Profile, ...] = ()
    max_abs_diff: float | None = None   # onnxruntime vs torch on the verification inputs
    tolerance: float | None = None
    source_model: str = ""              # the checkpoint this part came from
    source_hash: str = ""               # state_dict_hash of that checkpoint


@dataclass(frozen=True)
class Manifest:
    model: str                      # what was exported: "tiny-random", an HF id or a path
    source_hash: str                # sha256 over the parts' source hashes (changes when any weight changes)
    opset: int
    parts: tuple[PartSpec, ...]
    version: int = MANIFEST_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def part(self, name: str) -> PartSpec:
        for p in self.parts:
            if p.name == name:
                return p
        raise ManifestError(f"manifest has no part {name!r} (parts: {[p.name for p in self.parts]})")


def state_dict_hash(module) -> str:
    """sha256 of a module's weights, stable across processes (sorted names; shape, dtype and raw bytes)."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def combined_hash(parts) -> str:
    return hashlib.sha256("".join(f"{p.name}={p.source_hash};" for p in parts).encode()).hexdigest()


def write_manifest(manifest: Manifest, out_dir: str | pathlib.Path) -> pathlib.Path:
    path = pathlib.Path(out_dir) / MANIFEST_NAME
    path.write_text(json.dumps(asdict(manifest), indent=2) + "\n")
    return path


def read_manifest(export_dir: str | pathlib.Path) -> Manifest:
    """Parse and check ``DIR/manifest.json``: every part's ONNX file must exist next to it."""
    root = pathlib.Path(export_dir)
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"{path}: no manifest (run `ov2-ros export --out {root}` first)")
    try:
        raw = json.loads(path.read_text())
        if raw.get("version") != MANIFEST_VERSION:
            raise ManifestError(f"{path}: manifest version {raw.get('version')!r}, expected {MANIFEST_VERSION}")
        parts = tuple(_part(p) for p in raw["parts"])
        manifest = Manifest(model=raw["model"], source_hash=raw["source_hash"], opset=int(raw["opset"]),
                            parts=parts, version=raw["version"], extra=raw.get("extra", {}))
    except ManifestError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise ManifestError(f"{path}: malformed manifest ({type(exc).__name__}: {exc})") from exc
    for part in manifest.parts:
        if not (root / part.file).is_file():
            raise ManifestError(f"{path}: part {part.name!r} names {part.file}, which is missing")
    return manifest


def _tensor(raw: dict) -> TensorSpec:
    return TensorSpec(name=raw["name"], shape=tuple(raw["shape"]), dtype=raw["dtype"])


def _part(raw: dict) -> PartSpec:
    profiles = tuple(
        Profile(name=p["name"], shapes={k: tuple(tuple(int(d) for d in s) for s in v) for k, v in p["shapes"].items()})
        for p in raw.get("profiles", ()))
    return PartSpec(name=raw["name"], file=raw["file"], inputs=tuple(_tensor(t) for t in raw["inputs"]),
                    outputs=tuple(_tensor(t) for t in raw["outputs"]), profiles=profiles,
                    max_abs_diff=raw.get("max_abs_diff"), tolerance=raw.get("tolerance"),
                    source_model=raw.get("source_model", ""), source_hash=raw.get("source_hash", ""))
