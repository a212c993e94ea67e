"""LLaVA-OV-2 parts in ONNX and the onnxruntime backend end to end: codec window -> answer, tokens equal torch's."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from ov2_ros.codec.tokenizer import CodecTokenizer
from ov2_ros.codec.types import TokenizerConfig
from ov2_ros.engines import BackendUnavailableError, EngineError
from ov2_ros.engines.runtime import EngineVlmRuntime, select_backend
from ov2_ros.errors import ConfigError
from ov2_ros.model import Query


@pytest.fixture(scope="module")
def windows(small_clip):
    """Codec windows (8 canvases) streamed from the 160x120 real-H.264 clip, one per closed group. The seed
    structure (every frame, 4 canvases per group) gives this 120-frame clip enough windows to export and compare."""
    tok = CodecTokenizer(TokenizerConfig(structure="seed", window_canvases=8, min_group_frames=8,
                                         max_group_frames=32),
                         fps=small_clip.fps)
    out = [tok.window() for i, au in enumerate(small_clip.aus) if tok.push(au, stamp=i)]
    return out + ([tok.window()] if tok.flush() else [])


@pytest.fixture(scope="module")
def vlm_export(tmp_path_factory, windows):
    from ov2_ros.engines.export import export_model

    out = tmp_path_factory.mktemp("vlm_export")
    return out, export_model("tiny-random", out, parts=("vision", "decoder"), canvas_hw=windows[0].canvas_size)


@pytest.fixture(scope="module")
def backends(vlm_export):
    out, _ = vlm_export
    return (select_backend("torch", max_new_tokens=10),
            select_backend("onnxruntime", export_dir=out, max_new_tokens=10))


def test_manifest_has_vision_embed_and_kv_decoder(vlm_export, windows):
    _, manifest = vlm_export
    assert [p.name for p in manifest.parts] == ["vlm_vision", "vlm_embed", "vlm_decoder"]
    h, w = windows[0].canvas_size
    vision = manifest.part("vlm_vision")
    assert vision.inputs[0].shape == (4 * (h // 14) * (w // 14), 588)
    assert vision.outputs[0].shape == (h // 14 * (w // 14), 64)       # 4 canvases, 2x2 merge
    dec = manifest.part("vlm_decoder")
    names = [t.name for t in dec.inputs]
    assert names[:2] == ["inputs_embeds", "position_ids"] and names[2:6] == [
        "past_key_0", "past_value_0", "past_key_1", "past_value_1"]
    assert {t.name: t.shape for t in dec.inputs}["past_key_1"] == (1, 2, "past", 16)
    assert {t.name: t.shape for t in dec.outputs}["present_value_0"] == (1, 2, "total", 16)
    assert [p.name for p in dec.profiles] == ["prefill", "decode"]
    assert dec.profiles[1].shapes["inputs_embeds"][2] == (1, 1, 64)
    assert all(p.max_abs_diff < 1e-4 for p in manifest.parts)
    assert manifest.extra["vlm"]["kv_layers_heads_dim"] == [2, 2, 16]


def test_onnxruntime_tokens_equal_torch(backends, windows):
    ref, ort = backends
    assert isinstance(ort, EngineVlmRuntime)
    for query in (Query("track", "the red square"), Query("ask", "what moves?")):
        for window in windows[1:4]:
            a, b = ref.generate(ref.prepare(window, query)), ort.generate(ort.prepare(window, query))
            assert len(a.token_ids) >= 1 and a.token_ids == b.token_ids and a.text == b.text


def test_onnxruntime_answer_has_the_torch_interface(backends, windows):
    ref, ort = backends
    window = windows[-1]
    a, b = ref.answer(window, Query("track", "the red square")), ort.answer(window, Query("track", "the red square"))
    assert (a.task, a.text, a.tracks, a.errors, a.window_frames, a.window_span) == (
        b.task, b.text, b.tracks, b.errors, b.window_frames, b.window_span)
    assert b.extra["new_tokens"] == a.extra["new_tokens"] and b.latency_s > 0


def test_explicit_kv_cache_continues_a_prefill(vlm_export):
    """Prefilling 7 tokens at once equals prefilling 4 and feeding 3 with the returned cache."""
    from ov2_ros.engines.runtime import OrtRunner

    out, manifest = vlm_export
    run = OrtRunner(out, manifest)
    embeds = np.random.default_rng(0).standard_normal((1, 7, 64)).astype(np.float32)
    empty = {f"past_{k}_{i}": np.zeros((1, 2, 0, 16), np.float32) for i in range(2) for k in ("key", "value")}
    full = run("vlm_decoder", {"inputs_embeds": embeds, "position_ids": np.arange(7)[None], **empty})
    first = run("vlm_decoder", {"inputs_embeds": embeds[:, :4], "position_ids": np.arange(4)[None], **empty})
    past = dict(zip(empty, first[1:]))
    second = run("vlm_decoder", {"inputs_embeds": embeds[:, 4:], "position_ids": np.arange(4, 7)[None], **past})
    np.testing.assert_allclose(second[0], full[0], atol=1e-5)
    for a, b in zip(second[1:], full[1:]):
        assert a.shape == (1, 2, 7, 16)
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_vision_part_rejects_another_canvas_size(backends, windows):
    from ov2_ros.model.processor import vision_inputs

    _, ort = backends
    v = vision_inputs(windows[2].canvases[:4])
    t, h, w = v.video_grid_thw[0].tolist()
    with pytest.raises(EngineError, match="export again with --canvas"):
        ort.model.get_video_features(v.pixel_values_videos, torch.tensor([[t, h + 2, w]]), v.patch_positions)


def test_backend_selection_errors(vlm_export, sam2_export):
    out, _ = vlm_export
    with pytest.raises(ConfigError, match="backend must be one of torch, onnxruntime, tensorrt"):
        select_backend("openvino")
    with pytest.raises(ConfigError, match="needs export_dir"):
        select_backend("onnxruntime")
    with pytest.raises(ConfigError, match="exported from 'tiny-random'"):
        select_backend("onnxruntime", model="/some/other/checkpoint", export_dir=out)
    _, sam2_only = sam2_export
    with pytest.raises(EngineError, match="lacks VLM parts"):
        EngineVlmRuntime(sam2_only, runner=None, tokenizer=None)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt imports here")
def test_tensorrt_backend_fails_at_start_naming_what_to_install(vlm_export):
    out, _ = vlm_export
    with pytest.raises(BackendUnavailableError, match="TensorRT"):
        select_backend("tensorrt", export_dir=out)


def test_export_command_vlm_parts(tmp_path, windows, capsys):
    from ov2_ros.cli import main

    h, w = windows[0].canvas_size
    assert main(["export", "--out", str(tmp_path), "--parts", "vision,decoder", "--canvas", f"{h}x{w}"]) == 0
    assert "vlm_decoder" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["export", "--out", str(tmp_path), "--canvas", "100x7"])
    assert "multiples of 28" in capsys.readouterr().err
