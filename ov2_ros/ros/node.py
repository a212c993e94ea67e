"""``ov2_node``: H.264 in, queries in, answers / tracking points / waypoints / SAM2 masks / markers out.

A lifecycle node. Parameters are declared in ``__init__`` (validated by an on-set callback); configure reads them
once, creates the publishers and subscribes to ``query`` (so a query sent while the model loads is kept); activate
loads the model and subscribes to the video; deactivate frees the model (GPU memory).
With ``autostart`` (default) it walks itself to active, for launches without a lifecycle manager.

Threads: the executor runs the packet and query callbacks (decode + tokenize, a few ms per AU, every AU in order);
``InferenceWorker`` runs the model on the newest complete window and publishes the results from its own thread.
Everything that goes wrong is counted and shown on ``/diagnostics``; nothing here raises out of a callback.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped
from nav_msgs.msg import Path
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import Node, State, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String
from visualization_msgs.msg import MarkerArray

from ov2_ros.codec.errors import ResolutionChangedError, UnsupportedFormatError
from ov2_ros.errors import Ov2Error
from ov2_ros.pipeline import InferenceWorker, PerceptionPipeline, PerceptionResult, PipelineConfig
from ov2_ros.ros import convert
from ov2_ros.ros.params import node_params, pipeline_config

NODE_NAME = "ov2_node"
_LEVEL_RANK = {"ok": 0, "warn": 1, "error": 2}
# publisher key -> (type, relative topic, queue depth); DESIGN.md contract 4 names these topics
OUTPUT_TOPICS = {
    "answer": (String, "answer", 10),
    "points": (PointStamped, "tracking/points", 100),
    "waypoints": (Path, "waypoints", 10),
    "mask": (Image, "mask", 10),
    "mask_ids": (Image, "mask/ids", 10),
    "markers": (MarkerArray, "markers", 10),
    "canvases": (Image, "debug/canvases", 2),     # only with publish_canvases
    "overlay": (Image, "debug/overlay", 2),       # only with overlay: the answer drawn on its source frame
}
_ENTRY_POINT_PATIENCE = 3        # AUs without a decoded frame before "waiting for entry point" is reported
# The query topic is subscribed twice from configure on, so the first query survives start-up (the model loads in
# activate, seconds later): a reliable volatile subscription matches every publisher, and a transient-local one also
# receives what a latched publisher (durability transient_local) sent before the node existed. A latched message
# reaches both; it is taken once, by its (publisher gid, sequence number).
QUERY_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
LATCHED_QUERY_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                               durability=DurabilityPolicy.TRANSIENT_LOCAL)


class Condition:
    """One kind of problem seen on the stream: level, latest message, how often."""

    __slots__ = ("level", "message", "count", "last_t")

    def __init__(self, level: str, message: str) -> None:
        self.level, self.message, self.count, self.last_t = level, message, 0, 0.0


class Ov2Node(Node):
    def __init__(self, runtime: Any = None, tracker_factory: Any = None, **kwargs: Any) -> None:
        """``runtime``/``tracker_factory``: an already-built model runtime / SAM2 factory used instead of loading
        from the ``model``/``segment_model`` parameters (embedding, tests)."""
        super().__init__(NODE_NAME, **kwargs)
        self._runtime_override, self._tracker_override = runtime, tracker_factory
        for p in node_params():
            self.declare_parameter(p.name, p.default, ParameterDescriptor(description=p.description))
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.config: PipelineConfig | None = None
        self.pipeline: PerceptionPipeline | None = None
        self._worker: InferenceWorker | None = None
        self._subs: list[Any] = []
        self._query_subs: list[Any] = []
        self._queries_seen: deque[tuple[Any, int]] = deque(maxlen=64)   # (publisher gid, sequence) taken already
        self._pubs: dict[str, Any] = {}
        self._conditions: dict[str, Condition] = {}
        self._cond_lock = threading.Lock()
        self._settings: dict[str, Any] = {}
        self._diag_timer = None
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._video_group = MutuallyExclusiveCallbackGroup()
        self._query_group = MutuallyExclusiveCallbackGroup()
        # (source stamp ns, callback start, callback end) in time.monotonic() seconds, newest 4096 image callbacks
        self.au_timing: deque[tuple[int, float, float]] = deque(maxlen=4096)
        self._fps_times: deque[float] = deque(maxlen=90)
        self.results_published = 0
        self.transport_lost = 0     # AUs the middleware reports lost before they reached the callback
        if self.get_parameter("autostart").value:
            self.autostart()

    # ------------------------------------------------------------------ parameters
    def _values(self) -> dict[str, Any]:
        return {p.name: self.get_parameter(p.name).value for p in node_params()}

    def _validate_parameters(self, params: list) -> SetParametersResult:
        """Reject values the typed configs refuse (so a bad YAML/CLI value fails at set time, by name)."""
        values = self._values()
        values.update({p.name: p.value for p in params})
        try:
            pipeline_config(values)
            if values["qos_depth"] < 1 or values["diagnostics_period_s"] <= 0:
                raise ValueError("qos_depth must be >= 1 and diagnostics_period_s > 0")
        except (ValueError, TypeError) as exc:
            return SetParametersResult(successful=False, reason=f"{NODE_NAME}: {exc}")
        if self.config is not None:
            self.get_logger().info("parameter change takes effect at the next configure")
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ lifecycle
    @property
    def state(self) -> str:
        """The lifecycle state's label: unconfigured, inactive, active, finalized."""
        return self._state_machine.current_state[1]

    @property
    def idle(self) -> bool:
        """No inference running and nothing waiting for one (for tools that wait for the last answer)."""
        worker, pipeline = self._worker, self.pipeline
        return worker is None or pipeline is None or (not worker.busy and not pipeline.has_pending())

    def autostart(self) -> bool:
        """configure + activate; True when the node ends up active."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return False
        return self.trigger_activate() == TransitionCallbackReturn.SUCCESS

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        values = self._values()
        try:
            self.config = pipeline_config(values)
            self.pipeline = PerceptionPipeline(self.config, runtime=self._runtime_override,
                                               tracker_factory=self._tracker_override)
        except (Ov2Error, ImportError) as exc:
            self._report("configure", "error", f"configure failed: {type(exc).__name__}: {exc}")
            self.get_logger().error(f"configure failed: {exc}")
            self._publish_diagnostics()
            return TransitionCallbackReturn.FAILURE
        self._settings = {k: values[k] for k in ("qos_depth", "publish_canvases", "marker_pixel_scale",
                                                 "hardware_id", "diagnostics_period_s", "inference_nice")}
        self._pubs = {key: self.create_lifecycle_publisher(msg_type, topic, depth)
                      for key, (msg_type, topic, depth) in OUTPUT_TOPICS.items()
                      if (key != "canvases" or self._settings["publish_canvases"])
                      and (key != "overlay" or self.config.overlay)}
        self._diag_timer = self.create_timer(self._settings["diagnostics_period_s"], self._publish_diagnostics)
        # a volatile publisher cannot match the latched subscription (the volatile one takes its messages), so
        # rclpy's "incompatible QoS" warning for it is expected: a handler of our own replaces the default log
        quiet = SubscriptionEventCallbacks(incompatible_qos=lambda info: None)
        self._query_subs = [self.create_subscription(String, "query", self._on_query, qos,
                                                     callback_group=self._query_group, event_callbacks=events)
                            for qos, events in ((QUERY_QOS, None), (LATCHED_QUERY_QOS, quiet))]
        self.get_logger().info(f"configured: model={self.config.model} device={self.config.device} "
                               f"backend={self.config.backend} "
                               f"mode={self.config.tokenizer.mode} default_task={self.config.default_task}")
        return super().on_configure(state)

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        assert self.pipeline is not None and self.config is not None
        try:
            missing = self.pipeline.load()
        except Exception as exc:  # noqa: BLE001 - a checkpoint/backend that fails to load must not kill the process
            where = f"{self.config.model} on the {self.config.backend} backend"
            self._report("model", "error", f"model load failed ({where}): {type(exc).__name__}: {exc}")
            self.get_logger().error(f"activate failed: could not load {where}: {exc}")
            self._publish_diagnostics()
            return TransitionCallbackReturn.ERROR
        for stage, why in missing.items():
            self._report(f"missing_{stage}", "warn", why)
            self.get_logger().warning(f"{why}; the node tokenizes the stream but publishes no {stage} results")
        if self.config.model == "tiny-random":
            self.get_logger().warning("model 'tiny-random' has random weights: answers are meaningless. Pass a real "
                                      "checkpoint with model:=lmms-lab-encoder/LLaVA-OneVision-2-8B-Instruct")
        qos = QoSProfile(history=qos_profile_sensor_data.history, depth=self._settings["qos_depth"],
                         reliability=qos_profile_sensor_data.reliability,
                         durability=qos_profile_sensor_data.durability)
        self._subs = [
            self.create_subscription(CompressedImage, "image/compressed", self._on_image, qos,
                                     callback_group=self._video_group,
                                     event_callbacks=SubscriptionEventCallbacks(message_lost=self._on_lost)),
        ]
        self._worker = InferenceWorker(self.pipeline, self._publish_result, self._on_worker_error,
                                       nice=self._settings["inference_nice"])
        self._worker.poke()              # a query that arrived while the model loaded
        self.get_logger().info("active: listening on image/compressed and query")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_streaming()
        if self.pipeline is not None:
            self.pipeline.close()
        _free_gpu_memory()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._teardown()
        return super().on_cleanup(state)

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._stop_streaming()
        if self.pipeline is not None:
            self.pipeline.close()
        self._teardown()
        return super().on_shutdown(state)

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self._stop_streaming()
        self._teardown()
        return TransitionCallbackReturn.SUCCESS   # back to unconfigured; a fixed config can be retried

    def _stop_streaming(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []

    def _teardown(self) -> None:
        for sub in self._query_subs:
            self.destroy_subscription(sub)
        self._query_subs = []
        for p in self._pubs.values():
            self.destroy_lifecycle_publisher(p)
        self._pubs = {}
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        self.pipeline = None

    def destroy_node(self) -> None:
        self._stop_streaming()
        super().destroy_node()

    # ------------------------------------------------------------------ inputs
    def _on_image(self, msg: CompressedImage) -> None:
        t0 = time.monotonic()
        pipeline = self.pipeline
        if pipeline is None:
            return
        try:
            codec = convert.video_format(msg)
        except UnsupportedFormatError as exc:
            self._report("format", "error", str(exc))
            return
        if codec != pipeline.config.codec:
            self._report("format", "error", f"image/compressed: format {msg.format!r} but the codec parameter is "
                                            f"{pipeline.config.codec!r}; set codec:={codec} to decode it")
            return
        result = pipeline.push(bytes(msg.data), convert.copy_header(msg.header))
        if result.issue is not None:
            if isinstance(result.issue, ResolutionChangedError):
                self._report("resolution", "warn", f"resolution changed: {result.issue}")
            else:
                self._report("corrupt", "warn", f"access unit skipped ({type(result.issue).__name__}): "
                                                f"{result.issue}")
        elif pipeline.stats.frames == 0 and pipeline.stats.aus >= _ENTRY_POINT_PATIENCE:
            self._report("entry_point", "warn", f"waiting for an entry point (SPS+PPS+IDR): {pipeline.stats.aus} "
                                                "access units received, none decodable yet")
        if result.frames:
            self._clear("entry_point")
            now = time.monotonic()
            self._fps_times.extend([now] * result.frames)
        if result.groups:
            if "canvases" in self._pubs and pipeline.window is not None:
                self._pubs["canvases"].publish(convert.rgb_image(
                    convert.canvases_mosaic(pipeline.window.pixels), convert.copy_header(msg.header)))
            if self._worker is not None:
                self._worker.poke()
        stamp = msg.header.stamp
        self.au_timing.append((stamp.sec * 1_000_000_000 + stamp.nanosec, t0, time.monotonic()))

    def _on_lost(self, info) -> None:
        self.transport_lost = int(info.total_count)
        self._report("transport_lost", "warn", f"{self.transport_lost} access units lost in transport before "
                                               "decode (raise qos_depth or lower the load)")

    def _on_query(self, msg: String, info: Any) -> None:
        """Two parameters, so rclpy passes the MessageInfo (publisher gid, sequence number) the dedup needs."""
        pipeline = self.pipeline
        if pipeline is None or self._seen_before(info):
            return
        try:
            query = pipeline.set_query(msg.data)
        except Ov2Error as exc:
            self._report("query", "error", f"query {msg.data!r} rejected: {exc}")
            return
        self._clear("query")
        self.get_logger().info(f"query: task={query.task} text={query.text!r}")
        if pipeline.window is None:
            self._report("query_before_video", "warn", f"query {msg.data!r} received before any complete video "
                                                       "window; it runs when the first frame group closes")
        if self._worker is not None:
            self._worker.poke()

    def _seen_before(self, info: Any) -> bool:
        """Whether this exact message (publisher gid + sequence number) came in on the other query subscription."""
        gid, seq = (info or {}).get("publisher_gid"), (info or {}).get("publication_sequence_number")
        if gid is None or not seq:
            return False
        key = (bytes(gid["data"]) if isinstance(gid, dict) else bytes(gid), seq)
        if key in self._queries_seen:
            return True
        self._queries_seen.append(key)
        return False

    # ------------------------------------------------------------------ outputs (worker thread)
    def _publish_result(self, result: PerceptionResult) -> None:
        self._clear("query_before_video")
        if result.answer is None:
            self._report("model_error", "error", result.error or "model gave no answer")
            return
        self._clear("model_error")          # answering again (e.g. the served backend is back)
        answer, stamps = result.answer, result.stamps
        newest = max(stamps) if stamps else None
        fallback = stamps[newest] if newest is not None else Header()
        pubs = self._pubs
        if not pubs:
            return
        pubs["answer"].publish(convert.answer_message(answer, result.job.query_text, stamps))
        for point in convert.tracks_to_points(answer, stamps, fallback):
            pubs["points"].publish(point)
        path = convert.waypoints_to_path(answer, stamps, fallback)
        if path is not None:
            pubs["waypoints"].publish(path)
        pubs["markers"].publish(convert.answer_markers(answer, stamps, fallback,
                                                       self._settings["marker_pixel_scale"]))
        for frame, objects in sorted(result.masks.items()):
            mask, ids = convert.masks_to_images(objects, stamps.get(frame, fallback))
            if mask is not None:
                pubs["mask"].publish(mask)
            if ids is not None:
                pubs["mask_ids"].publish(ids)
        if result.overlay is not None and "overlay" in pubs:
            source = result.job.source
            pubs["overlay"].publish(convert.rgb_image(result.overlay, stamps.get(source.index, fallback)))
        if result.error:
            self._report("segment_error", "warn", result.error)
        if answer.errors:
            self._report("parse", "warn", f"answer parsed with errors: {'; '.join(answer.errors)[:300]}")
        self.results_published += 1

    def _on_worker_error(self, exc: BaseException) -> None:
        self._report("worker", "error", f"publishing a result failed: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ diagnostics
    def _report(self, kind: str, level: str, message: str) -> None:
        with self._cond_lock:
            cond = self._conditions.setdefault(kind, Condition(level, message))
            first = cond.count == 0
            cond.level, cond.message, cond.last_t = level, message, time.monotonic()
            cond.count += 1
        if first:
            self.get_logger().warning(message) if level == "warn" else self.get_logger().error(message)
            self._publish_diagnostics()   # a new kind of problem goes out at once, not at the next period

    def _clear(self, kind: str) -> None:
        with self._cond_lock:
            self._conditions.pop(kind, None)

    def diagnostics(self) -> tuple[str, str, dict[str, Any]]:
        """(level, message, values): the worst active condition, counters and every condition's latest message."""
        with self._cond_lock:
            conds = dict(self._conditions)
        level, message = "ok", "streaming"
        if conds:
            kind, worst = max(conds.items(), key=lambda kv: (_LEVEL_RANK[kv[1].level], kv[1].last_t))
            level, message = worst.level, worst.message
        values: dict[str, Any] = {}
        if self.pipeline is not None:
            values.update(self.pipeline.status())
            if self.pipeline.stats.aus == 0 and not conds:
                message = "waiting for video on image/compressed"
        span = self._fps_times[-1] - self._fps_times[0] if len(self._fps_times) > 1 else 0.0
        values["fps"] = (len(self._fps_times) - 1) / span if span > 0 else 0.0
        lat = sorted(end - start for _, start, end in list(self.au_timing))
        values["au_ms_p50"] = 1e3 * lat[len(lat) // 2] if lat else 0.0
        values["au_ms_max"] = 1e3 * lat[-1] if lat else 0.0
        values["results_published"] = self.results_published
        values["transport_lost"] = self.transport_lost
        values["worker_busy"] = bool(self._worker and self._worker.busy)
        for kind, c in conds.items():
            values[f"{kind}"] = f"[{c.level} x{c.count}] {c.message}"
        return level, message, values

    def _publish_diagnostics(self) -> None:
        level, message, values = self.diagnostics()
        now = self.get_clock().now().to_msg()
        self._diag_pub.publish(convert.diagnostics_message(
            f"{NODE_NAME}: {self.get_fully_qualified_name()}", self._settings.get("hardware_id", NODE_NAME), level,
            message, values, Time(sec=now.sec, nanosec=now.nanosec)))


def _free_gpu_memory() -> None:
    import sys

    torch = sys.modules.get("torch")   # only if something loaded it: never import torch just to free nothing
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def main(args: list[str] | None = None) -> None:
    """``ros2 run ov2_ros ov2_node`` / the ``ov2_node`` console script."""
    from rclpy.executors import MultiThreadedExecutor

    try:
        with rclpy.init(args=args):
            node = Ov2Node()
            executor = MultiThreadedExecutor(num_threads=2)
            executor.add_node(node)
            try:
                executor.spin()
            finally:
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
