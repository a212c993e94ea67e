"""Model-test fixtures: real codec windows from the streaming tokenizer on libx264 clips, the tiny model."""
from __future__ import annotations

import functools

import pytest

from ov2_ros.codec.synth import make_event_clip
from ov2_ros.codec.tokenizer import CodecTokenizer
from ov2_ros.codec.types import TokenizerConfig


@functools.lru_cache(maxsize=None)
def codec_windows(window_canvases: int = 8):
    """Every window the tokenizer exposes while the 160x120 event clip streams through it (one per closed group)."""
    clip = make_event_clip(160, 120)
    tok = CodecTokenizer(TokenizerConfig(structure="seed", window_canvases=window_canvases, min_group_frames=8,
                                         max_group_frames=32),
                         fps=clip.fps)
    windows = []
    for i, au in enumerate(clip.aus):
        if tok.push(au, stamp=i):
            windows.append(tok.window())
    if tok.flush():
        windows.append(tok.window())
    return tuple(windows)


@pytest.fixture(scope="session")
def windows():
    return codec_windows()


@pytest.fixture(scope="session")
def runtime():
    from ov2_ros.model import load_runtime

    return load_runtime("tiny-random", max_new_tokens=12)
