"""CodecWindow -> model inputs: the official helper's prompt token for token, its pixels and positions, bounded time,
and a vision cache that keeps hitting while the window slides."""
from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ov2_ros.codec.synth import event_frames
from ov2_ros.model import ProcessorError, load_tokenizer, parse_answer, window_from_frames
from ov2_ros.model.loading import build_tiny_random
from ov2_ros.model.processor import (frame_runs, model_groups, normalise_patches, prepare_inputs, time_base,
                                     token_frames, vision_inputs)
from ov2_ros.model.timebase import TIME_EPOCH_S, time_origin
from ov2_ros.model.vision_cache import VisionCache

FIXTURES = Path(__file__).parent / "fixtures"
_spec = importlib.util.spec_from_file_location("official_prompt", FIXTURES / "official_prompt.py")
official = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(official)
RUN = re.compile(r"<(\d+\.\d) seconds><\|vision_start\|>((?:<\|image_pad\|>)+)<\|vision_end\|>\n")


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_random(seed=4)


def test_patches_equal_the_qwen2vl_image_processor():
    """Same normalisation and 2x2-block patch order as transformers' Qwen2-VL processor (temporal_patch_size 1)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    img = np.random.default_rng(0).integers(0, 256, (56, 84, 3), dtype=np.uint8)
    ref = Qwen2VLImageProcessorPil(temporal_patch_size=1, merge_size=2, patch_size=14)(
        images=[img], do_resize=False, return_tensors="np")
    np.testing.assert_allclose(normalise_patches(img), ref["pixel_values"], atol=1e-5)
    assert ref["image_grid_thw"].tolist() == [[1, 4, 6]]


def test_prompt_tokens_positions_and_pixels_equal_the_official_helper():
    """``official_prompt.json`` holds what codec-video-prep's ``prepare_llava_onevision_inputs`` made of the same
    canvases and positions (see ``fixtures/official_prompt.py``, which regenerates it)."""
    ref = json.loads((FIXTURES / "official_prompt.json").read_text())
    window = official.build_window()
    assert official.canvas_digest(window) == ref["canvas_digest"]      # the same canvases as the fixture's
    tokenizer = load_tokenizer("tiny-random")
    inputs = prepare_inputs(window, ref["instruction"], tokenizer)
    assert inputs.prompt == ref["prompt"]
    assert inputs.input_ids[0].tolist() == ref["input_ids"]
    v = inputs.vision
    assert v.patch_positions.tolist() == ref["patch_positions"]
    # the helper drops the padding canvas too; it passes one grid row per canvas, we one per group (see processor)
    assert [c for c, _, _ in ref["image_grid_thw"]] == [1] * 7
    assert v.video_grid_thw.tolist() == [[4, 4, 6], [3, 4, 6]]
    sums = v.pixel_values_videos.double().sum(1).numpy()
    np.testing.assert_allclose(sums, ref["pixel_patch_sums"], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(v.pixel_values_videos[0].numpy(), ref["pixel_first_patch"], atol=1e-4)


def test_the_forward_finds_one_image_pad_per_vision_token(tiny):
    window = official.build_window()
    inputs = prepare_inputs(window, "what moves?", load_tokenizer())
    n_tokens = inputs.vision.patch_positions.shape[0] // 4
    assert int((inputs.input_ids == tiny.config.image_token_id).sum()) == n_tokens
    assert int((inputs.input_ids == tiny.config.video_token_id).sum()) == 0
    with torch.no_grad():
        out = tiny(**inputs.as_kwargs())
        features = tiny.model.get_video_features(inputs.vision.pixel_values_videos, inputs.vision.video_grid_thw,
                                                 inputs.vision.patch_positions)
    assert features.shape[0] == n_tokens and torch.isfinite(out.logits).all()


def test_codec_windows_prompt_runs_match_the_features(windows):
    window = windows[-1]
    inputs = prepare_inputs(window, "what moves?", load_tokenizer())
    runs = RUN.findall(inputs.prompt)
    expected = frame_runs(token_frames(window))
    origin = time_origin(window.frame_times)
    assert [(float(t), len(p) // len("<|image_pad|>")) for t, p in runs] == \
        [(float(f"{window.frame_times[f] - origin:.1f}"), n) for f, n in expected]
    assert sum(n for _, n in expected) == inputs.vision.patch_positions.shape[0] // 4
    assert inputs.prompt.endswith("<|vision_end|>\nwhat moves?<|im_end|>\n<|im_start|>assistant\n")


def test_vision_rows_are_the_groups_and_t_counts_frames_from_the_origin(windows):
    window = windows[-1]
    v = vision_inputs(window)
    (h, w), n = window.canvas_size, len(window.canvases)
    assert v.video_grid_thw.tolist() == [[len(g.canvases), h // 14, w // 14] for g in window.groups]
    assert v.pixel_values_videos.shape == (n * (h // 14) * (w // 14), 3 * 14 * 14)
    absolute = window.patch_positions.astype(np.int64)
    base = time_base(window)
    real = absolute[:, 0] >= 0
    ts = np.array([base.model_t(window.frame_times[int(f)]) for f in absolute[real, 0]])
    np.testing.assert_array_equal(v.patch_positions.numpy()[real], np.c_[ts, absolute[real, 1:]])
    assert (v.patch_positions.numpy()[~real] == absolute[~real]).all()
    np.testing.assert_array_equal(v.token_frames, absolute[::4, 0])
    blocks = v.patch_positions.numpy().reshape(-1, 4, 3)    # each merged token: one 2x2 block of one frame
    assert (blocks[:, :, 0] == blocks[:, :1, 0]).all()


def test_padding_tokens_join_the_run_before():
    assert frame_runs(np.array([-1, 3, 3, -1, 5, -1, -1])) == [(3, 4), (5, 3)]
    with pytest.raises(ProcessorError, match="only padding"):
        frame_runs(np.array([-1, -1]))


def test_padding_canvases_are_dropped_and_windows_without_them_match(tiny):
    """The fixture's second group carries a padding canvas; a window built without it gives the same inputs."""
    window = official.build_window()
    assert sum(len(g) for g in model_groups(window)) == len(window.canvases) - 1
    stripped = replace(window, groups=tuple(
        replace(g, canvases=tuple(c for c in g.canvases if (c.positions[:, 0] >= 0).any())) for g in window.groups))
    tok = load_tokenizer()
    a, b = prepare_inputs(window, "x", tok), prepare_inputs(stripped, "x", tok)
    assert a.prompt == b.prompt
    for name in ("pixel_values_videos", "video_grid_thw", "patch_positions"):
        assert torch.equal(getattr(a.vision, name), getattr(b.vision, name))
    only_padding = replace(window, groups=(replace(window.groups[1], canvases=window.groups[1].canvases[3:]),))
    with pytest.raises(ProcessorError, match="no canvas with a source patch"):
        prepare_inputs(only_padding, "x", tok)


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
    window = windows[0]
    group = window.groups[0]
    bad = replace(group.canvases[1], pixels=group.canvases[1].pixels[:28])
    broken = replace(window, groups=(replace(group, canvases=(group.canvases[0], bad) + group.canvases[2:]),))
    with pytest.raises(ProcessorError, match="canvas 1"):
        vision_inputs(broken)


