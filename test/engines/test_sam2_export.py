"""SAM2 image encoder and prompt/mask decoder: ONNX verified against torch in onnxruntime."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ov2_ros.engines import read_manifest
from ov2_ros.engines.onnx_io import ort_session, torch_outputs
from ov2_ros.engines.sam2_parts import Sam2ImageEncoder, Sam2PromptMaskDecoder, sam2_example_inputs
from ov2_ros.engines.manifest import state_dict_hash
from ov2_ros.segment import load_sam2
from ov2_ros.segment.imaging import frame_to_pixel_values, points_to_model


def test_manifest_describes_the_parts(sam2_export):
    out, manifest = sam2_export
    assert read_manifest(out) == manifest
    raw = json.loads((out / "manifest.json").read_text())
    assert raw["opset"] == 17 and raw["model"] == "tiny-random"
    enc, dec = manifest.part("sam2_image_encoder"), manifest.part("sam2_mask_decoder")
    assert [t.name for t in enc.inputs] == ["pixel_values"] and enc.inputs[0].shape == (1, 3, 64, 64)
    assert [(t.name, t.shape) for t in enc.outputs] == [
        ("high_res_feat0", (1, 16, 16, 16)), ("high_res_feat1", (1, 32, 8, 8)), ("image_embed", (1, 128, 4, 4)),
        ("image_pos_embed", (1, 128, 4, 4))]
    assert {t.name: t.shape for t in dec.inputs}["point_coords"] == (1, 1, "num_points", 2)
    assert {t.name: t.dtype for t in dec.inputs}["point_labels"] == "int32"
    assert dec.profiles[0].shapes["point_labels"] == ((1, 1, 1), (1, 1, 2), (1, 1, 16))
    assert enc.source_hash == dec.source_hash == state_dict_hash(load_sam2("tiny-random"))
    for part in manifest.parts:
        assert part.max_abs_diff < 1e-4 and (out / part.file).stat().st_size > 10_000


def test_onnx_matches_torch_on_decoded_frames_and_other_point_counts(sam2_export, small_frames):
    out, _ = sam2_export
    sam2 = load_sam2("tiny-random")
    enc = ort_session(out / "sam2_image_encoder.onnx")
    pixels = frame_to_pixel_values(small_frames[40], 64)[None]       # a real decoded H.264 frame
    got = enc.run(None, {"pixel_values": pixels.numpy()})
    ref = torch_outputs(Sam2ImageEncoder(sam2), {"pixel_values": pixels})
    assert max(np.abs(a - b).max() for a, b in zip(got, ref)) < 1e-4

    dec = ort_session(out / "sam2_mask_decoder.onnx")
    feat0, feat1, embed, _ = (torch.from_numpy(a) for a in got)
    for n in (1, 5, 16):
        pts = points_to_model(np.array([[10 + 9 * i, 20 + 5 * i] for i in range(n)], np.float32), (120, 160), 64)
        inputs = {"image_embed": embed, "high_res_feat0": feat0, "high_res_feat1": feat1, "point_coords": pts,
                  "point_labels": torch.tensor([[[1] + [0] * (n - 1)]], dtype=torch.int32)}
        mine = dec.run(None, {k: v.numpy() for k, v in inputs.items()})
        theirs = torch_outputs(Sam2PromptMaskDecoder(sam2), inputs)
        assert [m.shape for m in mine] == [(1, 1, 16, 16), (1, 1, 1), (1, 1, 1), (1, 1, 128)]
        assert max(np.abs(a - b).max() for a, b in zip(mine, theirs)) < 1e-4


def test_example_inputs_are_deterministic():
    sam2 = load_sam2("tiny-random")
    a, b = sam2_example_inputs(sam2, 3), sam2_example_inputs(sam2, 3)
    assert all(torch.equal(a[1][k], b[1][k]) for k in a[1])


def test_unknown_parts_rejected(tmp_path):
    from ov2_ros.engines.export import export_model
    from ov2_ros.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown parts \\['lidar'\\]"):
        export_model("tiny-random", tmp_path, parts=("sam2", "lidar"))
    assert not (tmp_path / "manifest.json").exists()


def test_tracker_with_the_onnx_image_encoder_matches_torch(sam2_export, small_frames):
    """MaskTracker with the exported encoder in onnxruntime tracks like the all-torch tracker."""
    from ov2_ros.engines.sam2_parts import OrtSam2ImageEncoder
    from ov2_ros.segment import MaskTracker

    out, _ = sam2_export
    plain = MaskTracker("tiny-random")
    onnx = MaskTracker("tiny-random", image_encoder=OrtSam2ImageEncoder(out / "sam2_image_encoder.onnx", threads=1))
    def torch_encoder_must_not_run(*args, **kwargs):
        raise AssertionError("the torch image encoder ran although an external one was given")

    onnx.model.get_image_features = torch_encoder_must_not_run
    for tracker in (plain, onnx):
        tracker.add_points(28, 1, [[40, 60]], [1])
        tracker.add_points(28, 2, [[120, 30]], [1])
    agree = []
    for i in range(28, 48):
        a, b = plain.push(i, small_frames[i]), onnx.push(i, small_frames[i])
        assert a.keys() == b.keys() == {1, 2}
        for k in a:
            assert abs(a[k].score - b[k].score) < 1e-3
            agree.append(np.mean(a[k].mask == b[k].mask))
    assert min(agree) > 0.995 and np.mean(agree) > 0.999
