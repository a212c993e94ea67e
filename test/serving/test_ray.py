"""The serving path on a real local Ray cluster (one per module: 2 logical CPUs, no dashboard, one replica).

Answers through Ray equal the local backend's, slides send one group, robots' windows share batches, a restarted
replica's lost groups are re-sent, and the pipeline rides out the deployment going away and coming back."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from ov2_ros.model.answer import Query

from .conftest import STREAM_CONFIG, same_answer

ray = pytest.importorskip("ray", reason="ray[serve] is in requirements-dev.txt (pip install .[serve])")
serve = pytest.importorskip("ray.serve")

from ov2_ros.serving import ServedRuntime, ServerUnavailableError, cluster  # noqa: E402
from ov2_ros.serving.deployment import ServeConfig  # noqa: E402

APP = "ov2test"
CONFIG = ServeConfig(max_new_tokens=12, torch_threads=1, batch_wait_s=0.3, max_batch_size=4)
QUERY = Query("track", "the red square")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    cluster.start(num_cpus=2, port=port)
    try:
        cluster.deploy(CONFIG, APP)
        yield f"http://127.0.0.1:{port}"
    finally:
        cluster.shutdown()


@pytest.fixture(scope="module")
def local():
    from ov2_ros.model import load_runtime

    return load_runtime("tiny-random", max_new_tokens=CONFIG.max_new_tokens)


def test_answers_through_ray_equal_the_local_backend_and_slides_send_one_group(server, local, windows):
    client = ServedRuntime(server, APP, encoding="i420")
    sizes = []
    for window in windows[1:6]:
        served = client.answer(window, QUERY)
        assert same_answer(served, local.answer(window, QUERY))
        assert served.extra["served"]["model"] == "tiny-random"
        sizes.append(client.stats["last_bytes"])
    assert client.stats["resends"] == 0 and all(s < 0.75 * sizes[0] for s in sizes[1:])
    health = client.health()
    assert health["status"] == "ok" and health["answered"] >= 5 and health["queue_depth"] == 0
    assert health["latency_p50_s"] > 0 and health["batch_size_max"] >= 1


def test_a_deployment_handle_gives_the_same_answer(server, local, windows):
    client = ServedRuntime("auto", APP, encoding="i420")        # this process is a driver of the cluster
    assert same_answer(client.answer(windows[4], QUERY), local.answer(windows[4], QUERY))
    assert client.health()["status"] == "ok"


def test_windows_from_many_robots_share_batches(server, local, windows):
    robots = [ServedRuntime(server, APP, stream_id=f"robot{i}", encoding="i420") for i in range(4)]
    out: dict[int, list] = {i: [] for i in range(4)}
    start = threading.Barrier(4)

    def stream(i: int) -> None:
        start.wait()
        for window in windows[2 + i:4 + i]:
            out[i].append((window, robots[i].answer(window, QUERY)))

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for i in range(4):
        assert len(out[i]) == 2
        assert all(same_answer(served, local.answer(window, QUERY)) for window, served in out[i])
    sizes = [a.extra["served"]["batch_size"] for i in range(4) for _, a in out[i]]
    assert max(sizes) >= 2, f"no two robots' windows shared a batch: {sizes}"


def test_groups_lost_with_a_replica_are_resent_never_answered_wrongly(server, local, windows):
    client = ServedRuntime(server, APP, stream_id="robot-restart", encoding="i420")
    client.answer(windows[5], QUERY)
    before = client.health()["replica"]
    assert cluster.kill_replicas(APP) == 1
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:                          # until Serve has started a new replica
        try:
            if client.health()["replica"] != before:
                break
        except ServerUnavailableError:
            pass
        time.sleep(0.5)
    served = client.answer(windows[6], QUERY)                   # a slide: the new replica holds nothing
    assert client.stats["resends"] == 1 and client.stats["failures"] == 0
    assert served.extra["served"]["replica"] != before
    assert same_answer(served, local.answer(windows[6], QUERY))


def test_a_replica_crash_costs_only_the_windows_in_flight(server, local, windows):
    """Kill the replica while four robots' windows are in it: each of those is answered correctly or fails as
    unavailable (none hangs past its timeout, none is answered wrongly), and every robot's next window is answered."""
    robots = [ServedRuntime(server, APP, stream_id=f"crash{i}", encoding="i420", timeout_s=60.0, backoff_s=0.1,
                            max_backoff_s=0.5) for i in range(4)]
    for i, robot in enumerate(robots):
        robot.answer(windows[i], QUERY)                           # each stream's groups are on the replica
    before = robots[0].health()["replica"]
    outcomes: dict[int, object] = {}

    def send(i: int) -> None:
        try:
            outcomes[i] = robots[i].answer(windows[i + 1], QUERY)
        except ServerUnavailableError as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.1)                                              # inside the 0.3 s batch wait: all are in flight
    assert cluster.kill_replicas(APP) == 1
    for t in threads:
        t.join(90)
    assert sorted(outcomes) == [0, 1, 2, 3]
    for i, out in outcomes.items():
        assert isinstance(out, ServerUnavailableError) or same_answer(out, local.answer(windows[i + 1], QUERY))
    deadline = time.monotonic() + 180
    for i, robot in enumerate(robots):                            # the next window of every robot is answered
        while True:
            try:
                served = robot.answer(windows[i + 2], QUERY)
                break
            except ServerUnavailableError:
                assert time.monotonic() < deadline, "the deployment did not come back"
                time.sleep(max(0.1, robot.retry_in_s))
        assert served.extra["served"]["replica"] != before
        assert same_answer(served, local.answer(windows[i + 2], QUERY))


