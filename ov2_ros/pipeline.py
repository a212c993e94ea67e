"""The one packet -> tokens -> model -> results path, shared by the ROS node and offline replay. Pure: no rclpy.

Threading model (what the node relies on):
- ``push`` runs on the caller's thread (the executor): every access unit is decoded and tokenized in order, none is
  dropped before decode. When a group closes, the newest complete window is snapshotted.
- ``next_job`` / ``infer`` run on a worker (``InferenceWorker``): a job is the *newest* window plus the active
  query. Windows that closed while the worker was busy are never run; they are counted in ``windows_dropped``.
- Model and segmenter failures are caught in ``infer``, counted, and returned in ``PerceptionResult.error``.

Missing pieces (a model runtime or SAM2 that is not installed/built) are not faked: ``status()`` names them and
``infer`` returns no answer with the reason.
"""
from __future__ import annotations

import ctypes
import functools
import os
import platform
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ov2_ros.codec.errors import CodecError, ResolutionChangedError
from ov2_ros.codec.tokenizer import CodecTokenizer
from ov2_ros.codec.types import CodecWindow, DecodedFrame, FrameGroup, TokenizerConfig
from ov2_ros.errors import ConfigError
from ov2_ros.model.answer import TASKS, Answer, Query
from ov2_ros.model.prompts import parse_query

Rerun = Literal["group", "period"]
_STAMP_RING = 4096   # (frame index, source stamp) pairs kept: covers a 64-group window of 64-frame groups


@dataclass(frozen=True)
class PipelineConfig:
    """Everything the pipeline needs; the node's ROS parameters map one-to-one onto these fields."""

    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    codec: str = "h264"                  # h264 | hevc: what the camera sends
    model: str = "tiny-random"           # "tiny-random", an HF id or a local checkpoint directory
    device: str = "cpu"
    backend: str = "torch"               # torch | onnxruntime | tensorrt | ray (served by `ov2-ros serve`)
    export_dir: str = ""                 # onnxruntime/tensorrt: the folder `ov2-ros export` wrote ("" for torch)
    ray_address: str = "http://127.0.0.1:8000"   # ray: Serve's HTTP endpoint, or a Ray address (auto, ray://h:10001)
    ray_app: str = "ov2"                 # ray: the Serve application name (also its HTTP route)
    ray_timeout_s: float = 30.0          # ray: request timeout (seconds)
    max_new_tokens: int = 128
    segment: bool = True                 # SAM2 masks from track/point answers
    segment_model: str = "tiny-random"
    default_task: str = "ask"            # task for queries without a prefix
    rerun: Rerun = "group"               # re-run the active query on each new group, or every rerun_period_s
    rerun_period_s: float = 2.0
    frame_ring: int = 64                 # decoded frames kept for SAM2 (bounds memory: ~3 MB each at 1080p)
    segment_max_frames: int = 16         # newest ring frames SAM2 is given per job (bounds its time per answer)
    trim_memory: bool = False            # hand freed heap back to the OS after each answer (glibc malloc_trim)
    overlay: bool = False                # draw each answer on its source frame (PerceptionResult.overlay)

    def __post_init__(self) -> None:
        if self.default_task not in TASKS:
            raise ConfigError(f"default_task must be one of {TASKS}, got {self.default_task!r}")
        if self.rerun not in ("group", "period"):
            raise ConfigError(f"rerun must be 'group' or 'period', got {self.rerun!r}")
        if self.rerun_period_s <= 0 or self.frame_ring < 1 or self.max_new_tokens < 1 or self.segment_max_frames < 1:
            raise ConfigError("need rerun_period_s > 0, frame_ring >= 1, max_new_tokens >= 1 and "
                              "segment_max_frames >= 1")
        if self.codec not in ("h264", "hevc"):
            raise ConfigError(f"codec must be h264 or hevc, got {self.codec!r}")
        if self.backend not in ("torch", "onnxruntime", "tensorrt", "ray"):
            raise ConfigError(f"backend must be torch, onnxruntime, tensorrt or ray, got {self.backend!r}")
        if self.ray_timeout_s <= 0:
            raise ConfigError(f"ray_timeout_s must be > 0, got {self.ray_timeout_s}")


