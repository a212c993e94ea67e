"""Deepen a trained model without changing what it computes, so training can go on with more capacity.

Both towers are pre-norm residual stacks (``x + attn(norm(x))``, ``x + mlp(norm(x))``): a block whose two output
projections are zero adds nothing, so it is an exact identity until training moves those projections. ``deepen``
builds the same architecture with more layers, puts the trained layers at evenly spread depths (first layer first)
and fills the gaps with such identity blocks (freshly initialised inside, zero at the outputs). The result is still
the released ``LlavaOnevision2ForConditionalGeneration`` with a larger ``num_hidden_layers``.
"""
from __future__ import annotations

import copy
import re

import torch

from ov2_ros.train.errors import TrainDataError

TEXT_PREFIX, TEXT_ZERO = "model.language_model.layers.", ("self_attn.o_proj.", "mlp.down_proj.")
VISION_PREFIX, VISION_ZERO = "model.visual.encoder.layers.", ("self_attn.proj.", "mlp.fc2.")


def spread(old: int, new: int) -> list[int]:
    """Where each of ``old`` trained layers goes among ``new`` (first at 0, in order, evenly spaced)."""
    if new < old:
        raise TrainDataError(f"cannot deepen {old} layers to {new}")
    return [i * new // old for i in range(old)]


def deepen_state(state: dict, fresh: dict, stacks: list[tuple[str, int, int, tuple[str, ...]]]) -> dict:
    """``fresh`` (the deeper model's own initial weights) with ``state``'s weights copied in: for each stack
    (key prefix, old and new layer counts, output projections) the trained layers go to their ``spread`` depths
    and the added layers keep their fresh weights, with the output projections zeroed."""
    out = dict(fresh)
    added = []
    moves = []
    for prefix, old, new, zero in stacks:
        where = spread(old, new)
        moves.append((re.compile(re.escape(prefix) + r"(\d+)\.(.*)"), prefix, where))
        added += [(f"{prefix}{layer}.", zero) for layer in sorted(set(range(new)) - set(where))]
    for key, value in state.items():
        for pattern, prefix, where in moves:
            m = pattern.fullmatch(key)
            if m is not None:
                key = f"{prefix}{where[int(m.group(1))]}.{m.group(2)}"
                break
        out[key] = value
    for layer_prefix, zero in added:
        for key in [k for k in out if k.startswith(layer_prefix) and k[len(layer_prefix):].startswith(zero)]:
            out[key] = torch.zeros_like(out[key])
    return out


def deepen(model, text_layers: int | None = None, vision_layers: int | None = None, seed: int = 0):
    """A new model of ``model``'s architecture with ``text_layers`` / ``vision_layers`` layers (None: as now) that
    computes the same outputs (up to float rounding)."""
    from ov2_ros.model.modeling import LlavaOnevision2ForConditionalGeneration

    config = copy.deepcopy(model.config)
    t_old, v_old = config.text_config.num_hidden_layers, config.vision_config.num_hidden_layers
    t_new, v_new = text_layers or t_old, vision_layers or v_old
    config.text_config.num_hidden_layers = t_new
    if getattr(config.text_config, "layer_types", None):
        config.text_config.layer_types = [config.text_config.layer_types[0]] * t_new
    config.vision_config.num_hidden_layers = v_new
    torch.manual_seed(seed)
    grown = LlavaOnevision2ForConditionalGeneration(config).to(next(model.parameters()).dtype)
    grown.load_state_dict(deepen_state(model.state_dict(), grown.state_dict(),
                                       [(TEXT_PREFIX, t_old, t_new, TEXT_ZERO),
                                        (VISION_PREFIX, v_old, v_new, VISION_ZERO)]))
    return grown.to(next(model.parameters()).device)
