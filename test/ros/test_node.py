"""ov2_node with real rclpy, real H.264 (libx264), the real tiny model and real SAM2 (tiny random weights)."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped
from nav_msgs.msg import Path
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String
from visualization_msgs.msg import MarkerArray

from ov2_ros.ros.node import Ov2Node
from ov2_ros.ros.params import node_params

FAST = {"tokenizer.window_canvases": 8, "tokenizer.min_group_frames": 8, "tokenizer.max_group_frames": 16,
        "tokenizer.max_pixels": 40_000, "tokenizer.sample_fps": 0.0, "frame_ring": 48, "segment_max_frames": 3,
        "diagnostics_period_s": 0.2}


def start_node(ros, runtime=None, **params) -> Ov2Node:
    values = {**FAST, **params}
    node = Ov2Node(runtime=runtime, parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
    return ros.add(node)


def stamp_of(i: int) -> Time:
    return Time(sec=1000 + i // 30, nanosec=(i % 30) * 33_333_333)


class Stream:
    """Publishes AUs as CompressedImage with distinct stamps; remembers every stamp it sent."""

    def __init__(self, ros, topic: str = "image/compressed") -> None:
        self.pub = ros.publisher(CompressedImage, topic)
        ros.wait_for_subscribers(self.pub)
        self.sent: list[tuple[int, int]] = []
        self.count = 0

    def play(self, aus, fps: float = 90.0, fmt: str = "h264") -> None:
        for au in aus:
            stamp = stamp_of(self.count)
            self.pub.publish(CompressedImage(header=Header(stamp=stamp, frame_id="camera"), format=fmt, data=au))
            self.sent.append((stamp.sec, stamp.nanosec))
            self.count += 1
            time.sleep(1.0 / fps)


def outputs(ros) -> dict[str, list]:
    return {"answer": ros.collect(String, "answer"), "points": ros.collect(PointStamped, "tracking/points"),
            "waypoints": ros.collect(Path, "waypoints"), "mask": ros.collect(Image, "mask"),
            "ids": ros.collect(Image, "mask/ids"), "markers": ros.collect(MarkerArray, "markers"),
            "diag": ros.collect(DiagnosticArray, "/diagnostics")}


def diag_text(msgs) -> str:
    return "\n".join(f"{s.level} {s.message} " + " ".join(f"{kv.key}={kv.value}" for kv in s.values)
                     for m in list(msgs) for s in m.status if s.name.startswith("ov2_node"))


def send_query(ros, text: str) -> None:
    pub = ros.publisher(String, "query")
    ros.wait_for_subscribers(pub)
    pub.publish(String(data=text))


def test_track_query_gives_answer_points_masks_with_source_stamps(ros, small_clip, make_runtime):
    out = outputs(ros)
    node = start_node(ros, make_runtime())
    assert node.state == "active"
    stream = Stream(ros)
    send_query(ros, "track: the red square")
    stream.play(small_clip.aus[:64])
    # an answer can arrive while the last AUs are still queued: wait for both, then check none was dropped
    ros.wait_until(lambda: out["answer"] and out["mask"] and out["ids"] and len(out["points"]) >= 3
                   and node.pipeline.stats.aus >= 64, 60, "answer, points, masks and all 64 AUs decoded")
    assert node.pipeline.stats.aus == 64   # nothing dropped before decode
    payload = json.loads(out["answer"][-1].data)
    assert payload["task"] == "track" and payload["query"] == "track: the red square"
    assert payload["result"]["tracks"] and payload["window"]["end_frame"] > payload["window"]["start_frame"]
    sent = set(stream.sent)
    for msg in out["points"] + out["mask"] + out["ids"]:
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) in sent and msg.header.frame_id == "camera"
    assert {p.point.z for p in out["points"]} == {1.0, 2.0}
    first_track = payload["result"]["tracks"][0]
    assert first_track["x"] == pytest.approx(small_clip.width / 2) and first_track["y"] == pytest.approx(
        small_clip.height / 2)
    mask = out["mask"][-1]
    assert (mask.width, mask.height, mask.encoding) == (small_clip.width, small_clip.height, "mono8")
    ids = np.frombuffer(bytes(out["ids"][-1].data), np.uint8)
    assert set(np.unique(ids)) <= {0, 2, 3}
    assert any(m.ns == "tracks" for arr in out["markers"] for m in arr.markers)
    ros.wait_until(lambda: "fps=" in diag_text(out["diag"]), 5, "diagnostics with fps")


def test_waypoints_path_is_stamped_with_the_newest_window_frame(ros, small_clip, make_runtime):
    out = outputs(ros)
    start_node(ros, make_runtime(), segment=False)
    stream = Stream(ros)
    send_query(ros, "waypoints: where should the gripper go")
    stream.play(small_clip.aus[:40])
    ros.wait_until(lambda: out["waypoints"], 60, "a waypoints path")
    path = out["waypoints"][-1]
    assert len(path.poses) == 3 and path.poses[0].pose.position.z == pytest.approx(0.9)
    assert path.poses[0].pose.position.x == pytest.approx(0.1 * small_clip.width)
    assert (path.header.stamp.sec, path.header.stamp.nanosec) in set(stream.sent)
    assert json.loads(out["answer"][-1].data)["result"]["waypoint_frame"] is not None


def test_mid_stream_join_waits_for_an_entry_point(ros, small_clip, make_runtime):
    out = outputs(ros)
    node = start_node(ros, make_runtime(), segment=False)
    stream = Stream(ros)
    send_query(ros, "ask: what happens")
    stream.play(small_clip.aus[20:100])    # joins mid-GOP: the next IDR (with SPS/PPS) is AU 60
    ros.wait_until(lambda: out["answer"] and node.pipeline.stats.aus == 80, 60, "an answer after the entry point")
    assert "waiting for an entry point" in diag_text(out["diag"])
    # 40 decodable AUs from AU 60 on; frame threads hold back up to thread_count (2) frames until more arrive
    assert node.pipeline.stats.aus == 80 and 38 <= node.pipeline.stats.frames <= 40
    window_start = json.loads(out["answer"][0].data)["window"]["start_stamp"]
    assert window_start >= 1000 + 40 / 30 - 1e-6      # the first decodable frame is the 41st sent (AU 60)


def test_corrupt_packets_are_skipped_and_reported(ros, small_clip, make_runtime):
    out = outputs(ros)
    node = start_node(ros, make_runtime(), segment=False)
    stream = Stream(ros)
    send_query(ros, "ask: what happens")
    aus = list(small_clip.aus[:48])
    rng = np.random.default_rng(1)
    aus[10] = rng.integers(0, 256, 300, dtype=np.uint8).tobytes()        # random bytes
    aus[20] = aus[20][: len(aus[20]) // 3]                                # truncated
    aus[30] = b"\x00\x00\x01" + bytes([0x61]) + b"\xff" * 40              # a slice of garbage
    stream.play(aus)
    ros.wait_until(lambda: out["answer"] and node.pipeline.stats.aus == 48, 60, "answers despite corrupt AUs")
    ros.wait_until(lambda: "access unit skipped" in diag_text(out["diag"]), 5, "corrupt AU diagnostics")
    assert node.pipeline.stats.codec_issues >= 2


def test_resolution_change_is_reported_and_the_stream_goes_on(ros, clip_factory, make_runtime):
    out = outputs(ros)
    node = start_node(ros, make_runtime(), segment=False)
    stream = Stream(ros)
    send_query(ros, "ask: what happens")
    small, big = clip_factory(160, 120), clip_factory(192, 144)
    stream.play(small.aus[:24])
    stream.play(big.aus[:40])
    ros.wait_until(lambda: "resolution changed" in diag_text(out["diag"]), 20, "resolution-change diagnostics")
    ros.wait_until(lambda: any(json.loads(a.data)["window"]["start_frame"] >= 24 for a in out["answer"]), 60,
                   "an answer on the new resolution")
    assert node.pipeline.window.source_size == (144, 192)


def test_jpeg_on_the_h264_topic_is_refused_by_name(ros, small_clip, make_runtime):
    out = outputs(ros)
    node = start_node(ros, make_runtime(), segment=False)
    stream = Stream(ros)
    stream.play([b"\xff\xd8\xff\xe0fakejpeg"] * 3, fmt="jpeg")
    ros.wait_until(lambda: "format 'jpeg' is not an H.264" in diag_text(out["diag"]), 10, "jpeg diagnostics")
    assert node.pipeline.stats.aus == 0          # never reached the decoder
    stream.play(small_clip.aus[:20])
    ros.wait_until(lambda: node.pipeline.stats.frames >= 18, 10, "h264 decoding after the jpeg")


def test_query_before_video_runs_when_video_arrives(ros, small_clip, make_runtime):
    out = outputs(ros)
    start_node(ros, make_runtime(), segment=False)
    send_query(ros, "when: the square moves")
    ros.wait_until(lambda: "before any complete video window" in diag_text(out["diag"]), 10, "query-before-video")
    Stream(ros).play(small_clip.aus[:40])
    ros.wait_until(lambda: out["answer"], 60, "the pending query's answer")
    assert json.loads(out["answer"][0].data)["task"] == "ground"


def test_a_model_that_raises_is_reported_and_decoding_continues(ros, small_clip, make_runtime):
    out = outputs(ros)
    node = start_node(ros, make_runtime("raising"), segment=False)
    stream = Stream(ros)
    send_query(ros, "ask: what happens")
    stream.play(small_clip.aus[:48])
    ros.wait_until(lambda: "illegal memory access" in diag_text(out["diag"]), 20, "model error diagnostics")
    ros.wait_until(lambda: node.pipeline.stats.aus == 48, 10, "every AU decoded")
    assert node.pipeline.stats.model_errors >= 1 and not out["answer"]
    assert node.state == "active"


def test_a_busy_model_does_not_hold_up_packet_callbacks(ros, small_clip, make_runtime):
    """Every AU is decoded while the model sits inside its first answer (no timing: the answer is held open)."""
    import threading

    runtime, entered, release = make_runtime(), threading.Event(), threading.Event()
    answer = runtime.answer

    def held_answer(window, query):
        entered.set()
        release.wait(60)
        return answer(window, query)

    runtime.answer = held_answer
    node = start_node(ros, runtime, segment=False)
    stream = Stream(ros)
    send_query(ros, "ask: what happens")
    for au in small_clip.aus[:90]:                # until a window closes and the model is inside its answer
        if entered.is_set():
            break
        stream.play([au], fps=30.0)
    ros.wait_until(entered.is_set, 20, "the model inside its first answer")
    stream.play(small_clip.aus[stream.count:90], fps=30.0)
    ros.wait_until(lambda: node.pipeline.stats.aus == 90, 20, "every AU decoded while the model is busy")
    assert node.pipeline.stats.windows_run == 0 and node.pipeline.stats.frames >= 89
    release.set()
    ros.wait_until(lambda: node.pipeline.stats.windows_run >= 2, 30, "a second (newest-window) answer")
    assert node.pipeline.stats.windows_dropped >= 1   # groups closed while the model was busy were skipped


def test_parameters_load_from_config_yaml(ros, tmp_path):
    import pathlib

    import yaml

    src = pathlib.Path(__file__).resolve().parents[2] / "config" / "ov2.yaml"
    doc = yaml.safe_load(src.read_text())
    yaml_params = doc["ov2_node"]["ros__parameters"]
    flat = {k: v for k, v in yaml_params.items() if k != "tokenizer"}
    flat.update({f"tokenizer.{k}": v for k, v in yaml_params["tokenizer"].items()})
    assert flat == {p.name: p.default for p in node_params()}      # the YAML documents every parameter, in sync
    yaml_params.update(autostart=False, default_task="track", model="/models/ov2")
    yaml_params["tokenizer"]["max_group_frames"] = 32
    edited = tmp_path / "ov2.yaml"
    edited.write_text(yaml.safe_dump(doc))
    node = ros.add(Ov2Node(cli_args=["--ros-args", "--params-file", str(edited)]))
    assert node.get_parameter("default_task").value == "track"
    assert node.get_parameter("tokenizer.max_group_frames").value == 32
    assert node.state == "unconfigured"     # autostart false
    bad = node.set_parameters([Parameter("default_task", value="dance")])[0]
    assert not bad.successful and "default_task" in bad.reason


def test_lifecycle_activate_failure_returns_error_and_deactivate_frees_the_model(ros, tmp_path, make_runtime):
    out = outputs(ros)
    node = start_node(ros, None, model=str(tmp_path / "no-such-checkpoint"), segment=False, autostart=False)
    from rclpy.lifecycle import TransitionCallbackReturn

    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() != TransitionCallbackReturn.SUCCESS
    assert node.state == "unconfigured"
    ros.wait_until(lambda: "model load failed" in diag_text(out["diag"]), 5, "load failure diagnostics")
    good = start_node(ros, make_runtime(), segment=False)
    good.trigger_deactivate()
    assert good.pipeline._runtime is None and good._worker is None


@pytest.mark.parametrize("params, fragment", [
    ({"backend": "tensorrt", "export_dir": "/nonexistent/export"}, "needs TensorRT"),
    ({"backend": "onnxruntime"}, "needs export_dir"),
    ({"backend": "onnxruntime", "export_dir": "/nonexistent/export"}, "no manifest"),
])
def test_backend_that_cannot_start_fails_activate_with_the_reason(ros, params, fragment):
    import importlib.util

    from rclpy.lifecycle import TransitionCallbackReturn

    if params["backend"] == "tensorrt" and importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt imports here; the missing-library path cannot be shown")
    out = outputs(ros)
    node = start_node(ros, None, segment=False, autostart=False, **params)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.ERROR      # logged and reported, no crash
    assert node.state == "unconfigured" and node._worker is None
    ros.wait_until(lambda: fragment in diag_text(out["diag"]), 5, "backend failure on /diagnostics")
    text = diag_text(out["diag"])
    assert f"model load failed (tiny-random on the {params['backend']} backend)" in text


def test_onnxruntime_backend_answers_on_the_answer_topic(ros, small_clip, tmp_path):
    """The node loads the exported parts (backend + export_dir parameters) and answers from them."""
    from ov2_ros.engines.export import export_model
    from ov2_ros.engines.runtime import EngineVlmRuntime

    from ov2_ros.pipeline import PerceptionPipeline
    from ov2_ros.ros.params import pipeline_config

    probe = PerceptionPipeline(pipeline_config(FAST))
    for au in small_clip.aus[:40]:
        probe.push(au)
    canvas = probe.window.canvas_size                       # the canvas size FAST makes of this clip
    export_model("tiny-random", tmp_path, parts=("vision", "decoder"), canvas_hw=canvas)
    out = outputs(ros)
    node = start_node(ros, None, segment=False, backend="onnxruntime", export_dir=str(tmp_path), max_new_tokens=4)
    assert node.state == "active" and isinstance(node.pipeline._runtime, EngineVlmRuntime)
    stream = Stream(ros)
    send_query(ros, "ask: what moves?")
    stream.play(small_clip.aus[:48])
    ros.wait_until(lambda: out["answer"], 30, "an answer from the onnxruntime backend")
    payload = json.loads(out["answer"][-1].data)
    assert payload["task"] == "ask" and payload["window"]["end_frame"] > payload["window"]["start_frame"]
    assert node.pipeline.stats.model_errors == 0


def test_a_query_sent_while_the_model_loads_is_kept(ros, small_clip, make_runtime):
    """Issue 10 item 9: the query subscription used to appear only at activate, so a query sent at start-up was lost."""
    out = outputs(ros)
    node = start_node(ros, make_runtime(), segment=False, autostart=False)
    node.trigger_configure()                      # configured, model not loaded yet: what a new user's node is
    send_query(ros, "when: the square moves")     # a plain volatile publisher
    ros.wait_until(lambda: node.pipeline.query is not None, 10, "the query stored before activate")
    node.trigger_activate()
    Stream(ros).play(small_clip.aus[:40])
    ros.wait_until(lambda: out["answer"], 60, "the answer to the start-up query")
    assert json.loads(out["answer"][0].data)["query"] == "when: the square moves"


def test_a_latched_query_published_before_the_node_exists_arrives_once(ros, small_clip, make_runtime):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pub = ros.publisher(String, "query", latched)
    pub.publish(String(data="ask: what happens"))     # no node yet
    out = outputs(ros)
    node = start_node(ros, make_runtime(), segment=False)
    ros.wait_until(lambda: node.pipeline.query is not None, 10, "the latched query")
    Stream(ros).play(small_clip.aus[:40])
    ros.wait_until(lambda: out["answer"], 60, "the answer to the latched query")
    assert node.pipeline._query_version == 1
    pub.publish(String(data="ask: and now?"))         # reaches both subscriptions now: taken once
    ros.wait_until(lambda: node.pipeline.query.text == "and now?", 10, "the second latched query")
    time.sleep(0.5)                                   # let a duplicate, if any, arrive (none may)
    assert node.pipeline._query_version == 2


def test_overlay_topic_shows_the_answer_on_its_source_frame(ros, small_clip, make_runtime):
    out = outputs(ros)
    overlays = ros.collect(Image, "debug/overlay")
    start_node(ros, make_runtime(), segment=False, overlay=True)
    stream = Stream(ros)
    send_query(ros, "track: the red square")
    stream.play(small_clip.aus[:48])
    ros.wait_until(lambda: overlays and out["answer"], 60, "an overlay picture")
    img = overlays[0]
    assert (img.encoding, img.width, img.height, img.step) == ("rgb8", 160, 120, 480)
    assert (img.header.stamp.sec, img.header.stamp.nanosec) in stream.sent        # a source frame's stamp
    picture = np.frombuffer(bytes(img.data), np.uint8).reshape(120, 160, 3)
    assert picture[:12].mean() < picture[40:].mean()                              # the caption band on top


def test_ov2_toy_tracks_the_named_shape_on_the_tracking_topic(ros):
    """The result path on a model that perceives (no scripted text): ``model: ov2-toy`` by name, its recorded
    tokenizer settings applied, on a held-out one-object scene; the published points sit on the shape at the
    stamps of the frames they name."""
    from ov2_ros.codec.synth import make_scene
    from ov2_ros.train.toy import HELD_OUT

    scene = make_scene(HELD_OUT[2])
    out = outputs(ros)
    node = ros.add(Ov2Node(parameter_overrides=[Parameter("model", value="ov2-toy"),
                                                Parameter("segment", value=False)]))
    assert node.state == "active"
    stream = Stream(ros)
    send_query(ros, f"track: {scene.objects[0].name}")
    stream.play(scene.aus, fps=scene.fps)          # real time: a busy model skips to the newest window
    ros.wait_until(lambda: node.pipeline.stats.aus >= scene.num_frames and len(out["answer"]) >= 3, 120,
                   "every AU decoded and three answers")
    time.sleep(1.0)                                  # the answer to the last window, if one is still running
    frame_of = {s: i for i, s in enumerate(stream.sent)}
    hits = []
    for msg in list(out["points"]):
        frame = frame_of[(msg.header.stamp.sec, msg.header.stamp.nanosec)]    # a source stamp, never a new one
        box = scene.box(frame, 0)
        if box is not None:
            hits.append(box[0] - 4 <= msg.point.x <= box[2] + 4 and box[1] - 4 <= msg.point.y <= box[3] + 4)
    assert len(hits) >= 12, f"{len(out['answer'])} answers, {len(hits)} points on frames with the shape"
    assert np.mean(hits) >= 0.7, f"{np.mean(hits):.2f} of published points on the shape"
