"""CodecWindow -> model inputs: pixels as the release's image processor makes them, positions, prompt runs."""
from __future__ import annotations

import re

import numpy as np
import pytest

from ov2_ros.codec.synth import event_frames
from ov2_ros.model import ProcessorError, load_tokenizer, window_from_frames
from ov2_ros.model.processor import frame_runs, normalise_patches, prepare_inputs, vision_inputs


def test_patches_equal_the_qwen2vl_image_processor():
    """Same normalisation and 2x2-block patch order as transformers' Qwen2-VL processor (temporal_patch_size 1)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    img = np.random.default_rng(0).integers(0, 256, (56, 84, 3), dtype=np.uint8)
    ref = Qwen2VLImageProcessorPil(temporal_patch_size=1, merge_size=2, patch_size=14)(
        images=[img], do_resize=False, return_tensors="np")
    np.testing.assert_allclose(normalise_patches(img), ref["pixel_values"], atol=1e-5)
    assert ref["image_grid_thw"].tolist() == [[1, 4, 6]]


def test_vision_inputs_rows_follow_canvas_positions(windows):
    window = windows[-1]
    v = vision_inputs(window)
    n, (h, w) = len(window.canvases), window.canvas_size
    assert v.video_grid_thw.tolist() == [[n, h // 14, w // 14]]
    assert v.pixel_values_videos.shape == (n * (h // 14) * (w // 14), 3 * 14 * 14)
    np.testing.assert_array_equal(v.patch_positions.numpy(), window.patch_positions)
    assert len(v.token_frames) == window.num_tokens
    # the four patches of every merged token come from one 2x2 block of one frame
    blocks = v.patch_positions.numpy().reshape(-1, 4, 3)
    assert (blocks[:, :, 0] == blocks[:, :1, 0]).all()


def test_prompt_has_one_timed_run_per_same_frame_stretch(windows):
    window = windows[-1]
    inputs = prepare_inputs(window, "what moves?", load_tokenizer())
    runs = re.findall(r"<(\d+\.\d) seconds><\|vision_start\|>((?:<\|video_pad\|>)+)<\|vision_end\|>", inputs.prompt)
    expected = frame_runs(vision_inputs(window).token_frames)
    assert [(float(t), len(p) // len("<|video_pad|>")) for t, p in runs] == \
        [(round(window.frame_times[f], 1), n) for f, n in expected]
    assert sum(n for _, n in expected) == window.num_tokens
    assert inputs.prompt.rstrip().endswith("<|im_start|>assistant")
    assert "what moves?" in inputs.prompt


def test_padding_tokens_join_the_run_before():
    assert frame_runs(np.array([-1, 3, 3, -1, 5, -1, -1])) == [(3, 4), (5, 3)]
    with pytest.raises(ProcessorError, match="only padding"):
        frame_runs(np.array([-1, -1]))


def test_uniform_frames_make_whole_frame_windows():
    frames = [f for f, _ in event_frames(160, 120)][:8]
    window = window_from_frames(frames, [0, 4, 8, 12, 16, 20, 24, 28], fps=30.0)
    assert [len(g.canvases) for g in window.groups] == [4, 4]
    assert window.frame_times[4] == pytest.approx(4 / 30)
    runs = frame_runs(vision_inputs(window).token_frames)
    assert [f for f, _ in runs] == [0, 4, 8, 12, 16, 20, 24, 28]
    with pytest.raises(ProcessorError, match="one frame index per frame"):
        window_from_frames(frames, [0], fps=30.0)


def test_bad_canvas_is_rejected(windows):
    from dataclasses import replace

    window = windows[0]
    group = window.groups[0]
    bad = replace(group.canvases[1], pixels=group.canvases[1].pixels[:28])
    broken = replace(window, groups=(replace(group, canvases=(group.canvases[0], bad) + group.canvases[2:]),))
    with pytest.raises(ProcessorError, match="canvas 1"):
        vision_inputs(broken)
