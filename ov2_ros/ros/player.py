"""Play H.264 access units as ``sensor_msgs/CompressedImage`` at a fixed rate (demo, soak bench, smoke tests).

A thread with an absolute schedule (frame i goes out at start + i/fps), so a busy executor cannot slow the camera
down: like a real camera, it keeps its rate and the subscriber has to keep up. Stamps are the node clock's time at
publication, as a camera driver would stamp them.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Header, String

from ov2_ros.ros.node import LATCHED_QUERY_QOS


class ClipPlayer:
    def __init__(self, node: Node, topic: str = "image/compressed", query_topic: str = "query",
                 frame_id: str = "camera", depth: int = 100) -> None:
        qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
        self.node, self.frame_id = node, frame_id
        self.pub = node.create_publisher(CompressedImage, topic, qos)
        # latched, as the README advises: the query reaches the node even if it subscribes later, and this QoS
        # matches both of the node's query subscriptions (no incompatible-durability warning)
        self.query_pub = node.create_publisher(String, query_topic, LATCHED_QUERY_QOS)
        self.sent = 0
        self.late_s: list[float] = []     # how far behind schedule each publish was
        self.publish_times: dict[tuple[int, int], float] = {}   # (sec, nanosec) stamp -> monotonic publish time

    def wait_for_subscriber(self, timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.pub.get_subscription_count() > 0 and self.query_pub.get_subscription_count() > 0:
                return True
            time.sleep(0.02)
        return False

    def query(self, text: str) -> None:
        self.query_pub.publish(String(data=text))

    def play(self, aus: Iterable[bytes], fps: float, stop: threading.Event | None = None,
             on_frame: Callable[[int], None] | None = None) -> int:
        """Publish every AU at ``fps`` (blocking); returns how many went out."""
        start = time.monotonic()
        for i, au in enumerate(aus):
            if stop is not None and stop.is_set():
                break
            due = start + i / fps
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            now = self.node.get_clock().now().to_msg()
            self.late_s.append(max(0.0, -delay))
            self.publish_times[(now.sec, now.nanosec)] = time.monotonic()
            self.pub.publish(CompressedImage(header=Header(stamp=now, frame_id=self.frame_id), format="h264",
                                             data=au))
            self.sent += 1
            if on_frame is not None:
                on_frame(i)
        return self.sent
