"""Model text -> ``Answer``. Parsers never raise on model output: what parses is kept, the rest is listed in
``Answer.errors``.

Mapping back to the source: coordinates 0-1000 scale to source pixels (``x * W_src / 1000``); times (seconds as in
the prompt's ``<t seconds>`` tags, i.e. since stream start) snap to the nearest frame of the window's
``frame_times``, so every per-frame item carries a real source frame index the ROS layer can stamp.
"""
from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass

from ov2_ros.model.answer import Answer, Point, Span, TrackPoint, Waypoint

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)"
_TAG = re.compile(r"<(tracks|points|waypoints)\s+coords\s*=\s*\"([^\"]*)\"\s*>(.*?)</\1>", re.S)
_SPAN = re.compile(rf"({_NUM})\s*(?:s|sec|seconds)?\s*(?:-|–|to)\s*({_NUM})\s*(?:s\b|sec\b|seconds\b)", re.I)
_COORD_MAX = 1000.0


@dataclass(frozen=True)
class FrameClock:
    """Frame index <-> seconds of the window, and the source size coordinates scale to."""

    frame_times: dict[int, float]
    source_size: tuple[int, int]          # (H_src, W_src)

    def __post_init__(self) -> None:
        items = sorted(self.frame_times.items(), key=lambda kv: kv[1])
        object.__setattr__(self, "_frames", [f for f, _ in items])
        object.__setattr__(self, "_times", [t for _, t in items])

    def nearest_frame(self, t: float) -> tuple[int, float]:
        """The window frame whose time is closest to ``t``: (frame index, its time)."""
        times: list[float] = self._times  # type: ignore[attr-defined]
        frames: list[int] = self._frames  # type: ignore[attr-defined]
        i = bisect.bisect_left(times, t)
        best = min((j for j in (i - 1, i) if 0 <= j < len(times)), key=lambda j: abs(times[j] - t))
        return frames[best], times[best]

    def to_pixels(self, x: float, y: float) -> tuple[float, float]:
        h, w = self.source_size
        return x * w / _COORD_MAX, y * h / _COORD_MAX


def _numbers(entry: str, count: int) -> list[float] | None:
    parts = entry.replace(",", " ").split()
    if len(parts) != count:
        return None
    try:
        values = [float(p) for p in parts]
    except ValueError:
        return None
    return values if all(math.isfinite(v) for v in values) else None


def _in_range(x: float, y: float) -> bool:
    return 0.0 <= x <= _COORD_MAX and 0.0 <= y <= _COORD_MAX


def _entries(text: str, tag: str, errors: list[str]) -> list[tuple[str, str]]:
    """(coords string, label) of every well-formed ``<tag coords="...">label</tag>``."""
    found = [(m.group(2), m.group(3).strip()) for m in _TAG.finditer(text) if m.group(1) == tag]
    if not found:
        errors.append(f"no <{tag} coords=\"...\">label</{tag}> element in the answer")
    return found


def _parse_tagged(text: str, tag: str, arity: int, build) -> tuple[tuple, list[str]]:
    """Every ``;``-separated entry of every ``<tag coords="...">label</tag>``: ``build(values, label)`` returns an
    item, or an error string when the values are out of range; malformed entries become errors too."""
    out, errors = [], []
    for coords, label in _entries(text, tag, errors):
        for entry in filter(None, (e.strip() for e in coords.split(";"))):
            vals = _numbers(entry, arity)
            item = f"has not {arity} numbers" if vals is None else build(vals, label)
            if isinstance(item, str):
                errors.append(f"{tag} entry {entry!r} {item}")
            else:
                out.append(item)
    return tuple(out), errors


def parse_tracks(text: str, clock: FrameClock) -> tuple[tuple[TrackPoint, ...], list[str]]:
    """``t id x y`` entries -> TrackPoints at the nearest window frame."""
    def build(vals, label):
        t, obj, x, y = vals
        if not _in_range(x, y) or obj != int(obj):
            return "needs x, y in 0-1000 and an integer id"
        frame, ft = clock.nearest_frame(t)
        return TrackPoint(frame, ft, int(obj), *clock.to_pixels(x, y), label=label)

    if not clock.frame_times:
        return (), ["the window has no frame times to map track times to"]
    return _parse_tagged(text, "tracks", 4, build)


def parse_points(text: str, clock: FrameClock) -> tuple[tuple[Point, ...], list[str]]:
    """``t x y`` entries -> Points at the nearest window frame."""
    def build(vals, label):
        t, x, y = vals
        if not _in_range(x, y):
            return "needs x, y in 0-1000"
        frame, ft = clock.nearest_frame(t)
        return Point(frame, ft, *clock.to_pixels(x, y), label=label)

    if not clock.frame_times:
        return (), ["the window has no frame times to map point times to"]
    return _parse_tagged(text, "points", 3, build)


def parse_waypoints(text: str, clock: FrameClock) -> tuple[tuple[Waypoint, ...], list[str]]:
    """Ordered ``x y z`` entries -> Waypoints in source pixels, z the normalised depth."""
    def build(vals, _label):
        x, y, z = vals
        if not _in_range(x, y) or not 0.0 <= z <= 1.0:
            return "needs x, y in 0-1000 and z in [0, 1]"
        return Waypoint(*clock.to_pixels(x, y), z=z)

    return _parse_tagged(text, "waypoints", 3, build)


def parse_spans(text: str) -> tuple[tuple[Span, ...], list[str]]:
    out, errors = [], []
    for m in _SPAN.finditer(text):
        start, end = float(m.group(1)), float(m.group(2))
        if not (math.isfinite(start) and math.isfinite(end)) or end < start or start < 0:
            errors.append(f"span {m.group(0)!r} is not '<start> - <end> seconds' with 0 <= start <= end")
            continue
        out.append(Span(start_s=start, end_s=end))
    if not out and not errors:
        errors.append("no '<start> - <end> seconds' span in the answer")
    return tuple(out), errors


def parse_answer(task: str, text: str, frame_times: dict[int, float], source_size: tuple[int, int]) -> Answer:
    """The ``Answer`` for ``task`` read from the model's ``text`` (never raises on the text)."""
    clock = FrameClock(dict(frame_times), source_size)
    fields: dict = {}
    if task == "track":
        fields["tracks"], errors = parse_tracks(text, clock)
    elif task == "point":
        fields["points"], errors = parse_points(text, clock)
    elif task == "waypoints":
        fields["waypoints"], errors = parse_waypoints(text, clock)
        if frame_times:
            fields["waypoint_frame"] = max(frame_times, key=lambda f: frame_times[f])
    elif task == "ground":
        fields["spans"], errors = parse_spans(text)
    else:
        errors = []
    return Answer(task=task if task in ("track", "point", "waypoints", "ground") else "ask",  # type: ignore[arg-type]
                  text=text, errors=tuple(errors), **fields)
