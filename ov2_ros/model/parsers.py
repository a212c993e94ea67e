"""Model text -> ``Answer``, and ``render_answer``, its inverse for training targets. Parsers never raise on model
output: what parses is kept (at most ``MAX_ITEMS`` items), the rest is listed in ``Answer.errors`` (at most
``MAX_ERRORS`` lines).

Formats (``prompts.py`` asks for them):
- tracks, the release's demo format: ``<tracks coords="t id x y;t id x y;...">\\nlabel\\n</tracks>``;
- waypoints, TraceSpatial's ``[x, y, d]`` points in order (``[[x, y, d], ...]`` or ``(x, y, d)`` tuples), depth ``d``
  in metres;
- spans, the release's "Predicted interval a–b s" and the other usual ways to write one: ``a-b``, ``a to b``,
  ``from a to b seconds``, ``a s - b s``, ``[a, b]``;
- points, the project's own format (the release documents none): ``<points coords="t x y;...">\\nlabel\\n</points>``,
  with a fallback that reads bare ``(x, y)`` and ``[x, y]`` pairs as points on the window's newest frame.

Mapping back to the source: x, y are 0-1000 over the frame width/height and scale to source pixels
(``x * W_src / 1000``). Times are seconds since the window's origin, as the prompt's ``<t seconds>`` tags write them
(``timebase.time_origin``); the parser adds the origin back and snaps to the nearest frame of the window, so every
per-frame item carries a real source frame index and time the ROS layer can stamp.

Linear time on any text: every pattern has bounded repetitions (numbers of at most 12+12 digits, runs of at most a
few spaces) and no ``.*`` scan; tag bodies are found by one forward scan with precomputed close-tag positions, so
an unclosed tag costs one look-up, not a scan to the end of the text.
"""
from __future__ import annotations

import bisect
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ov2_ros.model.answer import Answer, Point, Span, TrackPoint, Waypoint
from ov2_ros.model.timebase import time_origin

COORD_MAX = 1000.0
DEPTH_MAX_M = 1000.0          # a waypoint deeper than this is not a depth in metres
MAX_ERRORS = 20
MAX_ITEMS = 4096             # items kept per answer (a 32-canvas window has ~100 frames x a few objects)
MAX_LABEL = 500               # characters kept of a tag's label

_NUM = r"(?<![\w.])(\d{1,12}(?:\.\d{1,12})?|\.\d{1,12})(?![\d])"
_SNUM = r"([-+]?(?:\d{1,12}(?:\.\d{1,12})?|\.\d{1,12}))(?![\d])"
_UNIT = r"(?:s|secs?|seconds?)\b"
_SPAN = re.compile(
    rf"\[\s{{0,3}}{_NUM}\s{{0,3}}(?:{_UNIT})?\s{{0,3}},\s{{0,3}}{_NUM}\s{{0,3}}(?:{_UNIT})?\s{{0,3}}\]"
    rf"|{_NUM}\s{{0,3}}(?:{_UNIT})?\s{{0,3}}(?:-|–|—|to\b)\s{{0,3}}{_NUM}", re.I)
_TRIPLE = re.compile(rf"[\[(]\s{{0,3}}{_SNUM}\s{{0,3}},\s{{0,3}}{_SNUM}\s{{0,3}},\s{{0,3}}{_SNUM}\s{{0,3}}[\])]")
_PAIR = re.compile(rf"[\[(]\s{{0,3}}{_SNUM}\s{{0,3}},\s{{0,3}}{_SNUM}\s{{0,3}}[\])]")
_OPEN = re.compile(r"<(tracks|points)\s{1,8}coords\s{0,4}=\s{0,4}\"")


