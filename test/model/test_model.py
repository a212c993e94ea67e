"""The weight-compatible model: forward on real codec windows, keys, configs, save/load, windowed attention."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ov2_ros.model import LlavaOnevision2Config, load_model, load_tokenizer
from ov2_ros.model.loading import build_tiny_random, expected_shapes, models_dir, read_config
from ov2_ros.model.processor import prepare_inputs, vision_inputs

FIXTURES = Path(__file__).parent / "fixtures"
RELEASED = models_dir() / "llava-onevision-2-8b-instruct"


def _inputs(window, text="what happens?"):
    return prepare_inputs(window, text, load_tokenizer("tiny-random"))


def test_forward_on_codec_window_gives_logits_per_token(windows):
    model = build_tiny_random()
    inputs = _inputs(windows[-1])
    with torch.no_grad():
        out = model(**inputs.as_kwargs())
    assert out.logits.shape == (1, inputs.input_ids.shape[1], model.config.text_config.vocab_size)
    assert torch.isfinite(out.logits).all()
    # every merged vision token replaced one <|image_pad|> placeholder (the release's codec prompt)
    assert int((inputs.input_ids == model.config.image_token_id).sum()) == windows[-1].num_tokens


def test_state_dict_keys_equal_the_released_names():
    released = [ln for ln in (FIXTURES / "released_keys_8b.txt").read_text().splitlines() if ln and ln[0] != "#"]
    shapes = expected_shapes(read_config(RELEASED))
    assert sorted(shapes) == released
    assert shapes["model.visual.merger.mlp.0.weight"] == (4096, 4096)       # 1024 x 2x2 patches
    assert shapes["model.visual.merger.mlp.2.weight"] == (4096, 4096)       # -> Qwen3-8B width
    assert shapes["model.visual.encoder.layers.0.self_attn.qkv.weight"] == (3072, 1024)
    assert sum(int(np.prod(s)) for s in shapes.values()) == 8_527_213_568  # 8.5 B parameters


def test_released_config_round_trips(tmp_path):
    raw = json.loads((RELEASED / "config.json").read_text())
    config = LlavaOnevision2Config.from_pretrained(RELEASED)
    config.save_pretrained(tmp_path)
    again = json.loads((tmp_path / "config.json").read_text())
    for section in ("vision_config", "text_config"):
        for key, value in raw[section].items():
            if key in ("rope_scaling", "rope_theta"):   # transformers folds these into rope_parameters
                continue
            assert again[section].get(key, getattr(config, section).to_dict().get(key)) == value, (section, key)
    for key in ("model_type", "image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id"):
        assert again[key] == raw[key]
    assert again["text_config"]["rope_parameters"]["rope_theta"] == raw["text_config"]["rope_theta"]
    assert LlavaOnevision2Config.from_pretrained(tmp_path).to_dict() == config.to_dict()


def test_save_and_reload_sharded_gives_equal_logits(tmp_path, windows):
    model = build_tiny_random(seed=3)
    model.save_pretrained(tmp_path, max_shard_size="200KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    reloaded = load_model(str(tmp_path))
    kwargs = _inputs(windows[2]).as_kwargs()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**kwargs).logits, model(**kwargs).logits, rtol=0, atol=0)
    # non-persistent RoPE buffers are rebuilt on load, not left uninitialised
    torch.testing.assert_close(reloaded.visual.video_rope.inv_freq_h, model.visual.video_rope.inv_freq_h)


def test_tiny_random_is_seeded():
    a, b, c = build_tiny_random(0), build_tiny_random(0), build_tiny_random(1)
    w = "model.visual.encoder.layers.0.self_attn.qkv.weight"
    assert torch.equal(a.state_dict()[w], b.state_dict()[w])
    assert not torch.equal(a.state_dict()[w], c.state_dict()[w])


def test_sdpa_matches_eager_reference(windows):
    eager, sdpa = build_tiny_random(attn_implementation="eager"), build_tiny_random(attn_implementation="sdpa")
    kwargs = _inputs(windows[3]).as_kwargs()
    with torch.no_grad():
        torch.testing.assert_close(sdpa(**kwargs).logits, eager(**kwargs).logits, rtol=1e-4, atol=1e-4)


def test_windows_do_not_attend_to_each_other(windows):
    """Perturbing the second 4-canvas window leaves the first window's vision tokens bit-identical."""
    model = build_tiny_random()
    window = windows[-1]
    assert len(window.canvases) == 8
    v = vision_inputs(window)
    per_window = v.pixel_values_videos.shape[0] // 2
    perturbed = v.pixel_values_videos.clone()
    perturbed[per_window:] += torch.randn_like(perturbed[per_window:])
    with torch.no_grad():
        base = model.model.get_video_features(v.pixel_values_videos, v.video_grid_thw, v.patch_positions)
        moved = model.model.get_video_features(perturbed, v.video_grid_thw, v.patch_positions)
    half = base.shape[0] // 2
    torch.testing.assert_close(moved[:half], base[:half], rtol=0, atol=0)
    assert (moved[half:] - base[half:]).abs().max() > 1e-3
    # and a single 8-canvas window (no windowing) does mix them
    with torch.no_grad():
        joint = model.model.get_video_features(perturbed, torch.tensor([[1, 8 * 8, 12]]), v.patch_positions)
    assert (joint[:half] - base[:half]).abs().max() > 1e-6


def test_rope_positions_change_the_output(windows):
    """The 3-D RoPE really reads the patch positions (t, h and w each matter)."""
    model = build_tiny_random()
    v = vision_inputs(windows[0])
    with torch.no_grad():
        base = model.model.get_video_features(v.pixel_values_videos, v.video_grid_thw, v.patch_positions)
        for axis in range(3):
            pos = v.patch_positions.clone()
            pos[:, axis] += 3
            assert (model.model.get_video_features(v.pixel_values_videos, v.video_grid_thw, pos) - base).abs().max() > 0


def test_contract_classes_and_forward_signature():
    import inspect

    from transformers import AutoConfig, PreTrainedModel

    from ov2_ros.model import LlavaOnevision2ForConditionalGeneration

    assert issubclass(LlavaOnevision2ForConditionalGeneration, PreTrainedModel)
    params = inspect.signature(LlavaOnevision2ForConditionalGeneration.forward).parameters
    for name in ("input_ids", "attention_mask", "pixel_values_videos", "video_grid_thw", "patch_positions"):
        assert name in params
    assert type(AutoConfig.from_pretrained(RELEASED)) is LlavaOnevision2Config
