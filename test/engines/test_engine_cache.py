"""Engine cache keys: any change of TensorRT, GPU, precision, ONNX or shapes means a rebuild."""
from __future__ import annotations

import dataclasses

import pytest

from ov2_ros.engines.engine_cache import EngineCache, Target, engine_key
from ov2_ros.errors import ConfigError

ORIN = Target("10.3.0", "Orin (nvgpu)", (8, 7))


@pytest.fixture()
def part(sam2_export):
    out, manifest = sam2_export
    return out, manifest.part("sam2_mask_decoder")


def test_key_changes_with_every_field(part, tmp_path):
    out, spec = part
    base = engine_key(out, spec, "fp16", ORIN)
    assert base == engine_key(out, spec, "fp16", ORIN)
    variants = [
        engine_key(out, spec, "bf16", ORIN),
        engine_key(out, spec, "fp16", dataclasses.replace(ORIN, tensorrt_version="10.7.0")),
        engine_key(out, spec, "fp16", Target("NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 4090", (8, 9))),
        engine_key(out, spec, "fp16", dataclasses.replace(ORIN, compute_capability=(8, 6))),
        engine_key(out, dataclasses.replace(spec, profiles=()), "fp16", ORIN),
    ]
    other_onnx = tmp_path / spec.file
    other_onnx.write_bytes((out / spec.file).read_bytes() + b"\0")
    variants.append(engine_key(tmp_path, spec, "fp16", ORIN))
    names = {v.file_name for v in variants} | {base.file_name}
    assert len(names) == len(variants) + 1
    assert base.file_name.startswith("sam2_mask_decoder.fp16.trt10.3.0.sm87.orin-nvgpu.")
    with pytest.raises(ConfigError, match="precision must be one of"):
        engine_key(out, spec, "int4", ORIN)


def test_lookup_store_and_stale_rebuild(part, tmp_path):
    out, spec = part
    cache = EngineCache(tmp_path / "engines")
    old = engine_key(out, spec, "fp16", ORIN)
    assert cache.lookup(old) is None
    path = cache.store(old, b"engine-v1")
    assert cache.lookup(old) == path and path.read_bytes() == b"engine-v1"

    upgraded = engine_key(out, spec, "fp16", dataclasses.replace(ORIN, tensorrt_version="10.7.0"))
    assert cache.lookup(upgraded) is None and cache.stale(upgraded) == [path]
    new_path = cache.store(upgraded, b"engine-v2")       # the stale fp16 engine is replaced
    assert not path.exists() and not path.with_suffix(".json").exists()
    assert cache.lookup(upgraded) == new_path

    bf16 = cache.store(engine_key(out, spec, "bf16", ORIN), b"engine-bf16")   # other precisions coexist
    assert new_path.exists() and bf16.exists()


def test_tampered_sidecar_is_a_miss(part, tmp_path):
    out, spec = part
    cache = EngineCache(tmp_path)
    key = engine_key(out, spec, "fp16", ORIN)
    path = cache.store(key, b"x")
    path.with_suffix(".json").write_text('{"part": "other"}')
    assert cache.lookup(key) is None
    path.with_suffix(".json").write_text("{broken")
    assert cache.lookup(key) is None
