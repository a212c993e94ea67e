"""Which decoded frames the tokenizer looks at: the official tool's sampling, offline and live.

Offline (``official_frame_ids``), as ``codec-video-prep`` 0.2.5 samples a file for a target of N canvases:
``N / 4 x 32`` frame indices ``linspace(0, total - 1)`` (truncated to int), each keyframe moved to the nearest
non-key frame (``+1, -1, +2, -2, ... +4, -4``, later first), duplicates removed and the count refilled with the unused
non-key frames nearest the kept ones. A file shorter than the target is sampled whole.

Live (``RateSampler``): one frame per ``1 / sample_fps`` seconds of stream time, a keyframe deferred to the next
non-key frame (the live form of moving samples off keyframes: an IDR is coded with no reference, so its bit-cost says
nothing about change). ``sample_fps = 0`` takes every frame (the seed's every-frame mode).
"""
from __future__ import annotations

import numpy as np

KEYFRAME_SHIFT = 4          # the official tool tries shifts of 1..4 frames off a keyframe


def uniform_count(total: int, count: int) -> list[int]:
    """``count`` indices spread over ``total`` frames, both ends included (``np.linspace`` truncated to int)."""
    total, count = max(1, int(total)), max(1, int(count))
    if total == 1:
        return [0] * count
    return np.linspace(0, total - 1, count).astype(np.int32).clip(0, total - 1).tolist()


def shift_off_keyframes(ids: list[int], keyframes: set[int], total: int) -> list[int]:
    """Each keyframe index replaced by the nearest non-key frame within ``KEYFRAME_SHIFT`` (``+d`` before ``-d``)."""
    out = []
    for fid in ids:
        fid = min(max(0, fid), total - 1)
        if fid in keyframes:
            near = (c for d in range(1, KEYFRAME_SHIFT + 1) for c in (fid + d, fid - d))
            fid = next((c for c in near if 0 <= c < total and c not in keyframes), fid)
        out.append(fid)
    return out


def dedup_refill(ids: list[int], total: int, keyframes: set[int]) -> list[int]:
    """Drop repeated indices, then refill to the original count with unused non-key frames nearest a kept one
    (ties: nearer the middle of the file, then earlier), then with any unused frame. Sorted when refilled."""
    target = len(ids)
    kept = list(dict.fromkeys(ids))
    if len(kept) >= target:
        return kept[:target]
    used, seed = set(kept), np.array(sorted(kept) or [0])
    free = np.array([f for f in range(total) if f not in used and f not in keyframes], dtype=np.int64)
    if len(free):
        nearest = np.abs(free[:, None] - seed[None, :]).min(axis=1)
        order = np.lexsort((free, np.abs(free - total // 2), nearest))
        kept += free[order][: target - len(kept)].tolist()
    if len(kept) < target:
        used = set(kept)
        kept += [f for f in range(total) if f not in used][: target - len(kept)]
    return sorted(kept)[:target]


def official_frame_ids(total: int, canvases: int, keyframes=(), canvases_per_group: int = 4,
                       group_size: int = 32) -> list[int]:
    """The frames the official tool samples from a ``total``-frame file for ``canvases`` canvases."""
    count = min(canvases // canvases_per_group * group_size, max(1, total))
    keys = {int(k) for k in keyframes}
    return dedup_refill(shift_off_keyframes(uniform_count(total, count), keys, total), total, keys)


class SetSampler:
    """Takes exactly the frames in ``frame_ids`` (an offline plan)."""

    def __init__(self, frame_ids):
        self.frame_ids = frozenset(int(f) for f in frame_ids)

    def reset(self) -> None:
        """A plan names frames of the whole file: nothing to forget."""

    def take(self, index: int, time_s: float, key_frame: bool) -> bool:
        return index in self.frame_ids

    peek = take


class RateSampler:
    """Live sampling at ``sample_fps`` frames per second of stream time (0: every frame); see the module docstring."""

    def __init__(self, sample_fps: float):
        self.period = 1.0 / sample_fps if sample_fps > 0 else 0.0
        self.reset()

    def reset(self) -> None:
        self.next_time: float | None = None

    def peek(self, index: int, time_s: float, key_frame: bool) -> bool:
        """``take``'s answer now, without advancing. Never False where ``take`` after the frames before this one
        can be True (taking only moves ``next_time`` later), so the decoder may skip the MVs of frames it rejects."""
        if self.period == 0.0:
            return True
        return not key_frame and (self.next_time is None or time_s + 1e-3 >= self.next_time)

    def take(self, index: int, time_s: float, key_frame: bool) -> bool:
        if self.period == 0.0:
            return True
        if self.next_time is None:
            self.next_time = time_s
        # half a frame of slack at 30 fps, so a 4 fps schedule does not drift by a frame from rounding
        if time_s + 1e-3 < self.next_time or key_frame:
            return False
        self.next_time = max(self.next_time + self.period, time_s + self.period / 2)
        return True
