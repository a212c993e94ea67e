"""What the node's output topics carry, as plain values: built once here, wrapped in rclpy messages by
``ov2_ros/ros/convert.py`` (live node) and in rosbags messages by ``ov2_ros/eval/outputs.py`` (replay bags).

Pure: numpy and json only (no rclpy, no rosbags), so the live and offline layouts cannot drift apart.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ov2_ros.model.answer import Answer

StampSeconds = Callable[[int], "float | None"]   # frame index -> source stamp in seconds; None where unknown
RESULT_FIELDS = ("tracks", "points", "waypoints", "waypoint_frame", "spans")


def newest_frame(answer: Answer) -> int:
    """The window's newest source frame (its start for an empty window)."""
    start, end = answer.window_frames
    return max(start, end - 1)


def waypoint_frame(answer: Answer) -> int:
    """The frame waypoints refer to: the one the model named, else the window's newest."""
    return answer.waypoint_frame if answer.waypoint_frame is not None else newest_frame(answer)


def located_points(answer: Answer) -> list[tuple[int, float, float, float]]:
    """``(frame, x, y, z)`` per track point, then per ``point`` answer: pixels, z = object id (-1 for points)."""
    out = [(t.frame, float(t.x), float(t.y), float(t.obj_id)) for t in answer.tracks]
    return out + [(p.frame, float(p.x), float(p.y), -1.0) for p in answer.points]


def answer_json(answer: Answer, query_text: str, stamp_s: StampSeconds, latency_s: float | None) -> str:
    """The ``answer`` topic payload: task, query, text, parsed result, window (seconds, frames and the source
    stamps of its first and newest frames, where known), parse errors and latency (None offline)."""
    d = answer.to_json_dict()
    start, end = answer.window_frames
    window: dict[str, Any] = {"start_s": answer.window_span[0], "end_s": answer.window_span[1], "start_frame": start,
                              "end_frame": end}
    for key, frame in (("start_stamp", start), ("end_stamp", newest_frame(answer))):
        seconds = stamp_s(frame)
        if seconds is not None:
            window[key] = seconds
    payload = {"task": answer.task, "query": query_text, "text": answer.text,
               "result": {k: d[k] for k in RESULT_FIELDS}, "window": window, "errors": list(answer.errors),
               "latency_s": latency_s}
    return json.dumps(payload, default=_jsonable)


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    return str(o)


def mask_union(objects: Mapping[int, Any]) -> np.ndarray | None:
    """mono8 (H, W) 0/255 union of one frame's object masks (``obj_id -> .mask`` bool (H, W), ``.lost``); lost
    objects contribute nothing. None when there are no objects."""
    if not objects:
        return None
    union = np.zeros(np.asarray(next(iter(objects.values())).mask).shape, bool)
    for m in objects.values():
        if not getattr(m, "lost", False):
            union |= np.asarray(m.mask, bool)
    return union.astype(np.uint8) * 255
