"""The live node's output topics, written to a results bag with rosbags messages (no rclpy).

Header stamps are the *source* stamps of the frames each output refers to; every message of one window is logged at
the stamp of the window's newest frame. Both come from the bag, so a replay's results bag is deterministic (measured
latencies live in results.json, not in the bag).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ov2_ros.eval.bags import OUTPUT_TOPICS, BagWriter
from ov2_ros.model.answer import Answer

StampOf = Callable[[int], int]       # frame index -> source stamp (ns)


def answer_payload(answer: Answer, query_text: str, stamp_of: StampOf) -> str:
    """The ``answer`` topic's JSON, in the node's layout; ``latency_s`` is null offline (see results.json)."""
    d = answer.to_json_dict()
    start, end = answer.window_frames
    window = {"start_s": answer.window_span[0], "end_s": answer.window_span[1], "start_frame": start,
              "end_frame": end, "start_stamp": stamp_of(start) / 1e9, "end_stamp": stamp_of(max(start, end - 1)) / 1e9}
    return json.dumps({"task": answer.task, "query": query_text, "text": answer.text,
                       "result": {k: d[k] for k in ("tracks", "points", "waypoints", "waypoint_frame", "spans")},
                       "window": window, "errors": list(answer.errors), "latency_s": None})


def mask_union(objects: Mapping[int, Any]) -> np.ndarray | None:
    """mono8 0/255 union of the objects still tracked on one frame (None when there are none)."""
    if not objects:
        return None
    live = [np.asarray(m.mask, bool) for m in objects.values() if not getattr(m, "lost", False)]
    shape = np.asarray(next(iter(objects.values())).mask).shape
    union = np.zeros(shape, bool)
    for m in live:
        union |= m
    return union.astype(np.uint8) * 255


class ResultsBag:
    """Writes one window's outputs at a time to ``/answer``, ``/tracking/points``, ``/waypoints`` and ``/mask``."""

    def __init__(self, writer: BagWriter, frame_id: str, stamp_of: StampOf) -> None:
        self._w, self.frame_id, self._stamp_of = writer, frame_id, stamp_of

    def _header(self, frame: int) -> Any:
        return self._w.header(self._stamp_of(frame), self.frame_id)

    def write_window(self, answer: Answer, query_text: str, masks: Mapping[int, np.ndarray]) -> None:
        """``masks``: frame -> mono8 (H, W) union mask."""
        w, (start, end) = self._w, answer.window_frames
        log_ns = self._stamp_of(max(start, end - 1))
        w.write("/answer", w.msg(OUTPUT_TOPICS["/answer"], data=answer_payload(answer, query_text, self._stamp_of)),
                log_ns)
        point_cls, pstamped = w.store.types["geometry_msgs/msg/Point"], OUTPUT_TOPICS["/tracking/points"]
        located = [(t.frame, t.x, t.y, float(t.obj_id)) for t in answer.tracks]
        located += [(p.frame, p.x, p.y, -1.0) for p in answer.points]
        for frame, x, y, z in located:      # z = object id (-1 for a plain point answer), as the node does
            w.write("/tracking/points", w.msg(pstamped, header=self._header(frame),
                                              point=point_cls(x=float(x), y=float(y), z=z)), log_ns)
        if answer.waypoints:
            frame = answer.waypoint_frame if answer.waypoint_frame is not None else max(start, end - 1)
            t = w.store.types
            poses = [t["geometry_msgs/msg/PoseStamped"](
                header=self._header(frame),
                pose=t["geometry_msgs/msg/Pose"](position=point_cls(x=float(p.x), y=float(p.y), z=float(p.z)),
                                                 orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0,
                                                                                               w=1.0)))
                for p in answer.waypoints]
            w.write("/waypoints", w.msg(OUTPUT_TOPICS["/waypoints"], header=self._header(frame), poses=poses), log_ns)
        for frame, mono in sorted(masks.items()):
            h, wd = mono.shape
            w.write("/mask", w.msg(OUTPUT_TOPICS["/mask"], header=self._header(frame), height=h, width=wd,
                                   encoding="mono8", is_bigendian=0, step=wd, data=mono.reshape(-1)), log_ns)