@dataclass(frozen=True)
class FrameClock:
    """A window's frames and times, its time origin, and the source size coordinates scale to.

    ``frame_times`` are the window's (seconds since stream start); model times are seconds since ``origin_s``."""

    frame_times: dict[int, float]
    source_size: tuple[int, int]          # (H_src, W_src)

    def __post_init__(self) -> None:
        items = sorted(self.frame_times.items(), key=lambda kv: kv[1])
        object.__setattr__(self, "_frames", [f for f, _ in items])
        object.__setattr__(self, "_times", [t for _, t in items])
        object.__setattr__(self, "origin_s", time_origin(self.frame_times) if self.frame_times else 0.0)

    origin_s: float = field(init=False, default=0.0)   # model time 0 in the window's clock (timebase.time_origin)

    def nearest_frame(self, t: float) -> tuple[int, float]:
        """The window frame closest to model time ``t`` (seconds since the origin): (frame index, its time since
        stream start)."""
        times: list[float] = self._times  # type: ignore[attr-defined]
        frames: list[int] = self._frames  # type: ignore[attr-defined]
        absolute = t + self.origin_s
        i = bisect.bisect_left(times, absolute)
        best = min((j for j in (i - 1, i) if 0 <= j < len(times)), key=lambda j: abs(times[j] - absolute))
        return frames[best], times[best]

    def newest_frame(self) -> tuple[int, float]:
        frames: list[int] = self._frames  # type: ignore[attr-defined]
        times: list[float] = self._times  # type: ignore[attr-defined]
        return frames[-1], times[-1]

    def to_pixels(self, x: float, y: float) -> tuple[float, float]:
        h, w = self.source_size
        return x * w / COORD_MAX, y * h / COORD_MAX

    def to_coords(self, x_px: float, y_px: float) -> tuple[int, int]:
        """Source pixels -> the answers' integer 0-1000 coordinates (clipped)."""
        h, w = self.source_size
        return (int(min(COORD_MAX, max(0.0, round(x_px * COORD_MAX / w)))),
                int(min(COORD_MAX, max(0.0, round(y_px * COORD_MAX / h)))))


class _Errors(list):
    """An error list that keeps the first ``MAX_ERRORS`` messages and counts the rest (hostile text can hold
    millions of bad entries)."""

    dropped = 0

    def append(self, message: str) -> None:  # type: ignore[override]
        if len(self) < MAX_ERRORS:
            super().append(message)
        else:
            self.dropped += 1

    def done(self) -> list[str]:
        return list(self) + ([f"... and {self.dropped} more errors"] if self.dropped else [])


def _short(text: str, n: int = 60) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")


def _numbers(entry: str, count: int) -> list[float] | None:
    parts = entry.replace(",", " ").split()
    if len(parts) != count or any(len(p) > 32 for p in parts):
        return None
    try:
        values = [float(p) for p in parts]
    except ValueError:
        return None
    return values if all(math.isfinite(v) for v in values) else None


def _in_range(x: float, y: float) -> bool:
    return 0.0 <= x <= COORD_MAX and 0.0 <= y <= COORD_MAX


def tagged(text: str, tag: str) -> list[tuple[str, str]]:
    """(coords, label) of every ``<tag coords="...">label</tag>`` in order, in one forward scan. A tag whose close
    is missing (a cut-off answer) keeps its coords; its label runs to the next ``<`` or the end."""
    closes = [m.start() for m in re.finditer(f"</{tag}>", text)]
    out, pos = [], 0
    while True:
        m = _OPEN.search(text, pos)
        if m is None:
            break
        if m.group(1) != tag:
            pos = m.end()
            continue
        quote = text.find('"', m.end())
        if quote < 0:
            break                      # no closing quote anywhere after: no later tag can be complete either
        coords = text[m.end():quote]
        gt = quote + 1
        while gt < len(text) and gt - quote <= 8 and text[gt].isspace():
            gt += 1
        if gt >= len(text) or text[gt] != ">":
            pos = quote + 1
            continue
        i = bisect.bisect_left(closes, gt + 1)
        if i < len(closes):
            end, pos = closes[i], closes[i] + len(tag) + 3
        else:
            nxt = text.find("<", gt + 1)
            end = pos = nxt if nxt >= 0 else len(text)
        out.append((coords, text[gt + 1:min(end, gt + 1 + MAX_LABEL)].strip()))
    return out


