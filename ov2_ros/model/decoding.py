"""Greedy decoding at fixed shapes: the one-token step over a static KV cache and static step buffers.

``DecodeState`` holds every tensor the step reads or writes, at fixed addresses for a given (batch, cache length):
the last token of each sequence, its position, an additive attention bias over the cache slots (left padding and
not-yet-written slots masked) and the transformers ``StaticCache``. ``decode_step`` advances all of them in place:
it opens the slot it writes, runs the language model on one token per sequence, writes the argmax back into the
token buffer and moves the positions on. Nothing in it reads a value back to the host, so the same step runs

- ``eager``: called directly (CPU, and the fallback everywhere);
- ``graph``: captured once into a ``torch.cuda.CUDAGraph`` and replayed (one launch per token on CUDA);
- ``compile``: ``torch.compile(mode="reduce-overhead")`` (inductor kernels + CUDA graphs via cudagraph trees).

The host reads only the new tokens after each step (to stop each sequence at its EOS). ``make_runner`` tries the
mode asked for and falls back to eager, returning the reason, which the runtime reports in ``Answer.extra``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers.cache_utils import StaticCache

MODES = ("eager", "graph", "compile")


@dataclass
class DecodeState:
    """Step buffers for B sequences over a cache of S slots.

    ``token`` (B, 1) int64: the newest token of each sequence (the step overwrites it with the next one);
    ``position`` (B, 1) int64: that token's position; ``bias`` (B, 1, 1, S) model dtype: 0 where a slot may be
    attended, the dtype's minimum where not; ``cache``: the static KV cache, filled by the prefill."""

    token: torch.Tensor
    position: torch.Tensor
    bias: torch.Tensor
    cache: StaticCache

    @classmethod
    def allocate(cls, batch: int, slots: int, cache: StaticCache, dtype: torch.dtype,
                 device: torch.device) -> DecodeState:
        return cls(torch.zeros(batch, 1, dtype=torch.int64, device=device),
                   torch.zeros(batch, 1, dtype=torch.int64, device=device),
                   torch.zeros(batch, 1, 1, slots, dtype=dtype, device=device), cache)

    def load(self, token: torch.Tensor, position: torch.Tensor, prompt_mask: torch.Tensor) -> None:
        """Start decoding after a prefill: ``token``/``position`` (B, 1); ``prompt_mask`` (B, L) 1 for prompt
        tokens, 0 for left padding. Written in place, so a captured graph keeps seeing these buffers."""
        self.token.copy_(token)
        self.position.copy_(position)
        keep = torch.zeros(self.bias.shape[0], self.bias.shape[-1], dtype=torch.bool, device=self.bias.device)
        keep[:, :prompt_mask.shape[1]] = prompt_mask.to(device=keep.device, dtype=torch.bool)
        self.bias.copy_(torch.where(keep, 0.0, torch.finfo(self.bias.dtype).min).view_as(self.bias))

    def _mutable(self) -> list[torch.Tensor]:
        return [self.token, self.position, self.bias, *(layer.cumulative_length for layer in self.cache.layers)]

    def snapshot(self) -> list[torch.Tensor]:
        return [t.clone() for t in self._mutable()]

    def restore(self, snapshot: list[torch.Tensor]) -> None:
        for t, saved in zip(self._mutable(), snapshot):
            t.copy_(saved)


def decode_step(model, state: DecodeState) -> None:
    """One greedy token for every sequence, in place (see the module docstring); no host sync."""
    lm = model.model.language_model
    slot = state.cache.layers[0].cumulative_length            # the cache slot this step writes
    state.bias.index_fill_(3, slot.view(1), 0.0)
    hidden = lm(inputs_embeds=lm.embed_tokens(state.token), position_ids=state.position,
                attention_mask=state.bias, cache=state.cache, use_cache=True).last_hidden_state
    state.token.copy_(model.lm_head(hidden[:, -1]).argmax(-1, keepdim=True))
    state.position.add_(1)


def _graph_runner(model, state: DecodeState) -> Callable[[], None]:
    """Capture ``decode_step`` into a CUDA graph. Warm-up steps run for real on a side stream (cuBLAS handles,
    allocator pools), so the buffers they advance are restored before capture; the slots they wrote are
    overwritten by the first replay."""
    if state.token.device.type != "cuda":
        raise RuntimeError(f"CUDA graphs need a CUDA device; the model is on {state.token.device}")
    saved = state.snapshot()
    stream = torch.cuda.Stream(device=state.token.device)
    stream.wait_stream(torch.cuda.current_stream(state.token.device))
    with torch.cuda.stream(stream):
        for _ in range(2):
            decode_step(model, state)
    torch.cuda.current_stream(state.token.device).wait_stream(stream)
    state.restore(saved)
    graph = torch.cuda.CUDAGraph()
    try:
        # thread_local: other threads' CUDA work (the node's SAM2 tracker) may go on while this thread captures
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            decode_step(model, state)
    finally:
        state.restore(saved)
    return graph.replay


def _compiled_runner(model, state: DecodeState) -> Callable[[], None]:
    mode = "reduce-overhead" if state.token.device.type == "cuda" else "default"
    for t in (state.token, state.position, state.bias):
        torch._dynamo.mark_static_address(t)               # mutated in place: keep cudagraph trees on them
    step = torch.compile(lambda: decode_step(model, state), mode=mode, fullgraph=True)
    saved = state.snapshot()
    try:
        step()                                             # compile now, so a failure falls back before decoding
    finally:
        state.restore(saved)
    return step


def make_runner(model, state: DecodeState, mode: str) -> tuple[Callable[[], None], str, str | None]:
    """(run one step, the mode in use, why the requested mode fell back to eager or None)."""
    if mode not in MODES:
        raise ValueError(f"decode mode must be one of {MODES}, got {mode!r}")
    if mode == "eager":
        return (lambda: decode_step(model, state)), "eager", None
    build = _graph_runner if mode == "graph" else _compiled_runner
    try:
        return build(model, state), mode, None
    except Exception as exc:  # capture/compile fail in many ways (unsupported op, sync in capture, no CUDA)
        reason = f"{mode} unavailable, decoding eagerly: {type(exc).__name__}: {exc}"
        return (lambda: decode_step(model, state)), "eager", reason[:500]
