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


# --- named-shape scenes (training and evaluation data for the toy models) -------------------------------------------
# 1-3 named shapes on varied backgrounds; each appears, moves, stops, may jump with a known period, and later shapes
# occlude earlier ones. Camera pans shift the background, scene cuts swap it. Ground truth is per frame and object:
# the visible mask (after occlusion), its box and centroid.

COLOURS = {"red": (220, 30, 30), "green": (30, 190, 40), "blue": (40, 70, 235), "yellow": (235, 215, 30)}
SHAPES = ("square", "circle", "triangle")
OBJECT_NAMES = tuple(f"the {c} {s}" for c in COLOURS for s in SHAPES)


@dataclass(frozen=True)
class SceneObject:
    name: str                                   # "the red square"
    centers: tuple[tuple[float, float] | None, ...]   # per frame (x, y) before occlusion, None while absent
    size: int
    moving: tuple[tuple[int, int], ...]         # [start, end) frames where it moves
    cycle_starts: tuple[int, ...] = ()          # frames where a jump cycle starts (periodic objects)


@dataclass(frozen=True)
class SyntheticScene:
    aus: tuple[bytes, ...]
    fps: float
    width: int
    height: int
    objects: tuple[SceneObject, ...]
    masks: np.ndarray                            # (frames, objects, H, W) bool visible masks
    cuts: tuple[int, ...] = ()
    frames: np.ndarray | None = None             # (frames, H, W, 3) uint8 RGB, kept when asked for

    @property
    def num_frames(self) -> int:
        return len(self.aus)

    def object(self, name: str) -> int:
        return [o.name for o in self.objects].index(name)

    def box(self, frame: int, obj: int) -> tuple[int, int, int, int] | None:
        """(x0, y0, x1, y1) of the visible part, exclusive ends; None when hidden or absent."""
        ys, xs = np.nonzero(self.masks[frame, obj])
        return None if len(xs) == 0 else (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)

    def point(self, frame: int, obj: int) -> tuple[float, float] | None:
        """Centroid of the visible part (pixels), None when hidden."""
        ys, xs = np.nonzero(self.masks[frame, obj])
        return None if len(xs) == 0 else (float(xs.mean()), float(ys.mean()))