def _full(out: list, errors: _Errors) -> bool:
    """True once ``out`` holds ``MAX_ITEMS`` (noted once in ``errors``): a degenerate answer stops being read."""
    if len(out) < MAX_ITEMS:
        return False
    if not any(e.startswith("more than") for e in errors):
        errors.append(f"more than {MAX_ITEMS} items in the answer; the rest is ignored")
    return True


def _parse_tagged(text: str, tag: str, arity: int, build, errors: _Errors) -> tuple:
    """Every ``;``-separated entry of every ``<tag coords="...">``: ``build(values, label)`` returns an item, or an
    error string when the values are out of range; malformed entries become errors too."""
    out: list = []
    for coords, label in tagged(text, tag):
        if _full(out, errors):
            break
        for entry in filter(None, (e.strip() for e in coords.split(";"))):
            if _full(out, errors):
                break
            vals = _numbers(entry, arity)
            item = f"has not {arity} numbers" if vals is None else build(vals, label)
            if isinstance(item, str):
                errors.append(f"{tag} entry {_short(entry)} {item}")
            else:
                out.append(item)
    return tuple(out)


def parse_tracks(text: str, clock: FrameClock) -> tuple[tuple[TrackPoint, ...], list[str]]:
    """``t id x y`` entries -> TrackPoints at the nearest window frame."""
    errors = _Errors()

    def build(vals, label):
        t, obj, x, y = vals
        if not _in_range(x, y) or obj != int(obj) or obj < 0:
            return "needs x, y in 0-1000 and an integer id >= 0"
        frame, ft = clock.nearest_frame(t)
        return TrackPoint(frame, ft, int(obj), *clock.to_pixels(x, y), label=label)

    if not clock.frame_times:
        return (), ["the window has no frame times to map track times to"]
    tracks = _parse_tagged(text, "tracks", 4, build, errors)
    if not tracks and not errors:
        errors.append('no <tracks coords="t id x y;...">label</tracks> element in the answer')
    return tracks, errors.done()


def parse_points(text: str, clock: FrameClock) -> tuple[tuple[Point, ...], list[str]]:
    """``t x y`` entries of ``<points>`` -> Points at the nearest window frame; without any, bare ``(x, y)`` /
    ``[x, y]`` pairs -> Points on the newest frame."""
    errors = _Errors()

    def build(vals, label):
        t, x, y = vals
        if not _in_range(x, y):
            return "needs x, y in 0-1000"
        frame, ft = clock.nearest_frame(t)
        return Point(frame, ft, *clock.to_pixels(x, y), label=label)

    if not clock.frame_times:
        return (), ["the window has no frame times to map point times to"]
    points = _parse_tagged(text, "points", 3, build, errors)
    if not points and not errors:
        frame, ft = clock.newest_frame()
        found: list = []
        for m in _PAIR.finditer(text):
            if _full(found, errors):
                break
            x, y = float(m.group(1)), float(m.group(2))
            if _in_range(x, y):
                found.append(Point(frame, ft, *clock.to_pixels(x, y)))
            else:
                errors.append(f"point {_short(m.group(0))} needs x, y in 0-1000")
        points = tuple(found)
    if not points and not errors:
        errors.append('no <points coords="t x y;...">label</points> element or (x, y) pair in the answer')
    return points, errors.done()


def parse_waypoints(text: str, clock: FrameClock) -> tuple[tuple[Waypoint, ...], list[str]]:
    """Ordered ``[x, y, d]`` (or ``(x, y, d)``) points -> Waypoints in source pixels, ``z`` the depth in metres."""
    errors, out = _Errors(), []
    for m in _TRIPLE.finditer(text):
        if _full(out, errors):
            break
        x, y, d = (float(g) for g in m.groups())
        if not _in_range(x, y) or not 0.0 <= d <= DEPTH_MAX_M:
            errors.append(f"waypoint {_short(m.group(0))} needs x, y in 0-1000 and a depth in 0-{DEPTH_MAX_M:g} m")
            continue
        out.append(Waypoint(*clock.to_pixels(x, y), z=d))
    if not out and not errors:
        errors.append("no [x, y, d] waypoint in the answer")
    return tuple(out), errors.done()


