"""``annotations.json``: ground truth per video or bag, validated into frozen values (schema: README.md, section Evaluation).

Times are seconds since the first image message of the topic (its source stamp); frames are 0-based message
indices on that topic. Every error names the file and the JSON path of the offending value.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ov2_ros.eval.errors import AnnotationError

GtTask = Literal["jump", "ground", "track"]
GT_TASKS = ("jump", "ground", "track")
SCHEMA_VERSION = 1
DEFAULT_POINT_RADIUS_PX = 10.0


@dataclass(frozen=True)
class VideoAnnotation:
    name: str                                   # matches the replay's results name (the bag folder name)
    task: GtTask
    query: str
    events_s: tuple[float, ...] = ()            # jump: cycle-start times
    spans_s: tuple[tuple[float, float], ...] = ()   # ground: [start, end] spans
    points: dict[int, tuple[float, float]] = field(default_factory=dict)   # track: frame -> (x, y) pixels
    masks: dict[int, Path] = field(default_factory=dict)                   # track: frame -> mask PNG (absolute)
    point_radius_px: float = DEFAULT_POINT_RADIUS_PX

    def load_mask(self, frame: int) -> np.ndarray:
        """The GT mask of ``frame`` as bool (H, W): non-zero pixels are the object."""
        import cv2

        img = cv2.imread(str(self.masks[frame]), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise AnnotationError(f"{self.name}: mask {self.masks[frame]} for frame {frame} is not a readable PNG")
        return img > 0


@dataclass(frozen=True)
class Annotations:
    path: Path
    videos: tuple[VideoAnnotation, ...]

    def for_name(self, name: str) -> VideoAnnotation:
        """The annotation named ``name``; a file with a single video matches any name."""
        for v in self.videos:
            if v.name == name:
                return v
        if len(self.videos) == 1:
            return self.videos[0]
        raise AnnotationError(f"{self.path}: no video named {name!r} (have {[v.name for v in self.videos]})")


def load_annotations(path: str | Path) -> Annotations:
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path}: not valid JSON: {exc}") from exc
    return parse_annotations(doc, path)


def parse_annotations(doc: Any, path: Path) -> Annotations:
    """Validate a parsed document; mask paths resolve against ``path``'s folder."""
    where = str(path)
    _require(isinstance(doc, dict), where, "top level must be an object with 'version' and 'videos'")
    _require(doc.get("version") == SCHEMA_VERSION, f"{where}: version",
             f"must be {SCHEMA_VERSION}, got {doc.get('version')!r}")
    videos = doc.get("videos")
    _require(isinstance(videos, list) and videos, f"{where}: videos", "must be a non-empty list")
    parsed = tuple(_parse_video(v, f"{where}: videos[{i}]", path.parent) for i, v in enumerate(videos))
    names = [v.name for v in parsed]
    dup = sorted({n for n in names if names.count(n) > 1})
    _require(not dup, f"{where}: videos", f"names must be unique, repeated: {dup}")
    return Annotations(path, parsed)


def _parse_video(v: Any, where: str, root: Path) -> VideoAnnotation:
    _require(isinstance(v, dict), where, "must be an object")
    known = {"name", "task", "query", "events_s", "spans_s", "points", "masks", "point_radius_px"}
    unknown = sorted(set(v) - known)
    _require(not unknown, where, f"unknown keys {unknown} (allowed: {sorted(known)})")
    name, task, query = v.get("name"), v.get("task"), v.get("query")
    _require(isinstance(name, str) and name, f"{where}.name", "must be a non-empty string")
    _require(task in GT_TASKS, f"{where}.task", f"must be one of {GT_TASKS}, got {task!r}")
    _require(isinstance(query, str) and query.strip(), f"{where}.query", "must be a non-empty string")
    if task == "jump":
        _require("events_s" in v, where, "task 'jump' needs events_s (cycle-start times, seconds)")
        events = tuple(_seconds(t, f"{where}.events_s[{i}]") for i, t in enumerate(_list(v["events_s"],
                                                                                           f"{where}.events_s")))
        return VideoAnnotation(name, task, query, events_s=tuple(sorted(events)))
    if task == "ground":
        _require("spans_s" in v, where, "task 'ground' needs spans_s ([[start, end], ...] seconds)")
        spans = []
        for i, s in enumerate(_list(v["spans_s"], f"{where}.spans_s")):
            w = f"{where}.spans_s[{i}]"
            _require(isinstance(s, list) and len(s) == 2, w, f"must be [start, end], got {s!r}")
            start, end = _seconds(s[0], w), _seconds(s[1], w)
            _require(end >= start, w, f"end {end} is before start {start}")
            spans.append((start, end))
        _require(bool(spans), f"{where}.spans_s", "needs at least one span")
        return VideoAnnotation(name, task, query, spans_s=tuple(spans))
    _require("points" in v or "masks" in v, where, "task 'track' needs points and/or masks")
    points = {}
    for i, p in enumerate(_list(v.get("points", []), f"{where}.points")):
        w = f"{where}.points[{i}]"
        _require(isinstance(p, dict) and set(p) == {"frame", "x", "y"}, w, f"must be {{frame, x, y}}, got {p!r}")
        frame = _frame(p["frame"], f"{w}.frame")
        _require(frame not in points, f"{w}.frame", f"frame {frame} has two points")
        points[frame] = (_number(p["x"], f"{w}.x"), _number(p["y"], f"{w}.y"))
    masks = {}
    raw_masks = v.get("masks", {})
    _require(isinstance(raw_masks, dict), f"{where}.masks", "must map frame (string) -> PNG path")
    for key, rel in raw_masks.items():
        w = f"{where}.masks[{key!r}]"
        _require(isinstance(key, str) and key.isdigit(), w, "keys must be frame numbers as strings")
        _require(isinstance(rel, str) and rel.lower().endswith(".png"), w, f"must be a .png path, got {rel!r}")
        full = (root / rel).resolve()
        _require(full.is_file(), w, f"file {full} does not exist")
        masks[int(key)] = full
    radius = _number(v.get("point_radius_px", DEFAULT_POINT_RADIUS_PX), f"{where}.point_radius_px")
    _require(radius > 0, f"{where}.point_radius_px", "must be > 0")
    return VideoAnnotation(name, task, query, points=dict(sorted(points.items())), masks=dict(sorted(masks.items())),
                           point_radius_px=radius)


def _require(ok: bool, where: str, what: str) -> None:
    if not ok:
        raise AnnotationError(f"{where}: {what}")


def _list(x: Any, where: str) -> list:
    _require(isinstance(x, list), where, f"must be a list, got {type(x).__name__}")
    return x


def _number(x: Any, where: str) -> float:
    _require(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x), where,
             f"must be a finite number, got {x!r}")
    return float(x)


def _seconds(x: Any, where: str) -> float:
    t = _number(x, where)
    _require(t >= 0, where, f"times are seconds since the first frame, got {t}")
    return t


def _frame(x: Any, where: str) -> int:
    _require(isinstance(x, int) and not isinstance(x, bool) and x >= 0, where, f"must be a frame index >= 0, got {x!r}")
    return int(x)