def load_model_runtime(config: PipelineConfig) -> Any:
    """The config's model on its backend (``ov2_ros.engines.runtime.select_backend``): ``answer(window, query)``.

    Raises ConfigError/ManifestError for a missing or mismatched ``export_dir`` and BackendUnavailableError
    (an ImportError naming what to install) where the backend's library does not import."""
    from ov2_ros.engines.runtime import select_backend

    return select_backend(config.backend, config.model, device=config.device, export_dir=config.export_dir or None,
                          max_new_tokens=config.max_new_tokens, ray_address=config.ray_address,
                          ray_app=config.ray_app, ray_timeout_s=config.ray_timeout_s)


@dataclass(frozen=True)
class PushResult:
    """What one access unit produced. ``issue`` is a codec problem (the AU was skipped or the stream restarted)."""

    groups: tuple[FrameGroup, ...] = ()
    frames: int = 0                      # frames decoded from this AU (0 while the decoder is warming up)
    issue: CodecError | None = None
    push_s: float = 0.0                  # decode + tokenize time for this AU


@dataclass(frozen=True)
class InferenceJob:
    window: CodecWindow
    query: Query
    query_text: str
    seq: int                             # increases with every job handed out
    query_version: int = 0               # changes when a new query is set
    source: DecodedFrame | None = None   # with config.overlay: the window's newest frame, taken from the ring


@dataclass(frozen=True)
class PerceptionResult:
    """One inference: the answer (None when the model failed or is missing), SAM2 masks per source frame index
    (``{frame: {obj_id: ObjectMask}}``), the window it ran on, and the error if any."""

    job: InferenceJob
    answer: Answer | None
    masks: Mapping[int, Mapping[int, Any]] = field(default_factory=dict)
    stamps: Mapping[int, Any] = field(default_factory=dict)   # source stamp of every frame the window covers
    error: str | None = None
    model_s: float = 0.0
    segment_s: float = 0.0
    overlay: Any = None                  # with config.overlay: RGB uint8 (H, W, 3), the answer on its source frame

    @property
    def window_frames(self) -> tuple[int, int]:
        return self.job.window.start_frame, self.job.window.end_frame


@dataclass
class PipelineStats:
    aus: int = 0
    frames: int = 0
    groups: int = 0
    codec_issues: int = 0
    windows_run: int = 0
    windows_dropped: int = 0
    model_errors: int = 0
    segment_errors: int = 0
    push_s_total: float = 0.0
    decode_s_total: float = 0.0
    last_model_s: float = 0.0
    last_issue: str = ""


