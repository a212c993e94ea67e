"""TensorRT: the missing-library path is real here; building needs TensorRT and a GPU and skips otherwise."""
from __future__ import annotations

import importlib.util

import pytest

from ov2_ros.engines import BackendUnavailableError, ManifestError
from ov2_ros.engines import tensorrt_backend as trt_backend

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.mark.skipif(HAS_TRT, reason="tensorrt imports here")
def test_missing_tensorrt_names_what_to_install(sam2_export, monkeypatch):
    out, _ = sam2_export
    with pytest.raises(BackendUnavailableError, match="tensorrt-cu12") as info:
        trt_backend.build_engines(out)
    assert isinstance(info.value, ImportError)
    monkeypatch.setattr(trt_backend, "is_jetson", lambda: True)
    with pytest.raises(ImportError, match="JetPack 6"):
        trt_backend.import_tensorrt()


def test_bad_export_dir_fails_before_tensorrt(tmp_path):
    with pytest.raises(ManifestError, match="no manifest"):
        trt_backend.build_engines(tmp_path)


def test_build_and_reuse_engines(sam2_export, tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installable in this environment (NVIDIA index only); "
                                           "run on Jetson (JetPack 6) or a desktop GPU with the TensorRT wheels")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT engines need a CUDA GPU")
    out, manifest = sam2_export
    built = trt_backend.build_engines(out, "fp16", cache_dir=tmp_path)
    assert set(built) == {p.name for p in manifest.parts}
    again = trt_backend.build_engines(out, "fp16", cache_dir=tmp_path, log=lambda m: None)
    assert again == built
