"""The live node's output topics, written to a results bag with rosbags messages (no rclpy).

The layouts come from ``ov2_ros.results``, as the live node's do. Header stamps are the *source* stamps of the frames
each output refers to; every message of one window is logged at the stamp of the window's newest frame. Both come
from the bag, so a replay's results bag is deterministic (measured latencies live in results.json, not in the bag).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ov2_ros.eval.bags import OUTPUT_TOPICS, BagWriter
from ov2_ros.model.answer import Answer
from ov2_ros.results import answer_json, located_points, mask_union, newest_frame, waypoint_frame

__all__ = ["ResultsBag", "StampOf", "mask_union"]

StampOf = Callable[[int], int]       # frame index -> source stamp (ns)


class ResultsBag:
    """Writes one window's outputs at a time to ``/answer``, ``/tracking/points``, ``/waypoints`` and ``/mask``."""

    def __init__(self, writer: BagWriter, frame_id: str, stamp_of: StampOf) -> None:
        self._w, self.frame_id, self._stamp_of = writer, frame_id, stamp_of

    def _header(self, frame: int) -> Any:
        return self._w.header(self._stamp_of(frame), self.frame_id)

    def write_window(self, answer: Answer, query_text: str, masks: Mapping[int, np.ndarray]) -> None:
        """``masks``: frame -> mono8 (H, W) union mask."""
        w = self._w
        log_ns = self._stamp_of(newest_frame(answer))
        payload = answer_json(answer, query_text, lambda f: self._stamp_of(f) / 1e9, latency_s=None)
        w.write("/answer", w.msg(OUTPUT_TOPICS["/answer"], data=payload), log_ns)
        point_cls, pstamped = w.store.types["geometry_msgs/msg/Point"], OUTPUT_TOPICS["/tracking/points"]
        for frame, x, y, z in located_points(answer):
            w.write("/tracking/points", w.msg(pstamped, header=self._header(frame), point=point_cls(x=x, y=y, z=z)),
                    log_ns)
        if answer.waypoints:
            frame = waypoint_frame(answer)
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