# -- bounded time ----------------------------------------------------------------------------------------------------
FPS = 30.0
EPOCH = int(TIME_EPOCH_S * FPS)          # frames per time epoch
THREE_HOURS = 3 * 3600 * 30              # frames of a 3-hour stream at 30 fps


@pytest.mark.parametrize("start", [0, 17_990, 54_321, 200_000, THREE_HOURS - 30])
def test_three_hour_stream_times_stay_bounded_and_answers_map_back(start):
    """Anywhere in a 3-hour 30 fps stream, the model sees t and seconds within one epoch plus the window's span,
    exactly the inputs the same content gets at that offset within the first epoch; answers map back to the
    window's own source frames, seconds and stamps."""
    tok = load_tokenizer()
    window = official.build_window(start)
    inputs = prepare_inputs(window, "x", tok)
    first = prepare_inputs(official.build_window(start % EPOCH), "x", tok)
    assert inputs.input_ids.tolist() == first.input_ids.tolist()
    assert torch.equal(inputs.vision.patch_positions, first.vision.patch_positions)
    span = window.end_frame - window.start_frame
    t = inputs.vision.patch_positions[:, 0]
    assert 0 <= int(t.min()) and int(t.max()) < EPOCH + span
    seconds = [float(x) for x, _ in RUN.findall(inputs.prompt)]
    assert 0 <= min(seconds) and max(seconds) < TIME_EPOCH_S + span / FPS
    # the model answers in the prompt's seconds; parse_answer adds the origin and snaps to source frames
    origin = time_origin(window.frame_times)
    t0 = window.frame_times[start] - origin
    text = f'<tracks coords="{t0:.2f} 0 500 500;{t0 + 0.4:.2f} 0 250 750">\nthe mug\n</tracks>'
    answer = parse_answer("track", text, window.frame_times, window.source_size)
    assert not answer.errors
    assert [p.frame for p in answer.tracks] == [start, start + 12]
    assert [window.frame_stamps[p.frame] for p in answer.tracks] == [start, start + 12]
    assert answer.tracks[1].time_s == pytest.approx((start + 12) / FPS)
    text = f"Predicted interval {t0 + 0.1:.1f}–{t0 + 0.3:.1f} s"
    span_s = parse_answer("ground", text, window.frame_times, window.source_size).spans[0]
    assert (span_s.start_s, span_s.end_s) == pytest.approx((start / FPS + 0.1, start / FPS + 0.3), abs=0.051)


def _sharp(model):
    """tiny-random with 8x query/key weights: random init attends almost uniformly, which hides position effects."""
    e = model.config.vision_config.hidden_size
    with torch.no_grad():
        for layer in model.model.visual.encoder.layers:
            layer.self_attn.qkv.weight[:2 * e] *= 8.0
    return model


