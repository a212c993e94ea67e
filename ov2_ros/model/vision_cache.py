"""Per-window cache of vision-tower outputs.

The vision tower attends only within windows of ``frame_windows_size`` canvases (one codec group by default) and
the merger works token by token, so a window's merged tokens depend on that window's pixels and patch positions
alone. When the model's window slides by one group, every group but the newest is already encoded: the cache maps
(first group index, hash of the window's pixels and positions) -> its (tokens, D) output and skips the ViT for it.
Positions carry absolute frame indices, so a group keeps its key for as long as it stays in the window.
"""
from __future__ import annotations

import hashlib
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from ov2_ros.codec.types import Canvas, CodecWindow
from ov2_ros.model.processor import vision_inputs


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    entries: int


def canvas_digest(canvas: Canvas) -> bytes:
    """Digest of one canvas' pixels and positions."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(canvas.pixels).data)
    h.update(np.ascontiguousarray(canvas.positions, dtype=np.int32).data)
    return h.digest()


class VisionCache:
    """LRU of per-window vision outputs; ``capacity`` windows (a 32-canvas model window holds 8)."""

    def __init__(self, capacity: int = 16):
        self.capacity = capacity
        self._entries: OrderedDict[tuple[int, bytes], torch.Tensor] = OrderedDict()
        # A sliding window hands in the same (immutable, by the codec contract) canvas arrays again: hash each
        # canvas once (13 MB per 32-canvas window at 280x504 would cost more than the ViT of one new group).
        # Entries leave when either array is freed, so a reused id() never returns a stale digest.
        self._digests: dict[tuple[int, int], bytes] = {}
        self.hits = 0
        self.misses = 0

    def window_key(self, canvases: tuple[Canvas, ...]) -> tuple[int, bytes]:
        """(first canvas' group index, digest of the canvases' pixels and positions)."""
        h = hashlib.blake2b(digest_size=16)
        for c in canvases:
            ids = (id(c.pixels), id(c.positions))
            digest = self._digests.get(ids)
            if digest is None:
                digest = self._digests[ids] = canvas_digest(c)
                for array in (c.pixels, c.positions):
                    weakref.finalize(array, self._digests.pop, ids, None)
            h.update(digest)
        return canvases[0].group, h.digest()

    @property
    def stats(self) -> CacheStats:
        return CacheStats(self.hits, self.misses, len(self._entries))

    def clear(self) -> None:
        self._entries.clear()

    def encode(self, model, window: CodecWindow) -> torch.Tensor:
        """Merged vision tokens (P / m^2, D) of ``window`` on the model's device; only missed windows are
        patchified and run through the ViT."""
        canvases = window.canvases
        size = model.config.vision_config.frame_windows_size
        device = next(model.parameters()).device
        outs = []
        for start in range(0, len(canvases), size):
            chunk = canvases[start:start + size]
            key = self.window_key(chunk)
            cached = self._entries.get(key)
            if cached is not None:
                self.hits += 1
                self._entries.move_to_end(key)
                outs.append(cached)
                continue
            self.misses += 1
            v = vision_inputs(chunk, window.patch_size, device)
            out = model.model.get_video_features(v.pixel_values_videos, v.video_grid_thw, v.patch_positions)
            self._entries[key] = out
            if len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
            outs.append(out)
        return torch.cat(outs, dim=0)
