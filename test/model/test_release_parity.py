"""Same weights, same inputs -> the same vision tokens and logits as the released HF code.

The released modeling code cannot be committed here; point ``OV2_RELEASE_CODE`` at a directory holding its
``llavaonevision2/`` package (``transformers_impl/`` of github.com/EvolvingLMMs-Lab/LLaVA-OneVision-2) to run it.
Its top-level ``forward`` does not run under transformers 5.24 (its output class rejects ``cache``), so the
comparison drives its vision tower, placeholder mask and language model directly, as ``bench/model_gpu.py`` does.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

RELEASE = os.environ.get("OV2_RELEASE_CODE")
pytestmark = pytest.mark.skipif(not RELEASE or not (Path(RELEASE) / "llavaonevision2").is_dir(),
                                reason="set OV2_RELEASE_CODE to a dir with the released llavaonevision2/ package")


def test_vision_tokens_and_logits_equal_the_release(windows):
    import json
    import sys

    sys.path.insert(0, RELEASE)
    import llavaonevision2 as rel

    from ov2_ros.model import load_tokenizer
    from ov2_ros.model.loading import build_tiny_random, models_dir
    from ov2_ros.model.processor import prepare_inputs

    raw = json.loads((models_dir() / "tiny-random" / "config.json").read_text())
    config = rel.LlavaOnevision2Config(**{k: v for k, v in raw.items() if k not in ("architectures", "model_type")})
    config._attn_implementation = "eager"
    ref = rel.LlavaOnevision2ForConditionalGeneration(config).eval()
    ours = build_tiny_random(seed=5)
    ref.load_state_dict(ours.state_dict(), strict=True)
    kw = prepare_inputs(windows[-1], "what moves?", load_tokenizer()).as_kwargs()
    with torch.no_grad():
        vision = torch.cat(ref.model.get_image_features(kw["pixel_values"], kw["image_grid_thw"],
                                                        patch_positions=kw["patch_positions"]))
        torch.testing.assert_close(
            ours.model.get_video_features(kw["pixel_values"], kw["image_grid_thw"], kw["patch_positions"]),
            vision, rtol=0, atol=0)
        embeds = ref.model.get_input_embeddings()(kw["input_ids"])
        mask, _ = ref.model.get_placeholder_mask(kw["input_ids"], inputs_embeds=embeds, image_features=vision)
        embeds = embeds.masked_scatter(mask, vision)
        hidden = ref.model.language_model(inputs_embeds=embeds,
                                          position_ids=torch.arange(embeds.shape[1])[None]).last_hidden_state
        torch.testing.assert_close(ours(**kw).logits, ref.lm_head(hidden), rtol=0, atol=0)
