"""Record topics to a rosbag2 (MCAP) with ``rosbags``: raw CDR from rclpy, re-serialised through the Kilted type
store by the eval package's ``BagWriter`` (so the bag's message definitions are the ones rosbags ships)."""
from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from ov2_ros.eval.bags import BagWriter


def ros_type_name(msg_type: Any) -> str:
    """``std_msgs.msg.String`` -> ``std_msgs/msg/String``."""
    return f"{msg_type.__module__.split('.')[0]}/msg/{msg_type.__name__}"


class TopicRecorder:
    """Subscribe (raw) to ``topics`` {name: rclpy type} on ``node``; write each message with its receive time."""

    def __init__(self, node: Node, writer: BagWriter, topics: dict[str, Any], best_effort: tuple[str, ...] = ()):
        self.writer, self.counts = writer, Counter()
        self._lock = threading.Lock()
        self._closed = False
        for topic, msg_type in topics.items():
            reliability = ReliabilityPolicy.BEST_EFFORT if topic in best_effort else ReliabilityPolicy.RELIABLE
            node.create_subscription(msg_type, topic, self._callback(node, topic, ros_type_name(msg_type)),
                                     QoSProfile(depth=1000, reliability=reliability), raw=True)

    def _callback(self, node: Node, topic: str, msgtype: str):
        store = self.writer.store

        def record(data: bytes) -> None:
            log_ns = node.get_clock().now().nanoseconds
            msg = store.deserialize_cdr(data, msgtype)
            with self._lock:
                if self._closed:      # late messages after the bag was closed are not recorded
                    return
                self.writer.write(topic, msg, log_ns)
                self.counts[topic] += 1
        return record

    def stop(self) -> None:
        """Stop writing (call before the writer closes; subscriptions may still deliver)."""
        with self._lock:
            self._closed = True
