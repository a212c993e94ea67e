"""Serving fixtures: real codec windows (the model tests' clip) and answer comparison without timings."""
from __future__ import annotations

import functools

import pytest

from ov2_ros.codec.synth import make_event_clip
from ov2_ros.codec.tokenizer import CodecTokenizer
from ov2_ros.codec.types import TokenizerConfig

# Uniform groups of 8 frames: a fixed number of windows from the 120-frame clip whatever the codec grouping does
# (this folder tests transport, not token selection); 8-canvas windows = 2 groups, each window slides by one group.
STREAM_CONFIG = TokenizerConfig(mode="uniform", uniform_group_frames=8, window_canvases=8)


@functools.lru_cache(maxsize=None)
def stream_windows() -> tuple:
    clip = make_event_clip(160, 120)
    tok = CodecTokenizer(STREAM_CONFIG, fps=clip.fps)
    windows = []
    for i, au in enumerate(clip.aus):
        if tok.push(au, stamp=i):
            windows.append(tok.window())
    return tuple(windows)


@pytest.fixture(scope="session")
def windows():
    """Every window the tokenizer exposes while the 160x120 event clip streams through it (one per group)."""
    return stream_windows()


def same_answer(a, b) -> bool:
    """Equal text and parsed results; latency and stage timings differ between any two runs."""
    keep = ("task", "text", "tracks", "points", "waypoints", "waypoint_frame", "spans", "errors", "window_span",
            "window_frames")
    return all(getattr(a, k) == getattr(b, k) for k in keep) and \
        a.extra["new_tokens"] == b.extra["new_tokens"] and a.extra["prompt_tokens"] == b.extra["prompt_tokens"]
