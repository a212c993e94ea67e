"""LLaVA-OV-2 as three ONNX parts: vision tower per window, token embedding, LM decoder with explicit KV cache.

- ``vlm_vision``: one attention window of ``frame_windows_size`` (4) canvases of a fixed size (H, W):
  ``pixel_values`` (P, 3*14*14) float32 normalised patches in 2x2-block order, ``patch_positions`` (P, 3) int64
  -> ``vision_tokens`` (P/4, D). P = 4 * H/14 * W/14; the grid is baked in, so a window of another canvas size
  needs its own export (``--canvas HxW``). A model window of 8 groups is 8 calls (or a cache hit per group).
- ``vlm_embed``: ``input_ids`` (1, L) int64 -> ``inputs_embeds`` (1, L, D).
- ``vlm_decoder``: ``inputs_embeds`` (1, L, D), ``position_ids`` (1, L) int64 and ``past_key_i``/``past_value_i``
  (1, KV heads, P, head_dim) per layer -> ``logits`` (1, V) of the last position and ``present_key_i``/
  ``present_value_i`` (1, KV heads, P + L, head_dim). Two TensorRT profiles: prefill (P = 0, L up to the prompt
  budget) and decode (L = 1, P up to the cache budget). The graph is transformers' own Qwen3 layers, fed a cache
  object that concatenates the explicit past (so the attention math is not re-implemented here).
"""
from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence

import torch
from torch import nn

from ov2_ros.engines.manifest import PartSpec, Profile, state_dict_hash
from ov2_ros.engines.onnx_io import DEFAULT_OPSET, export_part

DEFAULT_CANVAS = (280, 504)       # 16:9 under 150,000 pixels: the default canvas of the released setup
MAX_PROMPT_TOKENS = 8192          # TensorRT profile maxima (a 32-canvas window is ~5,900 tokens)
MAX_CACHE_TOKENS = 8192


