"""Synthetic H.264 clips with known events, encoded in memory with PyAV's libx264.

Used by the tests, the demo and the benchmarks, so every consumer sees real H.264 (Annex-B, one access unit per
packet, SPS/PPS before every IDR) with ground-truth event intervals.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class SyntheticClip:
    aus: tuple[bytes, ...]            # Annex-B access units, decode order
    fps: float
    width: int
    height: int
    events: tuple[tuple[int, int], ...]   # [start, end) frame intervals where something happens
    static: tuple[tuple[int, int], ...]   # [start, end) intervals with nothing moving
    cuts: tuple[int, ...] = ()            # frames that start a new shot
    boxes: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)  # frame -> object (x0, y0, x1, y1)

    @property
    def num_frames(self) -> int:
        return len(self.aus)


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth, detailed RGB background (low-frequency noise upsampled) that codes cheaply when static."""
    import cv2

    small = rng.integers(40, 215, size=(max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def event_frames(width: int = 320, height: int = 240, seed: int = 0) -> Iterator[tuple[np.ndarray, tuple | None]]:
    """120 RGB frames: static 0-29, a red square appears at 30 and moves fast to 59, rests 60-89, scene cut at 90,
    static 90-119. Yields (frame, object box or None)."""
    rng = np.random.default_rng(seed)
    bg1, bg2 = _texture(rng, height, width), _texture(rng, height, width)
    side = max(8, min(width, height) // 6)
    for i in range(120):
        img = (bg1 if i < 90 else bg2).copy()
        box = None
        if 30 <= i < 90:
            k = min(i, 59) - 30                       # moves until 59, then rests
            x0 = int(4 + k * (width - side - 8) / 29)
            y0 = int(height / 2 - side / 2 + (height / 4) * np.sin(k / 29 * np.pi))
            img[y0:y0 + side, x0:x0 + side] = (220, 30, 30)
            box = (x0, y0, x0 + side, y0 + side)
        yield img, box


def encode_frames(frames, fps: float = 30.0, gop: int = 60, bframes: int = 0, crf: int = 23,
                  preset: str = "veryfast") -> list[bytes]:
    """Encode RGB frames with libx264 into Annex-B access units (one per frame, headers repeated at each IDR)."""
    from ov2_ros.codec.encoder import EncoderConfig, H264Encoder

    frames = list(frames)
    h, w = frames[0].shape[:2]
    encoder = H264Encoder(w, h, EncoderConfig(fps=fps, gop=gop, crf=crf, preset=preset, bframes=bframes))
    out: list[bytes] = []
    for rgb in frames:
        out.extend(encoder.encode(rgb))
    out.extend(encoder.flush())
    return out


def make_event_clip(width: int = 320, height: int = 240, fps: float = 30.0, gop: int = 60, seed: int = 0,
                    bframes: int = 0) -> SyntheticClip:
    """The standard test clip: see ``event_frames`` for its script."""
    frames, boxes = [], {}
    for i, (img, box) in enumerate(event_frames(width, height, seed)):
        frames.append(img)
        if box is not None:
            boxes[i] = box
    aus = encode_frames(frames, fps=fps, gop=gop, bframes=bframes)
    return SyntheticClip(aus=tuple(aus), fps=fps, width=width, height=height,
                         events=((30, 60), (90, 92)), static=((0, 30), (62, 90), (92, 120)), cuts=(90,), boxes=boxes)