def _detached(exc: BaseException) -> BaseException:
    """``exc`` (and its cause/context chain) without tracebacks. A returned issue must not keep the frame that
    caught it alive: that frame holds the issue itself, so exception -> traceback -> frame -> exception is a cycle
    that pins the AU bytes, the pipeline and its FFmpeg context until the cyclic GC runs (issue 10, item 3)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        e.__traceback__ = None
        e = e.__cause__ or e.__context__
    return exc


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def trim_heap() -> bool:
    """Hand freed heap pages back to the OS (glibc ``malloc_trim(0)``, every arena); False where unavailable.

    Why: a CPU answer allocates and frees ~2 GB of activations from the inference thread. glibc serves blocks up to
    32 MB from its arenas once its mmap threshold has risen, and arenas keep what is freed: trimming after each
    answer holds ~30% less memory between answers, but the next answer faults those pages back in, and the soak
    showed slower decode callbacks on 2 CPU cores, so it is opt-in (``trim_memory``; README.md, soak numbers)."""
    libc = _glibc()
    return bool(libc is not None and libc.malloc_trim(0))


class PerceptionPipeline:
    def __init__(self, config: PipelineConfig = PipelineConfig(), runtime: Any = None, tracker_factory:
                 Callable[[], Any] | None = None) -> None:
        """``runtime``/``tracker_factory`` override what ``load()`` would build (a checkpoint already loaded, or a
        test double of a failure mode). ``tracker_factory()`` returns a fresh SAM2 ``MaskTracker``."""
        self.config = config
        self.stats = PipelineStats()
        self._lock = threading.Lock()
        self._tokenizer = self._make_tokenizer(config)
        self._runtime = runtime
        self._tracker_factory = tracker_factory
        self._missing: dict[str, str] = {}
        self._frames: deque[DecodedFrame] = deque(maxlen=config.frame_ring)
        self._stamps: deque[tuple[int, Any]] = deque(maxlen=_STAMP_RING)
        self._window: CodecWindow | None = None
        self._window_version = 0          # bumps on every closed group
        self._job_version = 0             # window version of the last job handed out
        self._last_job_t = float("-inf")
        self._query: Query | None = None
        self._query_text = ""
        self._query_version = 0
        self._job_query_version = 0
        self._seq = 0
        self._tracker: Any = None          # the streaming SAM2 MaskTracker, built on first use
        self._tracker_last = -1            # newest frame index the tracker has been given
        self._tracker_query = -1
        self._tracker_reset = False        # set by push on a resolution change, honoured by the worker
        self._size: tuple[int, int] | None = None
        self._resolution_changed = False

    # ------------------------------------------------------------- set-up
    @staticmethod
    def _make_tokenizer(config: PipelineConfig) -> CodecTokenizer:
        # a trained model's recorded tokenizer settings fill the fields left at their defaults (ov2-toy: max_pixels..)
        from ov2_ros.model.checkpoints import apply_model_tokenizer

        return CodecTokenizer(apply_model_tokenizer(config.tokenizer, config.model), codec=config.codec)

    def load(self) -> dict[str, str]:
        """Load the model runtime on ``config.backend`` and the SAM2 factory. Returns {stage: why it is missing} for
        what could not load; the pipeline still tokenizes without them. A checkpoint that exists but fails to load
        raises (ModelError), and so does a backend that cannot start: no/mismatched ``export_dir`` (ConfigError,
        ManifestError) or TensorRT not importable (BackendUnavailableError, naming what to install)."""
        if self._runtime is None:
            try:
                import ov2_ros.engines.runtime  # noqa: F401 - torch and the model code import here, or are missing
            except ImportError as exc:
                self._missing["model"] = f"model runtime not available (ov2_ros.engines.runtime: {exc})"
            else:
                self._runtime = load_model_runtime(self.config)
        if self.config.segment and self._tracker_factory is None:
            try:
                from ov2_ros.segment import MaskTracker
            except ImportError as exc:
                self._missing["segment"] = f"SAM2 mask tracker not available (ov2_ros.segment.MaskTracker: {exc})"
            else:
                seg_model, device = self.config.segment_model, self.config.device
                self._tracker_factory = lambda: MaskTracker(model=seg_model, device=device)
        return dict(self._missing)

    def close(self) -> None:
        """Free the model (GPU memory) and the frame ring; the tokenizer state is kept for a later ``load``."""
        runtime, self._runtime = self._runtime, None
        if runtime is not None and hasattr(runtime, "close"):
            runtime.close()
        self._drop_tracker()
        self._tracker_factory = None
        self._frames.clear()

    @property
    def missing(self) -> dict[str, str]:
        return dict(self._missing)

    # ------------------------------------------------------------- packets
    def push(self, au: bytes, stamp: Any = None) -> PushResult:
        """Decode and tokenize one Annex-B access unit. Codec problems come back in ``issue``, never raised."""
        t_in = time.perf_counter()
        issue: CodecError | None = None
        with self._lock:
            self.stats.aus += 1
            t0 = time.perf_counter()
            try:
                decoded = self._tokenizer.decoder.decode(au, stamp)
            except CodecError as exc:   # the decoder skipped this AU and kept its state
                issue, decoded = _detached(exc), []
            t1 = time.perf_counter()
            groups = self._tokenize(decoded)
            self.stats.decode_s_total += t1 - t0
            frames = len(decoded)
            if self._resolution_changed and issue is None:
                issue = ResolutionChangedError(f"stream is now {self._size[0]}x{self._size[1]} from AU "
                                               f"#{self.stats.aus - 1}; tokenization restarted")
            self._resolution_changed = False
            if groups:
                self._on_groups(groups)
            if issue is not None:
                self._count_issue(issue)
            dt = time.perf_counter() - t_in   # includes waiting for the lock: what the caller paid
            self.stats.push_s_total += dt
        return PushResult(tuple(groups), frames, issue, dt)

    def flush(self) -> tuple[FrameGroup, ...]:
        """End of stream: drain the decoder and close the open group (offline replay). Never raises for the stream:
        a bad picture met while draining is counted as a codec issue and the frames behind it still come out."""
        with self._lock:
            decoder = self._tokenizer.decoder
            try:
                frames = decoder.flush()
            except CodecError as exc:   # the decoder keeps the drained frames for the next call
                self._count_issue(_detached(exc))
                frames = decoder.flush()
            groups = self._tokenize(frames)
            groups += self._tokenizer.flush()
            if groups:
                self._on_groups(groups)
        return tuple(groups)

    def _count_issue(self, issue: CodecError) -> None:
        self.stats.codec_issues += 1
        self.stats.last_issue = f"{type(issue).__name__}: {issue}"

    def _on_new_resolution(self) -> None:
        """Old frames no longer match: empty the ring and forget the old stream's window (a query in the gap before
        the first new group closes must not run on old frames); the worker rebuilds SAM2 before its next use."""
        self._frames.clear()
        self._window = None
        self._tracker_reset = True

    def _tokenize(self, frames: list[DecodedFrame]) -> list[FrameGroup]:
        """Feed decoded frames to the tokenizer, keeping stamps (and frames, for SAM2) in bounded rings."""
        groups: list[FrameGroup] = []
        for f in frames:
            if self._size is not None and (f.width, f.height) != self._size:
                self._resolution_changed = True   # the tokenizer closes its group and empties its window itself
                self._on_new_resolution()
            self._size = (f.width, f.height)
            self._stamps.append((f.index, f.stamp))
            if self._tracker_factory is not None or self.config.overlay:
                self._frames.append(f)
            groups += self._tokenizer.push_frame(f)
        self.stats.frames += len(frames)
        return groups

    def _on_groups(self, groups: list[FrameGroup]) -> None:
        self.stats.groups += len(groups)
        window = self._tokenizer.window()
        if window is not None:
            self._window = window
            self._window_version += len(groups)

    @property
    def window(self) -> CodecWindow | None:
        return self._window

    # ------------------------------------------------------------- queries and jobs
    def set_query(self, text: str) -> Query:
        query = parse_query(text, self.config.default_task)
        with self._lock:
            self._query, self._query_text = query, text
            self._query_version += 1
        return query

    @property
    def query(self) -> Query | None:
        return self._query

    def has_pending(self) -> bool:
        """True while a window or query has arrived that no job has taken yet (a query and a window exist)."""
        with self._lock:
            return (self._window is not None and self._query is not None and
                    (self._window_version != self._job_version or self._query_version != self._job_query_version))

    def next_job(self, now: float | None = None) -> InferenceJob | None:
        """The newest complete window with the active query, when it is due; None otherwise.

        Due means: a new query arrived, or (rerun=group) a group closed since the last job, or (rerun=period) the
        period elapsed and a new group closed. Groups that closed in between are dropped and counted."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._window is None or self._query is None:
                return None
            new_query = self._query_version != self._job_query_version
            new_groups = self._window_version - self._job_version
            if not new_query:
                if new_groups == 0:
                    return None
                if self.config.rerun == "period" and now - self._last_job_t < self.config.rerun_period_s:
                    return None
            if self._job_version and new_groups > 1:
                self.stats.windows_dropped += new_groups - 1
            self._job_version, self._job_query_version = self._window_version, self._query_version
            self._last_job_t = now
            self._seq += 1
            source = None
            if self.config.overlay:      # taken now: by the time the answer is ready the ring may have moved on
                newest = self._window.end_frame - 1
                source = next((f for f in reversed(self._frames) if f.index <= newest), None)
            return InferenceJob(self._window, self._query, self._query_text, self._seq, self._query_version, source)

    # ------------------------------------------------------------- inference
    def infer(self, job: InferenceJob) -> PerceptionResult:
        """Run the model (and SAM2 for track/point answers) on one job. Never raises for model/segment failures."""
        window = job.window
        with self._lock:
            stamps = {i: s for i, s in self._stamps if window.start_frame <= i < window.end_frame}
        stamps.update(window.frame_stamps)
        if self._runtime is None:
            reason = self._missing.get("model", "model not loaded (call load())")
            self.stats.model_errors += 1
            return PerceptionResult(job, None, stamps=stamps, error=reason)
        t0 = time.perf_counter()
        try:
            answer = self._runtime.answer(job.window, job.query)
        except Exception as exc:  # noqa: BLE001 - any model failure is reported, the stream goes on
            self.stats.model_errors += 1
            self.stats.last_issue = f"model: {type(exc).__name__}: {exc}"
            return PerceptionResult(job, None, stamps=stamps, error=f"model failed on frames {window.start_frame}-"
                                    f"{window.end_frame}: {type(exc).__name__}: {exc}")
        model_s = time.perf_counter() - t0
        if not answer.latency_s:
            answer = replace(answer, latency_s=model_s)
        self.stats.windows_run += 1
        self.stats.last_model_s = model_s
        masks, seg_error, segment_s = self._segment(answer, job.query_version)
        overlay = None
        if job.source is not None:
            from ov2_ros.overlay import draw_overlay

            overlay = draw_overlay(job.source.rgb(), answer, masks.get(job.source.index), job.query_text)
        if self.config.trim_memory:
            trim_heap()
        return PerceptionResult(job, answer, masks, stamps, seg_error, model_s, segment_s, overlay)

    def _segment(self, answer: Answer, query_seq: int) -> tuple[dict[int, dict[int, Any]], str | None, float]:
        """Prompt the streaming SAM2 tracker with the answer's points and push it the ring frames it has not seen.

        One tracker lives across jobs (weights load once; SAM2 memory carries over). Prompts for frames it already
        passed apply on the next frame it is given, so a late VLM answer still re-prompts. A new query starts its
        objects afresh."""
        if not self.config.segment or not (answer.tracks or answer.points):
            return {}, None, 0.0
        if self._tracker_factory is None:
            return {}, self._missing.get("segment", "SAM2 not loaded"), 0.0
        t0 = time.perf_counter()
        masks: dict[int, dict[int, Any]] = {}
        try:
            from ov2_ros.segment import prompts_from_answer

            prompts = prompts_from_answer(answer)
            tracker = self._tracker_for(query_seq)
            start = min(p.frame for p in prompts) if self._tracker_last < 0 else self._tracker_last + 1
            with self._lock:
                frames = [f for f in self._frames if f.index >= start][-self.config.segment_max_frames:]
            if not frames:        # no frame newer than the last one SAM2 saw: nothing to propagate to
                return {}, None, 0.0
            for prompt in prompts:
                tracker.add_prompt(prompt)
            for f in frames:
                masks[f.index] = tracker.push(f.index, f.rgb())
                self._tracker_last = f.index
        except Exception as exc:  # noqa: BLE001 - reported, the answer still goes out
            self.stats.segment_errors += 1
            self.stats.last_issue = f"segment: {type(exc).__name__}: {exc}"
            self._drop_tracker()   # its state may be half-updated: start clean next time
            return masks, f"SAM2 failed: {type(exc).__name__}: {exc}", time.perf_counter() - t0
        return masks, None, time.perf_counter() - t0

    def _tracker_for(self, query_seq: int) -> Any:
        if self._tracker_reset:
            self._tracker_reset = False
            self._drop_tracker()
        if self._tracker is not None and self._tracker_query != query_seq:
            for obj_id in self._tracker.object_ids:
                self._tracker.remove_object(obj_id)
        if self._tracker is None:
            self._tracker = self._tracker_factory()
            self._tracker_last = -1
        self._tracker_query = query_seq
        return self._tracker

    def _drop_tracker(self) -> None:
        tracker, self._tracker, self._tracker_last = self._tracker, None, -1
        if tracker is not None and hasattr(tracker, "close"):
            tracker.close()

    def status(self) -> dict[str, Any]:
        s = self.stats
        return {"aus": s.aus, "frames": s.frames, "groups": s.groups, "codec_issues": s.codec_issues,
                "windows_run": s.windows_run, "windows_dropped": s.windows_dropped, "model_errors": s.model_errors,
                "segment_errors": s.segment_errors, "push_ms_mean": 1e3 * s.push_s_total / max(1, s.aus),
                "decode_ms_mean": 1e3 * s.decode_s_total / max(1, s.aus),
                "tokenize_ms_mean": 1e3 * (s.push_s_total - s.decode_s_total) / max(1, s.aus),
                "model_s": s.last_model_s, "frame_ring": len(self._frames), "last_issue": s.last_issue,
                **{f"missing_{k}": v for k, v in self._missing.items()},
                **(self._runtime.status() if hasattr(self._runtime, "status") else {})}   # a served runtime's link


