"""Held-out synthetic clips as an evaluation set: one H.264 bag per (scene, task) and an ``annotations.json``
(schema of ``ov2-ros eval``), so toy models are scored through ``ov2-ros replay`` + ``ov2-ros eval`` like any data.

Per scene seed: ``track`` (query "track: <name>", GT centroid points and visible-mask PNGs of that object),
``ground`` ("when: <name> moves", its moving spans) and, for scenes with a jumping object, ``jump``
("when: <name> jumps", cycle-start times as in JumpScore).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ov2_ros.codec.synth import SyntheticScene, make_scene

TOPIC = "/camera/image/compressed"


def scene_bag(scene: SyntheticScene, path: Path) -> Path:
    from ov2_ros.eval.bags import write_image_bag

    stamps = [int(round(i * 1e9 / scene.fps)) for i in range(scene.num_frames)]
    return write_image_bag(path, stamps, scene.aus, topic=TOPIC)


def _track_entry(scene: SyntheticScene, obj: int, name: str, root: Path) -> dict:
    import cv2

    mask_dir = root / "masks" / name
    mask_dir.mkdir(parents=True, exist_ok=True)
    points, masks = [], {}
    for f in range(scene.num_frames):
        p = scene.point(f, obj)
        if p is not None:
            points.append({"frame": f, "x": round(p[0], 2), "y": round(p[1], 2)})
        png = mask_dir / f"{f:06d}.png"
        cv2.imwrite(str(png), scene.masks[f, obj].astype(np.uint8) * 255)
        masks[str(f)] = str(png.relative_to(root))
    radius = max(4.0, scene.objects[obj].size / 2)
    return {"name": name, "task": "track", "query": f"track: {scene.objects[obj].name}", "points": points,
            "masks": masks, "point_radius_px": radius}


def _spans(intervals, fps: float, n: int) -> list[list[float]]:
    return [[round(a / fps, 3), round((min(b, n) - 1) / fps, 3)] for a, b in intervals if min(b, n) > a]


def write_eval_set(out: str | Path, seeds: Sequence[int], tasks: Sequence[str] = ("track", "ground", "jump"),
                   **scene_kwargs) -> Path:
    """Bags + ``annotations.json`` under ``out``; returns the annotations path. Queries are about object 0 (for
    ``jump`` the jumping one: scenes are made with a periodic first object)."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    videos = []
    for seed in seeds:
        scene = make_scene(int(seed), periodic=True, **scene_kwargs) if "jump" in tasks else \
            make_scene(int(seed), **scene_kwargs)
        obj = 0
        o = scene.objects[obj]
        for task in tasks:
            name = f"scene{seed}_{task}"
            if task == "track":
                entry = _track_entry(scene, obj, name, root)
            elif task == "ground":
                spans = _spans(o.moving, scene.fps, scene.num_frames)
                if not spans:
                    continue
                entry = {"name": name, "task": "ground", "query": f"when: {o.name} moves", "spans_s": spans}
            else:
                if not o.cycle_starts:
                    continue
                entry = {"name": name, "task": "jump", "query": f"when: {o.name} jumps",
                         "events_s": [round(f / scene.fps, 3) for f in o.cycle_starts]}
            scene_bag(scene, root / name)
            videos.append(entry)
    ann = root / "annotations.json"
    ann.write_text(json.dumps({"version": 1, "videos": videos}, indent=1) + "\n")
    return ann