def test_the_release_vision_rope_is_not_relative_so_t_shifts_change_the_output():
    """Why time origins move by epochs (see processor): a constant t shift of a group changes its ViT output, as
    much as shifting half its patches does; only identical positions give identical output."""
    from ov2_ros.model.vision import VisionRotaryEmbedding, apply_rope

    model = _sharp(build_tiny_random(seed=4))
    rope = VisionRotaryEmbedding(model.config.vision_config)
    q, k = torch.randn(2, 1, 1, 1, model.config.vision_config.head_dim, generator=torch.Generator().manual_seed(0))
    dots = []
    for shift in (0, 5, 1000):      # same (dt, dh, dw) between the query and the key, other absolute positions
        a = rope(torch.tensor([[3 + shift, 1, 2]]))
        b = rope(torch.tensor([[1 + shift, 1, 2]]))
        qa, _ = apply_rope(q, q, torch.cat([a, a], -1)[None])
        kb, _ = apply_rope(k, k, torch.cat([b, b], -1)[None])
        dots.append(float((qa * kb).sum()))
    assert max(dots) - min(dots) > 0.1 * max(abs(d) for d in dots)
    v = vision_inputs(official.build_window(0))
    rows = int(v.video_grid_thw[0].prod())
    pixels, grid, pos = v.pixel_values_videos[:rows], v.video_grid_thw[:1], v.patch_positions[:rows]
    with torch.no_grad():
        base = model.model.get_video_features(pixels, grid, pos)
        assert torch.equal(model.model.get_video_features(pixels, grid, pos.clone()), base)
        half = pos.clone()
        half[: rows // 2, 0] += 5
        moved_half = (model.model.get_video_features(pixels, grid, half) - base).abs().max()
        for k in (1, 960):
            shifted = pos.clone()
            shifted[:, 0] += k
            assert (model.model.get_video_features(pixels, grid, shifted) - base).abs().max() > 0.3 * moved_half


def test_vision_cache_hits_every_group_but_the_new_one_when_the_window_slides(windows, tiny):
    """Real tokenizer windows slide by one group; the cache re-encodes only the new group, and returns exactly
    what a fresh encode of the window gives."""
    cache = VisionCache(capacity=16)
    assert all(len(g.canvases) == 4 for w in windows for g in w.groups)     # one chunk per group
    seen: set[int] = set()
    with torch.no_grad():
        for w in windows:
            groups = {g.index for g in w.groups}
            before = cache.stats
            out = cache.encode(tiny, w)
            assert cache.stats.misses - before.misses == len(groups - seen)
            assert cache.stats.hits - before.hits == len(groups & seen)
            seen |= groups
            v = vision_inputs(w)
            fresh = tiny.model.get_video_features(v.pixel_values_videos, v.video_grid_thw, v.patch_positions)
            torch.testing.assert_close(out, fresh, rtol=0, atol=0)
    assert cache.stats.misses == len(seen)
    assert cache.stats.hits == sum(len(w.groups) for w in windows) - len(seen) >= len(windows) - 1


def _stream_windows(first_group: int, count: int, per_window: int = 4, frames: int = 240):
    """Windows of ``per_window`` groups sliding one group at a time over a 30 fps stream; group g covers
    [g * frames, (g + 1) * frames) with one I-canvas and three P-canvases of 28x56 seeded pixels."""
    from ov2_ros.codec.types import Canvas, CodecWindow, FrameGroup

    def group(g):
        rng = np.random.default_rng(g)
        f0 = g * frames
        shown = [f0, f0 + 60, f0 + 120, f0 + 180]
        canvases = tuple(
            Canvas("I" if i == 0 else "P", rng.integers(0, 256, (28, 56, 3), dtype=np.uint8),
                   np.array([(f, r, c) for c0 in (0, 2) for r in (0, 1) for c in (c0, c0 + 1)], np.int32), g)
            for i, f in enumerate(shown))
        return FrameGroup(g, f0, f0 + frames, np.zeros(frames, np.int64), 0.0, canvases,
                          {f: f / FPS for f in shown}, {f: f for f in shown})

    groups = [group(g) for g in range(first_group, first_group + count + per_window - 1)]
    return [CodecWindow(tuple(groups[i:i + per_window]), (28, 56), (120, 160), FPS) for i in range(count)]


def test_vision_cache_misses_the_whole_window_once_per_epoch_only(tiny):
    """Sliding across a time-epoch boundary: one slide re-encodes the window (the origin moved), the others only
    their new group. Counters over 12 slides of 4-group windows."""
    first = EPOCH // 240 - 6                                 # the epoch boundary falls among these windows
    windows = _stream_windows(first, 12)
    origins = [time_origin(w.frame_times) for w in windows]
    assert origins[0] == 0.0 and origins[-1] == TIME_EPOCH_S
    cache = VisionCache(capacity=64)
    with torch.no_grad():
        misses = []
        for w in windows:
            before = cache.stats.misses
            cache.encode(tiny, w)
            misses.append(cache.stats.misses - before)
    crossing = origins.index(TIME_EPOCH_S)
    assert misses[0] == 4 and misses[crossing] == 4
    assert all(m == 1 for i, m in enumerate(misses) if i not in (0, crossing))
    assert cache.stats.hits == 12 * 4 - sum(misses)