def test_the_pipeline_keeps_decoding_while_the_deployment_is_down_and_answers_again(server, windows):
    from ov2_ros.codec.synth import make_event_clip
    from ov2_ros.pipeline import InferenceWorker, PerceptionPipeline, PipelineConfig

    aus = make_event_clip(160, 120).aus
    pipeline = PerceptionPipeline(PipelineConfig(tokenizer=STREAM_CONFIG, backend="ray", ray_address=server,
                                                 ray_app=APP, ray_timeout_s=20.0, segment=False,
                                                 max_new_tokens=CONFIG.max_new_tokens))
    assert pipeline.load() == {}
    results, lock = [], threading.Lock()

    def on_result(r):
        with lock:
            results.append((time.monotonic(), r))

    worker = InferenceWorker(pipeline, on_result, poll_s=0.05)
    pipeline.set_query("track: the red square")
    pushed = 0

    def play(until, limit_s: float = 180.0, pace_s: float = 0.02) -> None:
        """Push the clip over and over (frame indices keep counting) until ``until()`` holds."""
        nonlocal pushed
        deadline = time.monotonic() + limit_s
        while not until() and time.monotonic() < deadline:
            pipeline.push(aus[pushed % len(aus)], stamp=pushed)
            pushed += 1
            worker.poke()
            time.sleep(pace_s)

    def answered_since(t0: float) -> bool:
        with lock:
            return any(t >= t0 and r.answer is not None for t, r in results)

    def failed_since(t0: float) -> bool:
        with lock:
            return any(t >= t0 and r.answer is None for t, r in results)

    try:
        play(lambda: answered_since(0.0))
        assert answered_since(0.0)
        serve.delete(APP)                                       # the server goes away mid-stream
        down = time.monotonic()
        play(lambda: failed_since(down) and pipeline.status()["serve_failures"] >= 2)
        status = pipeline.status()
        assert status["serve_failures"] >= 2 and status["model_errors"] >= 1
        with lock:
            errors = [r.error for t, r in results if t >= down and r.answer is None]
        assert all("unavailable" in e or "HTTP" in e or "retrying" in e for e in errors), errors
        assert not answered_since(down)
        cluster.deploy(CONFIG, APP)                             # ... and comes back
        back = time.monotonic()
        play(lambda: answered_since(back))
        assert answered_since(back)
    finally:
        worker.stop()
    pipeline.flush()
    status = pipeline.status()
    assert status["aus"] == pushed and status["codec_issues"] == 0     # every AU went to the decoder
    assert status["frames"] == pushed                                  # and every one came out as a frame


def test_the_node_stays_up_reports_on_diagnostics_and_answers_again(server):
    """ov2_node (real rclpy) with backend ray: the app is deleted mid-stream and deployed again."""
    import importlib.util
    import pathlib

    from builtin_interfaces.msg import Time
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CompressedImage
    from std_msgs.msg import Header, String

    from ov2_ros.codec.synth import make_event_clip
    from ov2_ros.ros.node import Ov2Node

    spec = importlib.util.spec_from_file_location("_ros_harness", pathlib.Path(__file__).parents[1] / "ros" /
                                                  "conftest.py")
    harness_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness_module)            # a random ROS domain on localhost, as the ROS tests use
    ros = harness_module.RosHarness()
    aus = make_event_clip(160, 120).aus
    params = {"backend": "ray", "ray_address": server, "ray_app": APP, "ray_timeout_s": 20.0, "segment": False,
              "max_new_tokens": CONFIG.max_new_tokens, "diagnostics_period_s": 0.2, "tokenizer.mode": "uniform",
              "tokenizer.uniform_group_frames": STREAM_CONFIG.uniform_group_frames,
              "tokenizer.window_canvases": STREAM_CONFIG.window_canvases}
    try:
        answers, diag = ros.collect(String, "answer"), ros.collect(DiagnosticArray, "/diagnostics")
        node = ros.add(Ov2Node(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]))
        assert node.state == "active"
        images = ros.publisher(CompressedImage, "image/compressed")
        query = ros.publisher(String, "query")
        ros.wait_for_subscribers(images)
        ros.wait_for_subscribers(query)
        query.publish(String(data="track: the red square"))
        sent = 0

        def play(until, limit_s: float = 180.0) -> None:
            nonlocal sent
            deadline = time.monotonic() + limit_s
            while not until() and time.monotonic() < deadline:
                stamp = Time(sec=1000 + sent // 30, nanosec=(sent % 30) * 33_333_333)
                images.publish(CompressedImage(header=Header(stamp=stamp, frame_id="camera"), format="h264",
                                               data=aus[sent % len(aus)]))
                sent += 1
                time.sleep(0.03)

        def reported() -> bool:
            return any("ServerUnavailableError" in kv.value for m in list(diag) for s in m.status for kv in s.values
                       if kv.key == "model_error")

        play(lambda: answers)
        assert answers
        serve.delete(APP)
        play(reported)
        assert reported() and node.state == "active"
        count = len(answers)
        cluster.deploy(CONFIG, APP)
        play(lambda: len(answers) > count)
        assert len(answers) > count
        ros.wait_until(lambda: node.pipeline.stats.aus == sent, 30, "every published AU decoded")
        assert node.pipeline.stats.codec_issues == 0 and node.pipeline.status()["serve_failures"] >= 1
    finally:
        ros.close()