class InferenceWorker:
    """A daemon thread that runs ``pipeline.next_job`` -> ``infer`` -> ``on_result``. ``poke()`` after a push
    wakes it; it also polls every ``poll_s`` so period reruns fire. Exceptions in ``on_result`` are passed to
    ``on_error`` and never kill the thread."""

    def __init__(self, pipeline: PerceptionPipeline, on_result: Callable[[PerceptionResult], None],
                 on_error: Callable[[BaseException], None] = lambda exc: None, poll_s: float = 0.1,
                 nice: int = 0) -> None:
        """``nice`` > 0 is added to this thread's niceness (Linux: per thread; capped at 19), so on a CPU-bound
        machine the live decode on the caller's thread is served first and inference takes what is left."""
        self._pipeline, self._on_result, self._on_error, self._poll_s = pipeline, on_result, on_error, poll_s
        self._nice = nice
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.busy = False
        self.native_id: int | None = None    # the OS thread id, once running
        self._thread = threading.Thread(target=self._loop, name="ov2-inference", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        tid = threading.get_native_id()
        if self._nice > 0 and hasattr(os, "setpriority"):
            try:
                os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + self._nice))
            except OSError:   # not permitted here: inference simply keeps the normal priority
                pass
        self.native_id = tid
        while not self._stop.is_set():
            self._wake.wait(self._poll_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            self.busy = True     # before taking the job, so "not busy and nothing pending" really means idle
            try:
                job = self._pipeline.next_job()
                if job is None:
                    continue
                result = self._pipeline.infer(job)
                self._on_result(result)
            except Exception as exc:  # noqa: BLE001 - the worker must outlive a bad result/publisher
                try:
                    self._on_error(exc)
                except Exception:  # noqa: BLE001 - e.g. the middleware is shutting down under us
                    pass
            finally:
                self.busy = False

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