def _gradient(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    a, b = rng.integers(30, 225, size=(2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[:h, :w]
    s = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)
    s = (s - s.min()) / max(1e-6, np.ptp(s))
    return (a[None, None] * (1 - s[..., None]) + b[None, None] * s[..., None]).astype(np.uint8)


def _stripes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = _gradient(rng, h, w).astype(np.int16)
    period = rng.integers(10, 40)
    yy, xx = np.mgrid[:h, :w]
    wave = (np.sin((xx * rng.uniform(-1, 1) + yy) * 2 * np.pi / period) * 25).astype(np.int16)
    return np.clip(base + wave[..., None], 0, 255).astype(np.uint8)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Procedural texture, gradient or stripes, dimmed away from the shape colours' saturation."""
    kind = rng.integers(0, 3)
    img = (_texture, _gradient, _stripes)[kind](rng, h, w)
    grey = img.mean(axis=2, keepdims=True)
    return (0.55 * img + 0.45 * grey).astype(np.uint8)   # desaturated so the named colours stand out


def _shape_mask(shape: str, cx: float, cy: float, size: int, h: int, w: int) -> np.ndarray:
    import cv2

    mask = np.zeros((h, w), np.uint8)
    r = size / 2
    if shape == "square":
        cv2.rectangle(mask, (int(cx - r), int(cy - r)), (int(cx + r) - 1, int(cy + r) - 1), 1, -1)
    elif shape == "circle":
        cv2.circle(mask, (int(cx), int(cy)), int(r), 1, -1)
    else:
        pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
        cv2.fillPoly(mask, [pts], 1)
    return mask.astype(bool)


def _object_script(rng: np.random.Generator, n: int, w: int, h: int, size: int, periodic: bool):
    """Per-frame centers: appear, then alternate move / stop segments; optionally a periodic vertical jump."""
    appear = 0 if rng.random() < 0.6 or n < 6 else int(rng.integers(1, n // 3))
    pos = np.array([rng.uniform(size, w - size), rng.uniform(size, h - size)])
    centers: list[tuple[float, float] | None] = [None] * appear
    moving, seg_start, f = [], None, appear
    period = int(rng.integers(10, 20)) if periodic else 0
    phase = int(rng.integers(0, max(1, period))) if periodic else 0
    while f < n:
        length = int(rng.integers(6, 20))
        if rng.random() < 0.55:
            target = np.array([rng.uniform(size, w - size), rng.uniform(size, h - size)])
            step = (target - pos) / length
            seg_start = f
            for _ in range(min(length, n - f)):
                pos = pos + step
                centers.append((float(pos[0]), float(pos[1])))
                f += 1
            if moving and moving[-1][1] == seg_start:
                seg_start = moving.pop()[0]          # back-to-back moves are one moving span
            moving.append((seg_start, f))
        else:
            for _ in range(min(length, n - f)):
                centers.append((float(pos[0]), float(pos[1])))
                f += 1
    starts: list[int] = []
    if periodic:
        amp = rng.uniform(0.15, 0.3) * h
        for i in range(appear, n):
            k = (i - appear - phase) % period
            if k == 0:
                starts.append(i)
            x, y = centers[i]  # type: ignore[misc]
            centers[i] = (x, float(np.clip(y - amp * np.sin(np.pi * k / period), size / 2, h - size / 2)))
    return tuple(centers), tuple(moving), tuple(starts)


def scene_frames(seed: int, width: int = 320, height: int = 240, num_frames: int = 64, max_objects: int = 3,
                 pan: bool | None = None, cut: bool | None = None, periodic: bool | None = None,
                 names: tuple[str, ...] | None = None):
    """A random scene from ``seed``: (RGB frames (N, H, W, 3), objects, visible masks (N, K, H, W), cuts).

    ``pan`` / ``cut`` / ``periodic`` force a camera pan, a scene cut, or a jumping first object (None: random);
    ``names`` fixes the objects (else 1-``max_objects`` distinct random names)."""
    rng = np.random.default_rng(seed)
    pan = bool(rng.random() < 0.3) if pan is None else pan
    cut = bool(rng.random() < 0.25) if cut is None else cut
    periodic = bool(rng.random() < 0.3) if periodic is None else periodic
    if names is None:
        k = int(rng.integers(1, max_objects + 1))
        names = tuple(OBJECT_NAMES[i] for i in rng.choice(len(OBJECT_NAMES), size=k, replace=False))
    margin = width // 2 if pan else 0
    bgs = [_background(rng, height, width + margin), _background(rng, height, width + margin)]
    cut_at = int(rng.integers(num_frames // 3, 2 * num_frames // 3)) if cut and num_frames >= 6 else None
    objects = []
    for j, name in enumerate(names):
        size = int(rng.integers(min(width, height) // 7, min(width, height) // 4))
        centers, moving, starts = _object_script(rng, num_frames, width, height, size, periodic and j == 0)
        objects.append(SceneObject(name, centers, size, moving, starts))
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    masks = np.zeros((num_frames, len(objects), height, width), bool)
    for i in range(num_frames):
        bg = bgs[1 if cut_at is not None and i >= cut_at else 0]
        off = int(margin * i / max(1, num_frames - 1))
        img = bg[:, off:off + width].copy()
        for j, obj in enumerate(objects):          # later objects are drawn on top (occlude earlier ones)
            c = obj.centers[i]
            if c is None:
                continue
            colour, shape = obj.name.split()[1:3]
            m = _shape_mask(shape, c[0], c[1], obj.size, height, width)
            img[m] = COLOURS[colour]
            masks[i, :j] &= ~m
            masks[i, j] = m
        frames[i] = img
    return frames, tuple(objects), masks, ((cut_at,) if cut_at is not None else ())


def make_scene(seed: int, width: int = 320, height: int = 240, num_frames: int = 64, fps: float = 10.0,
               gop: int = 32, keep_frames: bool = False, **kwargs) -> SyntheticScene:
    """``scene_frames`` encoded to real H.264 (see ``scene_frames`` for the options)."""
    frames, objects, masks, cuts = scene_frames(seed, width, height, num_frames, **kwargs)
    aus = encode_frames(list(frames), fps=fps, gop=gop)
    return SyntheticScene(tuple(aus), fps, width, height, objects, masks, cuts,
                          frames if keep_frames else None)
