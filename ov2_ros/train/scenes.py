"""Synthetic named-shape scenes (``ov2_ros.codec.synth.make_scene``) -> training examples through the node's tokenizer.

Each scene is real H.264 pushed through ``CodecTokenizer`` at the model's settings; every closed window becomes one
example with a query about one of the scene's objects:
- ``point``: that object at the window's first frame (its I-canvas), the single-frame stage-A task;
- ``track``: that object on every frame of the window where it is visible;
- ``ground``: "the X moves" (moving spans inside the window) or, for a jumping object, "the X jumps" (its cycles).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from ov2_ros.codec.synth import OBJECT_NAMES, SyntheticScene, make_scene
from ov2_ros.codec.tokenizer import CodecTokenizer
from ov2_ros.codec.types import CodecWindow, TokenizerConfig
from ov2_ros.train.aux import block_stats, moving_stats, token_targets
from ov2_ros.train.examples import Example, encode_example, model_positions
from ov2_ros.train.targets import check_target, render_target

TASKS = ("point", "track", "ground")


def scene_windows(scene: SyntheticScene, config: TokenizerConfig) -> list[CodecWindow]:
    """Every window the node would run on this clip (one per closed group), in order."""
    tok = CodecTokenizer(config, fps=scene.fps)
    windows = []
    for au in scene.aus:
        if tok.push(au):
            windows.append(tok.window())
    if tok.flush():
        windows.append(tok.window())
    return windows


def moving_spans(scene: SyntheticScene, obj: int, frames: Sequence[int], what: str) -> list[tuple[float, float]]:
    """Seconds spans, clipped to ``frames``, where the object moves (``what='moves'``) or jumps (the rise of each
    cycle that starts inside ``frames``: a span's start is what JumpScore scores, so a rise carried over from before
    the window is no span of its own)."""
    o = scene.objects[obj]
    lo, hi = min(frames), max(frames)
    if what == "jumps":
        period = int(np.diff(o.cycle_starts).min()) if len(o.cycle_starts) > 1 else 10
        intervals = [(s, s + period // 2) for s in o.cycle_starts if s >= lo]
    else:
        intervals = list(o.moving)
    out = []
    for a, b in intervals:
        a, b = max(a, lo), min(b - 1, hi)
        if a <= b:
            out.append((a / scene.fps, b / scene.fps))
    return out


def _window_target(scene: SyntheticScene, window: CodecWindow, task: str, obj: int, rng: np.random.Generator):
    """(query text, answer, item count) for ``task`` about object ``obj`` on ``window``; None if it does not apply."""
    name = scene.objects[obj].name
    times, src = window.frame_times, window.source_size
    if task == "point":
        first = min(times)
        p = scene.point(first, obj)
        return None if p is None else (name, *render_target("point", times, src, name, {first: p}))
    if task == "track":
        pts = {f: scene.point(f, obj) for f in sorted(times) if f < scene.num_frames}
        pts = {f: p for f, p in pts.items() if p is not None}
        return (name, *render_target("track", times, src, name, pts)) if pts else None   # hidden: no target
    what = "jumps" if scene.objects[obj].cycle_starts and rng.random() < 0.5 else "moves"
    spans = moving_spans(scene, obj, list(times), what)
    return (f"{name} {what}", *render_target("ground", times, src, name, spans=spans))


def scene_examples(scene: SyntheticScene, config: TokenizerConfig, tokenizer, tasks: Sequence[str],
                   rng: np.random.Generator, aux: bool = True, motion: bool = False) -> Iterator[Example]:
    """One example per window (task drawn from ``tasks``, object drawn from the scene), aux targets attached
    (``motion``: with the vision-side moving channel, ``moving_stats``)."""
    stats_cache: dict[int, dict[int, np.ndarray]] = {}
    for window in scene_windows(scene, config):
        task = str(rng.choice(list(tasks)))
        obj = int(rng.integers(len(scene.objects)))
        made = _window_target(scene, window, task, obj, rng)
        if made is None:
            continue
        text, answer, count = made
        check_target(task, answer, window.frame_times, window.source_size, count)
        targets = None
        if aux:
            from ov2_ros.codec.packing import CanvasGrid

            grid = CanvasGrid(*window.canvas_size, window.patch_size)
            for f in window.frame_times:
                if f not in stats_cache and f < scene.num_frames:
                    stats_cache[f] = {}
                    for j, o in enumerate(scene.objects):
                        st = block_stats(scene.masks[f, j], grid)
                        stats_cache[f][OBJECT_NAMES.index(o.name)] = (moving_stats(st, _moving_at(scene, j, f))
                                                                      if motion else st)
            targets = token_targets(model_positions(window), stats_cache)
        yield encode_example(tokenizer, window, task, text, answer, targets, _mean_xy(scene, obj, window),
                             OBJECT_NAMES.index(scene.objects[obj].name), _moving_flags(scene, obj, window))


def _mean_xy(scene: SyntheticScene, obj: int, window: CodecWindow) -> np.ndarray | None:
    """The object's centroid averaged over the window's frames where it is visible, as (x, y) in [0, 1]."""
    pts = [p for f in window.frame_times if f < scene.num_frames and (p := scene.point(f, obj)) is not None]
    if not pts:
        return None
    return (np.mean(pts, axis=0) / (scene.width, scene.height)).astype(np.float32)


def _moving_at(scene: SyntheticScene, obj: int, frame: int) -> bool:
    return any(a <= frame < b for a, b in scene.objects[obj].moving)


def _moving_flags(scene: SyntheticScene, obj: int, window: CodecWindow) -> np.ndarray:
    """Per window frame (time order) 1.0 where the object moves (the frames ``moving_spans`` counts), NaN past the
    clip's end."""
    return np.array([np.nan if f >= scene.num_frames else float(_moving_at(scene, obj, f))
                     for f in sorted(window.frame_times)], np.float32)


def build_scene_examples(seeds: Sequence[int], config: TokenizerConfig, tokenizer, tasks: Sequence[str],
                         seed: int = 0, aux: bool = True, motion: bool = False, **scene_kwargs) -> list[Example]:
    """Examples from the scenes of ``seeds`` (deterministic for a given ``seed``)."""
    rng = np.random.default_rng(seed)
    out: list[Example] = []
    for s in seeds:
        out.extend(scene_examples(make_scene(int(s), **scene_kwargs), config, tokenizer, tasks, rng, aux, motion))
    return out
