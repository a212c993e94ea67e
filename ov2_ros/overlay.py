"""An answer drawn on its source frame, for people: track points (with their trails), points, waypoints, the SAM2
mask outline and the answer text. Used by the node's optional ``debug/overlay`` topic and ``ov2-ros replay
--overlay``. Pure: numpy + OpenCV, no rclpy.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from ov2_ros.model.answer import Answer
from ov2_ros.results import newest_frame, waypoint_frame

# RGB colours per object id (cycled); points and waypoints have their own
_OBJECT_COLOURS = ((255, 64, 64), (64, 200, 255), (255, 210, 0), (190, 90, 255), (0, 230, 120), (255, 140, 0))
_POINT = (255, 255, 255)
_WAYPOINT_NEAR, _WAYPOINT_FAR = (0, 255, 120), (255, 60, 200)
_TEXT_CHARS = 90


def source_frame(answer: Answer) -> int:
    """The frame an answer is drawn on: the waypoints' frame, else the window's newest frame."""
    return waypoint_frame(answer) if answer.waypoints else newest_frame(answer)


def _colour(obj_id: int) -> tuple[int, int, int]:
    return _OBJECT_COLOURS[obj_id % len(_OBJECT_COLOURS)]


def _pt(x: float, y: float) -> tuple[int, int]:
    return int(round(x)), int(round(y))


def draw_overlay(rgb: np.ndarray, answer: Answer, masks: Mapping[int, Any] | None = None,
                 query: str = "") -> np.ndarray:
    """A copy of ``rgb`` (H, W, 3) uint8 with ``answer`` drawn on it. ``masks``: ``obj_id -> .mask`` (bool (H, W))
    of the same frame, outlined in the object's colour. Coordinates are source pixels, as the parsers give them."""
    img = np.ascontiguousarray(rgb, dtype=np.uint8).copy()
    h, w = img.shape[:2]
    scale = max(1, round(min(h, w) / 240))        # line widths that stay visible from 160x120 to 4K
    frame = source_frame(answer)
    for obj_id, m in (masks or {}).items():
        mask = np.asarray(m.mask, np.uint8)
        if getattr(m, "lost", False) or mask.shape != (h, w) or not mask.any():
            continue
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(img, contours, -1, _colour(int(obj_id)), scale)
    by_object: dict[int, list] = {}
    for t in sorted(answer.tracks, key=lambda t: t.frame):
        by_object.setdefault(t.obj_id, []).append(t)
    for obj_id, track in by_object.items():
        colour = _colour(obj_id)
        trail = np.array([_pt(t.x, t.y) for t in track if t.frame <= frame], np.int32)
        if len(trail) > 1:
            cv2.polylines(img, [trail], False, colour, scale, cv2.LINE_AA)
        newest = max((t for t in track if t.frame <= frame), key=lambda t: t.frame, default=track[0])
        cv2.circle(img, _pt(newest.x, newest.y), 4 * scale, colour, -1, cv2.LINE_AA)
        cv2.putText(img, newest.label or str(obj_id), (_pt(newest.x, newest.y)[0] + 5 * scale,
                    _pt(newest.x, newest.y)[1]), cv2.FONT_HERSHEY_SIMPLEX, 0.35 * scale, colour, 1, cv2.LINE_AA)
    for p in answer.points:
        c = _pt(p.x, p.y)
        cv2.drawMarker(img, c, _POINT, cv2.MARKER_CROSS, 10 * scale, scale, cv2.LINE_AA)
        cv2.circle(img, c, 5 * scale, (255, 0, 0), scale, cv2.LINE_AA)
    if answer.waypoints:
        path = np.array([_pt(wp.x, wp.y) for wp in answer.waypoints], np.int32)
        cv2.polylines(img, [path], False, _WAYPOINT_NEAR, scale, cv2.LINE_AA)
        n = len(answer.waypoints)
        for k, c in enumerate(path):
            a = k / max(1, n - 1)                   # first waypoint green, last magenta
            colour = tuple(int((1 - a) * u + a * v) for u, v in zip(_WAYPOINT_NEAR, _WAYPOINT_FAR))
            cv2.circle(img, (int(c[0]), int(c[1])), 3 * scale, colour, -1, cv2.LINE_AA)
    _caption(img, answer, query, scale)
    return img


def _caption(img: np.ndarray, answer: Answer, query: str, scale: int) -> None:
    """Task, query and the answer's text (or spans) on a dark band at the top."""
    spans = ", ".join(f"{s.start_s:.1f}-{s.end_s:.1f} s" for s in answer.spans)
    lines = [f"{answer.task}: {query}"[:_TEXT_CHARS] if query else answer.task,
             (spans or " ".join(answer.text.split()))[:_TEXT_CHARS]]
    band = 14 * scale * len(lines) + 4 * scale
    img[:band] = (img[:band] * 0.35).astype(np.uint8)
    for k, line in enumerate(lines):
        cv2.putText(img, line, (4 * scale, 14 * scale * (k + 1) - 2 * scale), cv2.FONT_HERSHEY_SIMPLEX,
                    0.38 * scale, (255, 255, 255), 1, cv2.LINE_AA)


class OverlayWriter:
    """Overlays of one replay on disk: ``kind`` "png" writes ``DIR/NNNNNN.png`` (the source frame's index), "mp4"
    one H.264 MP4 at ``fps`` pictures per second, encoded as they come (sized like the first; later sizes are
    resized to it)."""

    def __init__(self, path: Any, kind: str, fps: float = 2.0) -> None:
        from pathlib import Path

        if kind not in ("png", "mp4"):
            raise ValueError(f"overlay kind must be png or mp4, got {kind!r}")
        self.path, self.kind, self.fps, self.written = Path(path), kind, fps, 0
        self._container: Any = None
        self._stream: Any = None
        if kind == "png":
            self.path.mkdir(parents=True, exist_ok=True)

    def add(self, frame: int, rgb: np.ndarray) -> None:
        if self.kind == "png":
            cv2.imwrite(str(self.path / f"{frame:06d}.png"), np.ascontiguousarray(rgb[..., ::-1]))
        else:
            self._encode(rgb)
        self.written += 1

    def _encode(self, rgb: np.ndarray) -> None:
        import av

        if self._container is None:
            self._container = av.open(str(self.path), "w")
            self._stream = self._container.add_stream("libx264", rate=max(1, round(self.fps)))
            self._stream.width, self._stream.height = (rgb.shape[1] // 2) * 2, (rgb.shape[0] // 2) * 2
            self._stream.pix_fmt = "yuv420p"
        w, h = self._stream.width, self._stream.height
        if rgb.shape[:2] != (h, w):
            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        self._container.mux(self._stream.encode(frame))

    def close(self) -> None:
        if self._container is not None:
            self._container.mux(self._stream.encode(None))
            self._container.close()
            self._container = None