class VisionWindow(nn.Module):
    def __init__(self, vlm, canvas_hw: tuple[int, int], patch: int = 14):
        super().__init__()
        self.vlm = vlm
        n = vlm.config.vision_config.frame_windows_size
        self.register_buffer("grid_thw", torch.tensor([[n, canvas_hw[0] // patch, canvas_hw[1] // patch]]),
                             persistent=False)

    def forward(self, pixel_values, patch_positions):
        return self.vlm.model.get_video_features(pixel_values, self.grid_thw, patch_positions)


class TokenEmbedding(nn.Module):
    def __init__(self, vlm):
        super().__init__()
        self.embed = vlm.model.get_input_embeddings()

    def forward(self, input_ids):
        return self.embed(input_ids)


class _ExplicitCache:
    """The one cache method Qwen3 attention calls: append this step's keys/values to the given past."""

    def __init__(self, past: Sequence[torch.Tensor]):
        self.past = list(past)
        self.present: list[torch.Tensor] = [None] * len(past)

    def update(self, keys, values, layer_idx, *args, **kwargs):
        k = torch.cat([self.past[2 * layer_idx], keys], dim=2)
        v = torch.cat([self.past[2 * layer_idx + 1], values], dim=2)
        self.present[2 * layer_idx], self.present[2 * layer_idx + 1] = k, v
        return k, v


class KvDecoder(nn.Module):
    """Qwen3 decoder + lm_head with the KV cache as inputs/outputs (eager attention, additive causal mask)."""

    def __init__(self, vlm):
        super().__init__()
        self.lm = vlm.model.language_model
        self.lm_head = vlm.lm_head

    def forward(self, inputs_embeds, position_ids, *past):
        cache = _ExplicitCache(past)
        seq, past_len = inputs_embeds.shape[1], past[0].shape[2]
        # query i sits at absolute slot past_len + i and may see keys 0..past_len + i
        q_slot = torch.arange(seq, device=inputs_embeds.device)[:, None] + past_len
        k_slot = torch.arange(past_len + seq, device=inputs_embeds.device)[None, :]
        visible = torch.zeros((), dtype=inputs_embeds.dtype)
        mask = torch.where(k_slot <= q_slot, visible, torch.finfo(inputs_embeds.dtype).min)[None, None]
        hidden = inputs_embeds
        position_embeddings = self.lm.rotary_emb(hidden, position_ids)
        for layer in self.lm.layers:
            hidden = layer(hidden, attention_mask=mask, position_ids=position_ids, cache=cache,
                           position_embeddings=position_embeddings)
        logits = self.lm_head(self.lm.norm(hidden)[:, -1])
        return (logits, *cache.present)


def kv_names(num_layers: int, prefix: str) -> list[str]:
    return [f"{prefix}_{kind}_{i}" for i in range(num_layers) for kind in ("key", "value")]


def kv_shape(vlm) -> tuple[int, int, int]:
    """(layers, KV heads, head_dim) of the language model."""
    cfg = vlm.config.text_config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return cfg.num_hidden_layers, cfg.num_key_value_heads, head_dim


def export_vlm_parts(model: str, out_dir: pathlib.Path, groups: Sequence[str], opset: int = DEFAULT_OPSET,
                     canvas_hw: tuple[int, int] = DEFAULT_CANVAS, vlm=None) -> tuple[list[PartSpec], dict]:
    """Export the ``vision`` and/or ``decoder`` groups (the decoder group includes the embedding).

    Returns the part specs and the facts a runtime needs without the torch model (manifest ``extra["vlm"]``).
    """
    from ov2_ros.model.loading import load_model

    vlm = vlm if vlm is not None else load_model(model, device="cpu", dtype=torch.float32,
                                                 attn_implementation="eager")
    digest = state_dict_hash(vlm)
    g = torch.Generator().manual_seed(0)
    specs: list[PartSpec] = []
    if "vision" in groups:
        specs.append(_export_vision(vlm, out_dir, canvas_hw, g, opset))
    if "decoder" in groups:
        specs += _export_decoder(vlm, out_dir, g, opset)
    cfg = vlm.config
    eos = cfg.eos_token_id
    facts = {"video_token_id": int(cfg.video_token_id), "image_token_id": int(cfg.image_token_id),
             "eos_token_ids": [int(e) for e in (
                 eos if isinstance(eos, list) else [eos]) if e is not None],
             "frame_windows_size": int(cfg.vision_config.frame_windows_size), "canvas_hw": list(canvas_hw),
             "kv_layers_heads_dim": list(kv_shape(vlm)), "hidden_size": int(cfg.text_config.hidden_size)}
    return [dataclasses.replace(s, source_model=model, source_hash=digest) for s in specs], facts


def _window_positions(n: int, rows: int, cols: int, frame0: int = 0) -> torch.Tensor:
    """(n*rows*cols, 3) positions of whole-frame canvases in 2x2-block order (frame, row, col)."""
    out = []
    for t in range(n):
        for br in range(0, rows, 2):
            for bc in range(0, cols, 2):
                out += [(frame0 + t, br + dr, bc + dc) for dr in (0, 1) for dc in (0, 1)]
    return torch.tensor(out, dtype=torch.int64)


def _export_vision(vlm, out_dir, canvas_hw, g, opset) -> PartSpec:
    n = vlm.config.vision_config.frame_windows_size
    rows, cols = canvas_hw[0] // 14, canvas_hw[1] // 14
    p = n * rows * cols
    inputs = {"pixel_values": torch.randn(p, 3 * 14 * 14, generator=g),
              "patch_positions": _window_positions(n, rows, cols)}
    other = {"pixel_values": torch.randn(p, 3 * 14 * 14, generator=g),
             "patch_positions": _window_positions(n, rows, cols, frame0=37)}
    spec = export_part("vlm_vision", VisionWindow(vlm, canvas_hw), inputs, ["vision_tokens"], out_dir,
                       check_inputs=[other], tolerance=1e-4, opset=opset)
    return spec


def _export_decoder(vlm, out_dir, g, opset) -> list[PartSpec]:
    layers, kv_heads, head_dim = kv_shape(vlm)
    width = vlm.config.text_config.hidden_size
    vocab = vlm.config.text_config.vocab_size
    embed = export_part("vlm_embed", TokenEmbedding(vlm), {"input_ids": torch.randint(0, vocab, (1, 5), generator=g)},
                        ["inputs_embeds"], out_dir, dynamic_axes={"input_ids": {1: "seq"}, "inputs_embeds": {1: "seq"}},
                        profiles=[Profile("tokens", {"input_ids": ((1, 1), (1, 512), (1, MAX_PROMPT_TOKENS))})],
                        check_inputs=[{"input_ids": torch.randint(0, vocab, (1, 1), generator=g)}], opset=opset)

    def example(seq: int, past: int) -> dict[str, torch.Tensor]:
        feed = {"inputs_embeds": torch.randn(1, seq, width, generator=g),
                "position_ids": torch.arange(past, past + seq)[None]}
        for name in kv_names(layers, "past"):
            feed[name] = torch.randn(1, kv_heads, past, head_dim, generator=g)
        return feed

    past_names, present_names = kv_names(layers, "past"), kv_names(layers, "present")
    dynamic = {"inputs_embeds": {1: "seq"}, "position_ids": {1: "seq"},
               **{n: {2: "past"} for n in past_names}, **{n: {2: "total"} for n in present_names}}
    kv = lambda p: (1, kv_heads, p, head_dim)  # noqa: E731
    prefill = Profile("prefill", {"inputs_embeds": ((1, 1, width), (1, 2048, width), (1, MAX_PROMPT_TOKENS, width)),
                                  "position_ids": ((1, 1), (1, 2048), (1, MAX_PROMPT_TOKENS)),
                                  **{n: (kv(0), kv(0), kv(0)) for n in past_names}})
    decode = Profile("decode", {"inputs_embeds": ((1, 1, width),) * 3, "position_ids": ((1, 1),) * 3,
                                **{n: (kv(1), kv(2048), kv(MAX_CACHE_TOKENS)) for n in past_names}})
    decoder = export_part("vlm_decoder", KvDecoder(vlm), example(4, 3), ["logits", *present_names], out_dir,
                          dynamic_axes=dynamic, profiles=[prefill, decode],
                          check_inputs=[example(6, 0), example(1, 9)], tolerance=1e-4, opset=opset)
    return [embed, decoder]
