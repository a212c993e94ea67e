"""Per-group cache of vision-tower outputs that keeps hitting while the model's window slides.

Why a group's output can be reused:
- The vision tower attends only within windows of ``frame_windows_size`` canvases, and the processor makes each
  codec group one such window (one ``image_grid_thw`` row per group). The merger works token by token. So a
  group's merged tokens depend on that group's pixels and the patch positions it is fed, nothing else.
- Those positions are fixed while the group stays in the window: ``t`` counts from the window's time origin, which
  is the start of a ``processor.TIME_EPOCH_S`` epoch, not of the window (the release's vision RoPE is not
  relative, so a shifted ``t`` would change the output; see ``processor``).

The key of a chunk is the digest of its canvases' pixels and of the positions the model is fed. A slide by one
group therefore hits every group but the new one; when the window enters a new epoch, the origin moves and the
whole window is encoded once more. Hits return exactly what a fresh encode would.
"""
from __future__ import annotations

import hashlib
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from ov2_ros.codec.types import Canvas, CodecWindow
from ov2_ros.model.processor import VisionInputs, model_groups, model_positions, time_base, vision_inputs


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    entries: int


def pixel_digest(canvas: Canvas) -> bytes:
    """Digest of one canvas' pixels."""
    return hashlib.blake2b(np.ascontiguousarray(canvas.pixels).data, digest_size=16).digest()


class VisionCache:
    """LRU of per-chunk vision outputs; ``capacity`` chunks (a 32-canvas model window holds 8)."""

    def __init__(self, capacity: int = 16):
        self.capacity = capacity
        self._entries: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        # A sliding window hands in the same (immutable, by the codec contract) canvas arrays again: hash each
        # canvas' pixels once (13 MB per 32-canvas window at 280x504 would cost more than the ViT of one new group).
        # Entries leave when the array is freed, so a reused id() never returns a stale digest.
        self._digests: dict[int, bytes] = {}
        self.hits = 0
        self.misses = 0

    def chunk_key(self, canvases: tuple[Canvas, ...], positions: np.ndarray) -> bytes:
        """Key of a chunk: its canvases' pixel digests and the (P, 3) model positions it is fed."""
        h = hashlib.blake2b(digest_size=16)
        for c in canvases:
            digest = self._digests.get(id(c.pixels))
            if digest is None:
                digest = self._digests[id(c.pixels)] = pixel_digest(c)
                weakref.finalize(c.pixels, self._digests.pop, id(c.pixels), None)
            h.update(digest)
        h.update(np.ascontiguousarray(positions, dtype=np.int64).data)
        return h.digest()

    def window_key(self, canvases: tuple[Canvas, ...]) -> bytes:
        """``chunk_key`` of canvases fed with the positions they hold."""
        return self.chunk_key(canvases, np.concatenate([c.positions for c in canvases]))

    @property
    def stats(self) -> CacheStats:
        return CacheStats(self.hits, self.misses, len(self._entries))

    def clear(self) -> None:
        self._entries.clear()

    def encode(self, model, window: CodecWindow) -> torch.Tensor:
        """Merged vision tokens (tokens, D) of ``window`` on the model's device, in the processor's order; only
        missed chunks are patchified and run through the ViT, one chunk per call (what the ONNX part takes)."""
        return self.encode_batch(model, [window], fused=False)[0]

    def encode_batch(self, model, windows: list[CodecWindow], fused: bool = True) -> list[torch.Tensor]:
        """``encode`` of several windows (other streams, other queries) at once. ``fused``: the chunks they miss
        go through one ViT call (one grid row each, so the tower still attends within each chunk); a chunk that
        repeats in the batch is encoded once."""
        size = model.config.vision_config.frame_windows_size
        device = next(model.parameters()).device
        rows, found, missed = [], {}, {}
        for window in windows:
            times, base = window.frame_times, time_base(window)
            keys = []
            for group in model_groups(window):
                for start in range(0, len(group), size):
                    chunk = group[start:start + size]
                    positions = model_positions(np.concatenate([c.positions for c in chunk]), times, base)
                    key = self.chunk_key(chunk, positions)
                    keys.append(key)
                    if key in found or key in missed:
                        self.hits += 1
                    elif (cached := self._entries.get(key)) is not None:
                        self.hits += 1
                        self._entries.move_to_end(key)
                        found[key] = cached
                    else:
                        self.misses += 1
                        missed[key] = vision_inputs(chunk, window.patch_size, device, frame_times=times, base=base)
            rows.append(keys)
        if missed:
            parts = list(missed.values())
            outs = encode_fused(model, parts) if fused else [encode_fused(model, [v])[0] for v in parts]
            for key, out in zip(missed, outs):
                found[key] = self._entries[key] = out
                if len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)
        return [torch.cat([found[k] for k in keys], dim=0) for keys in rows]


def encode_fused(model, parts: list[VisionInputs]) -> list[torch.Tensor]:
    """Vision tokens of several inputs from one ViT call: their grid rows stay separate, so the tower's attention
    windows are those of each input encoded alone."""
    device = next(model.parameters()).device
    rows = [(v.pixel_values_videos, v.video_grid_thw, v.patch_positions) for v in parts]
    pixels, grid, positions = (torch.cat(t).to(device) for t in zip(*rows))
    tokens = model.model.get_video_features(pixels, grid, positions)
    if len(parts) == 1:
        return [tokens]
    merged = len(pixels) // len(tokens)                                       # patches per token (m^2)
    return list(tokens.split([len(p) // merged for p, _, _ in rows]))
