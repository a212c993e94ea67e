"""Real rclpy in-process. Teammates run ROS tests on this machine at the same time, so each session gets a random
domain id and discovery stays on localhost (set before rclpy initialises anything)."""
from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable

os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 101))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

import pytest  # noqa: E402
import rclpy  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402

RELIABLE = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)


class RosHarness:
    """rclpy initialised with a spinning executor, a helper node, and message collectors."""

    def __init__(self) -> None:
        rclpy.init()   # the default context, so nodes under test need no context argument
        self.executor = MultiThreadedExecutor(num_threads=4)
        self.helper = rclpy.create_node("ov2_test_helper")
        self.executor.add_node(self.helper)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - the context shut down under the executor at teardown
            pass

    def add(self, node):
        self.executor.add_node(node)
        return node

    def collect(self, msg_type, topic: str, qos=RELIABLE) -> list:
        box: list = []
        self.helper.create_subscription(msg_type, topic, box.append, qos)
        return box

    def publisher(self, msg_type, topic: str, qos=RELIABLE):
        return self.helper.create_publisher(msg_type, topic, qos)

    def wait_for_subscribers(self, pub, count: int = 1, timeout: float = 10.0) -> None:
        wait_until(lambda: pub.get_subscription_count() >= count, timeout, f"subscriber on {pub.topic_name}")

    @staticmethod
    def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
        wait_until(predicate, timeout, what)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5)
        for node in list(self.executor.get_nodes()):
            node.destroy_node()
        rclpy.shutdown()
        self._thread.join(5)


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def ros():
    harness = RosHarness()
    yield harness
    harness.close()
