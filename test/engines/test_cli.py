"""``ov2-ros export`` and ``ov2-ros build-engines`` through the console entry point."""
from __future__ import annotations

import importlib.util

import pytest

from ov2_ros.cli import main
from ov2_ros.engines import read_manifest


def test_export_command(tmp_path, capsys):
    assert main(["export", "--model", "tiny-random", "--out", str(tmp_path), "--parts", "sam2"]) == 0
    printed = capsys.readouterr().out
    assert "sam2_image_encoder" in printed and "max|ort-torch|" in printed
    assert [p.name for p in read_manifest(tmp_path).parts] == ["sam2_image_encoder", "sam2_mask_decoder"]


def test_export_bad_parts_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["export", "--out", str(tmp_path), "--parts", "radar"]) == 2
    assert "unknown parts ['radar']" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt imports here")
def test_build_engines_without_tensorrt(sam2_export, capsys):
    out, _ = sam2_export
    assert main(["build-engines", str(out), "--precision", "bf16"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ov2-ros build-engines: error:") and "TensorRT" in err and err.count("\n") == 1