def parse_spans(text: str, clock: FrameClock | None = None) -> tuple[tuple[Span, ...], list[str]]:
    """Time spans -> Spans in seconds since stream start (model seconds plus the window's origin, when a clock is
    given)."""
    origin = clock.origin_s if clock is not None and clock.frame_times else 0.0
    out, errors = [], _Errors()
    for m in _SPAN.finditer(text):
        if _full(out, errors):
            break
        a, b = (g for g in m.groups() if g is not None)
        start, end = float(a), float(b)
        if end < start:
            errors.append(f"span {_short(m.group(0))} ends before it starts")
            continue
        out.append(Span(start_s=start + origin, end_s=end + origin))
    if not out and not errors:
        errors.append("no 'a - b s' span in the answer")
    return tuple(out), errors.done()


def parse_answer(task: str, text: str, frame_times: dict[int, float], source_size: tuple[int, int]) -> Answer:
    """The ``Answer`` for ``task`` read from the model's ``text`` (never raises on the text). ``frame_times`` are
    the window's, seconds since stream start; the text's times count from their earliest (the prompt's origin)."""
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
        fields["spans"], errors = parse_spans(text, clock)
    else:
        errors = []
    return Answer(task=task if task in ("track", "point", "waypoints", "ground") else "ask",  # type: ignore[arg-type]
                  text=text, errors=tuple(errors), **fields)


# -- the inverse: answers in these formats, for training targets ----------------------------------------------------
def render_tracks(tracks: Sequence[TrackPoint], clock: FrameClock, label: str) -> str:
    """TrackPoints (source pixels, times since stream start) -> the release's ``<tracks>`` answer."""
    coords = ";".join(f"{p.time_s - clock.origin_s:.2f} {p.obj_id} {' '.join(map(str, clock.to_coords(p.x, p.y)))}"
                      for p in tracks)
    return f'<tracks coords="{coords}">\n{label}\n</tracks>'


def render_points(points: Sequence[Point], clock: FrameClock, label: str) -> str:
    coords = ";".join(f"{p.time_s - clock.origin_s:.2f} {' '.join(map(str, clock.to_coords(p.x, p.y)))}"
                      for p in points)
    return f'<points coords="{coords}">\n{label}\n</points>'


def render_waypoints(waypoints: Sequence[Waypoint], clock: FrameClock) -> str:
    """Waypoints (source pixels, depth in metres) -> ``[[x, y, d], ...]``."""
    return "[" + ", ".join("[{}, {}, {:.2f}]".format(*clock.to_coords(w.x, w.y), w.z) for w in waypoints) + "]"


def render_spans(spans: Sequence[Span], clock: FrameClock) -> str:
    """Spans (seconds since stream start) -> the release's "Predicted interval a–b s", one line per span."""
    return "\n".join(f"Predicted interval {s.start_s - clock.origin_s:.1f}–{s.end_s - clock.origin_s:.1f} s"
                     for s in spans)


def render_answer(task: str, answer: Answer, frame_times: dict[int, float], source_size: tuple[int, int],
                  label: str = "") -> str:
    """The text ``parse_answer(task, text, frame_times, source_size)`` reads back into ``answer``'s items (up to the
    formats' rounding: coordinates to integers 0-1000, times to the nearest window frame): the counterpart of each
    parser, for training targets. ``ask`` returns ``answer.text``."""
    clock = FrameClock(dict(frame_times), source_size)
    if task == "track":
        return render_tracks(answer.tracks, clock, label)
    if task == "point":
        return render_points(answer.points, clock, label)
    if task == "waypoints":
        return render_waypoints(answer.waypoints, clock)
    if task == "ground":
        return render_spans(answer.spans, clock)
    return answer.text
