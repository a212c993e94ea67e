"""manifest.json round trip and its bad cases."""
from __future__ import annotations

import json

import pytest

from ov2_ros.engines import Manifest, ManifestError, PartSpec, Profile, TensorSpec, read_manifest, write_manifest


def manifest() -> Manifest:
    part = PartSpec(name="p", file="p.onnx", inputs=(TensorSpec("x", (1, "n", 3), "float32"),),
                    outputs=(TensorSpec("y", (1, "n"), "float32"),),
                    profiles=(Profile("n", {"x": ((1, 1, 3), (1, 4, 3), (1, 8, 3))}),), max_abs_diff=1e-6,
                    tolerance=1e-4, source_model="m", source_hash="ab")
    return Manifest(model="m", source_hash="cd", opset=17, parts=(part,))


def test_round_trip(tmp_path):
    (tmp_path / "p.onnx").write_bytes(b"onnx")
    write_manifest(manifest(), tmp_path)
    assert read_manifest(tmp_path) == manifest()
    assert manifest().part("p").profiles[0].shapes["x"][2] == (1, 8, 3)
    with pytest.raises(ManifestError, match="no part 'q'"):
        manifest().part("q")


@pytest.mark.parametrize("mutate, msg", [
    (lambda d: d.update(version=99), "manifest version 99"),
    (lambda d: d.pop("parts"), "malformed manifest \\(KeyError"),
    (lambda d: d["parts"][0].update(file="gone.onnx"), "names gone.onnx, which is missing"),
])
def test_bad_manifests(tmp_path, mutate, msg):
    (tmp_path / "p.onnx").write_bytes(b"onnx")
    write_manifest(manifest(), tmp_path)
    raw = json.loads((tmp_path / "manifest.json").read_text())
    mutate(raw)
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=msg):
        read_manifest(tmp_path)


def test_missing_and_corrupt(tmp_path):
    with pytest.raises(ManifestError, match="no manifest"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="malformed"):
        read_manifest(tmp_path)
