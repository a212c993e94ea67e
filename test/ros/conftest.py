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
        self._nodes = [self.helper]
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
        self._nodes.append(node)
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
        for node in self._nodes:     # nodes first: ov2_node joins its inference worker before rclpy goes away
            node.destroy_node()
        self.executor.shutdown(timeout_sec=5)
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


# ---------------------------------------------------------------- model runtimes for node tests
# The tiny model is real (random weights). Random weights emit unparseable text, so to exercise the track /
# waypoint / mask outputs end to end, ScriptedRuntime runs the real vision tower + prefill and then substitutes a
# well-formed model *text*; the real parser, pixel mapping, SAM2 and message paths do the rest.
from dataclasses import replace  # noqa: E402

from ov2_ros.model.runtime import VlmRuntime, load_runtime  # noqa: E402


def scripted_text(task: str, times: dict[int, float]) -> str:
    t0, t1 = min(times.values()), max(times.values())
    if task == "track":
        return f'<tracks coords="{t0:.2f} 1 500 500; {t1:.2f} 1 520 480; {t1:.2f} 2 150 200">square</tracks>'
    if task == "point":
        return f'<points coords="{t1:.2f} 500 500">square</points>'
    if task == "waypoints":
        return "[[100, 800, 0.9], [300, 600, 0.6], [500, 500, 0.3]]"
    if task == "ground":
        return f"{t0:.1f} - {t1:.1f} seconds"
    return "a red square moves across the picture"


class ScriptedRuntime(VlmRuntime):
    def generate(self, *args, **kwargs):
        gen = super().generate(*args, **kwargs)
        return replace(gen, text=scripted_text(self._query.task, self._window.frame_times))

    def answer(self, window, query):
        self._window, self._query = window, query
        return super().answer(window, query)


class SlowRuntime(ScriptedRuntime):
    delay_s = 1.5

    def answer(self, window, query):
        time.sleep(self.delay_s)
        return super().answer(window, query)


class RaisingRuntime(VlmRuntime):
    def answer(self, window, query):
        raise RuntimeError("CUDA error: an illegal memory access was encountered (injected)")


@pytest.fixture(scope="session")
def tiny_vlm() -> VlmRuntime:
    return load_runtime("tiny-random", max_new_tokens=2)


RUNTIMES = {"scripted": ScriptedRuntime, "slow": SlowRuntime, "raising": RaisingRuntime}


@pytest.fixture
def make_runtime(tiny_vlm):
    """make_runtime("scripted" | "slow" | "raising") -> such a runtime sharing the session's tiny model weights."""
    def make(kind: str = "scripted"):
        return RUNTIMES[kind](tiny_vlm.model, tiny_vlm.tokenizer, max_new_tokens=2)
    return make
