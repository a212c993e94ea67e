"""Shared fixtures: real H.264 made in memory with libx264, cached per session."""
from __future__ import annotations

import functools

import pytest

from ov2_ros.codec.synth import SyntheticClip, make_event_clip


@functools.lru_cache(maxsize=None)
def event_clip(width: int = 320, height: int = 240, gop: int = 60, bframes: int = 0, seed: int = 0) -> SyntheticClip:
    """The scripted event clip (see ov2_ros.codec.synth.event_frames), cached per argument set."""
    return make_event_clip(width=width, height=height, gop=gop, bframes=bframes, seed=seed)


@pytest.fixture(scope="session")
def clip() -> SyntheticClip:
    """320x240, 30 fps, 120 frames, IDR every 60 frames, no B-frames."""
    return event_clip()


@pytest.fixture(scope="session")
def small_clip() -> SyntheticClip:
    """160x120 version for tests that only need a valid stream."""
    return event_clip(160, 120)


@pytest.fixture(scope="session")
def clip_factory():
    """The cached ``event_clip`` factory, for tests that need other sizes, GOPs or B-frames."""
    return event_clip


@functools.lru_cache(maxsize=None)
def hevc_event_aus(width: int = 160, height: int = 120, frames: int = 30, bframes: int = 0) -> tuple[bytes, ...]:
    """The event clip's first frames as HEVC (libx265), IRAP every 10 frames with VPS/SPS/PPS in band; ``bframes``
    > 0: B-frames in a pyramid (non-reference B-pictures between references)."""
    from fractions import Fraction

    import av

    from ov2_ros.codec.synth import event_frames

    ctx = av.CodecContext.create("libx265", "w")
    ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = width, height, "yuv420p", Fraction(1, 30)
    ctx.options = {"preset": "ultrafast",
                   "x265-params": f"keyint=10:min-keyint=10:scenecut=0:repeat-headers=1:bframes={bframes}:"
                                  + ("b-pyramid=1:" if bframes > 1 else "") + "log-level=error"}
    aus = []
    for i, (rgb, _) in zip(range(frames), event_frames(width, height)):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        aus += [bytes(p) for p in ctx.encode(frame)]
    return tuple(aus + [bytes(p) for p in ctx.encode(None)])


@pytest.fixture(scope="session")
def hevc_aus() -> list[bytes]:
    """30 frames of 160x120 HEVC (see ``hevc_event_aus``)."""
    return list(hevc_event_aus())


@pytest.fixture(scope="session")
def hevc_factory():
    """The cached ``hevc_event_aus`` factory, for other sizes."""
    return hevc_event_aus


@functools.lru_cache(maxsize=None)
def decoded_rgb(aus: tuple[bytes, ...]) -> tuple:
    """RGB uint8 (H, W, 3) frames of a clip, decoded from its H.264 by the project's StreamDecoder."""
    from ov2_ros.codec.decoder import StreamDecoder

    frames = []
    with StreamDecoder(threads="none") as dec:
        for au in aus:
            frames.extend(f.rgb() for f in dec.decode(au))
        frames.extend(f.rgb() for f in dec.flush())
    return tuple(frames)


@pytest.fixture(scope="session")
def small_frames(small_clip) -> tuple:
    """The 160x120 event clip decoded back from H.264: 120 (120, 160, 3) uint8 RGB frames (segment, engines)."""
    return decoded_rgb(small_clip.aus)
