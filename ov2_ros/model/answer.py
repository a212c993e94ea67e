"""Task and answer values shared by the model, the ROS layer and evaluation (no torch here).

Coordinates in parsed results are source-image pixels; times are seconds since stream start (the model's own times,
counted from its window's origin, are mapped back by ``parsers``), and every per-frame item carries the source frame
index so the ROS layer can stamp it with that frame's stamp. Waypoint depth is in metres.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Task = Literal["track", "point", "waypoints", "ground", "ask"]
TASKS: tuple[str, ...] = ("track", "point", "waypoints", "ground", "ask")
# query prefixes accepted on the query topic / CLI -> task
QUERY_PREFIXES = {"track": "track", "point": "point", "waypoints": "waypoints", "when": "ground",
                  "ground": "ground", "ask": "ask"}


@dataclass(frozen=True)
class Query:
    task: Task
    text: str                      # the user's words without the prefix


@dataclass(frozen=True)
class TrackPoint:
    frame: int                     # absolute source frame index
    time_s: float
    obj_id: int
    x: float                       # pixels in the source frame
    y: float
    label: str = ""


@dataclass(frozen=True)
class Point:
    frame: int
    time_s: float
    x: float
    y: float
    label: str = ""


@dataclass(frozen=True)
class Waypoint:
    x: float                       # pixels
    y: float
    z: float                       # depth in metres (TraceSpatial's [x, y, d])


@dataclass(frozen=True)
class Span:
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Answer:
    """What the model said, parsed. Parsers never raise: what failed to parse is listed in ``errors``."""

    task: Task
    text: str
    tracks: tuple[TrackPoint, ...] = ()
    points: tuple[Point, ...] = ()
    waypoints: tuple[Waypoint, ...] = ()
    waypoint_frame: int | None = None   # the frame the waypoints refer to (the newest frame of the window)
    spans: tuple[Span, ...] = ()
    errors: tuple[str, ...] = ()
    window_span: tuple[float, float] = (0.0, 0.0)   # seconds covered by the window
    window_frames: tuple[int, int] = (0, 0)         # [start, end) frame indices of the window
    latency_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json_dict(self) -> dict[str, Any]:
        from dataclasses import asdict
        return asdict(self)
