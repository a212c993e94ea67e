"""The memory bank stays capped over a long stream: session state and process RSS stop growing."""
from __future__ import annotations

import pathlib

from ov2_ros.segment import MaskTracker

FRAMES = 1000


def rss_bytes() -> int:
    fields = pathlib.Path("/proc/self/statm").read_text().split()
    import os

    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")


def test_memory_bounded_over_1000_frames(small_frames):
    # 64x48 source frames keep this fast; SAM2 works at its own input size (128 px for tiny-random) regardless
    frames = [f[::2, ::2].copy() for f in small_frames]   # real decoded pixels, looped
    tracker = MaskTracker("tiny-random", max_memory_frames=8, max_prompt_frames=2)
    tracker.add_points(0, 1, [[20, 30]], [1])
    sizes, rss = {}, {}
    for i in range(FRAMES):
        if i in (300, 600):                               # re-prompts add conditioning frames: those are capped too
            tracker.add_points(i, 1, [[30, 30]], [1])
        tracker.push(i, frames[i % len(frames)])
        if i in (200, FRAMES - 1):
            sizes[i], rss[i] = tracker.bank_size(), rss_bytes()
    early, late = sizes[200], sizes[FRAMES - 1]
    assert late.pixel_frames == 1
    assert late.non_cond_frames == 8 and late.tracked_marks == 8
    assert late.cond_frames == 2                          # the newest 2 of its 3 prompts
    assert late.tensor_bytes <= early.tensor_bytes * 1.2
    # uncapped, transformers' session keeps every frame's pixels, masks and memories (~0.1 MB a frame at 64 px)
    growth_mb = (rss[FRAMES - 1] - rss[200]) / 2**20
    print(f"RSS growth frames 200->{FRAMES}: {growth_mb:.1f} MB; bank {late}")
    assert growth_mb < 40


def test_without_the_cap_the_session_would_grow(small_frames):
    """The same stream with a cap larger than the stream: state grows with every frame (what the cap prevents)."""
    frames = [f[::2, ::2].copy() for f in small_frames[:40]]
    uncapped = MaskTracker("tiny-random", max_memory_frames=10_000)
    capped = MaskTracker("tiny-random", max_memory_frames=8)
    for tracker in (uncapped, capped):
        tracker.add_points(0, 1, [[20, 30]], [1])
        for i, rgb in enumerate(frames):
            tracker.push(i, rgb)
    assert uncapped.bank_size().non_cond_frames == 39 and capped.bank_size().non_cond_frames == 8
    assert uncapped.bank_size().tensor_bytes > 4 * capped.bank_size().tensor_bytes
