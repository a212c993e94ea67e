"""Offline replay: a recorded bag through exactly the live node's ``PerceptionPipeline``, every window inferred.

Not real time: each access unit is pushed as fast as it decodes, and after each push the due window (if any) is run
to completion, so no window is dropped for being late. The latency each window *would* have had live is recorded:
the push of the AU that closed its last group + the model + SAM2. Same bag + same model gives the same results bag.
"""
from __future__ import annotations

import bisect
import contextlib
import itertools
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2

from ov2_ros.codec.errors import CodecError
from ov2_ros.codec.types import FrameGroup, Mode, TokenizerConfig
from ov2_ros.eval.bags import BagImage, BagWriter, Storage, access_units, message_count, read_images
from ov2_ros.eval.errors import BagError, EvalError
from ov2_ros.eval.outputs import ResultsBag
from ov2_ros.eval.results import (MASKS_DIR, RESULTS_BAG, RESULTS_FILE, GroupRecord, ReplayResults, WindowRecord,
                                  answer_record, save_results)
from ov2_ros.overlay import OverlayWriter
from ov2_ros.results import mask_union

OVERLAY_DIR, OVERLAY_MP4 = "overlay", "overlay.mp4"


@dataclass(frozen=True)
class SourceStamp:
    """A ROS-Time-shaped source stamp (``sec``, ``nanosec``): the decoder reads times from it, outputs get it back."""

    sec: int
    nanosec: int

    @classmethod
    def from_ns(cls, ns: int) -> SourceStamp:
        return cls(int(ns // 1_000_000_000), int(ns % 1_000_000_000))

    @property
    def ns(self) -> int:
        return self.sec * 1_000_000_000 + self.nanosec


class FrameStamps:
    """Source stamp (ns) of each decoded frame, callable as ``stamps(frame)``.

    Exact for frames the tokenizer reported on a group (the decoder tags each frame with its own AU's stamp). Any
    other frame is counted on, in message order, from the nearest reported frame before it: exact for streams
    without reordering, and still right after an AU that decoded to nothing (corrupt, or before the first IDR).
    """

    def __init__(self, message_stamps: list[int]) -> None:
        self._messages = message_stamps          # every message's stamp, strictly increasing (read_images checks)
        self._known: dict[int, int] = {}
        self._frames: list[int] = []             # sorted keys of _known

    def learn(self, frame: int, stamp_ns: int) -> None:
        if frame not in self._known:
            bisect.insort(self._frames, frame)
        self._known[frame] = stamp_ns

    def __call__(self, frame: int) -> int:
        if frame in self._known:
            return self._known[frame]
        k = bisect.bisect_left(self._frames, frame)
        anchor_frame, anchor_msg = 0, 0
        if k > 0:
            anchor_frame = self._frames[k - 1]
            anchor_msg = bisect.bisect_left(self._messages, self._known[anchor_frame])
        msg = anchor_msg + frame - anchor_frame
        return self._messages[min(max(msg, 0), len(self._messages) - 1)]


@dataclass(frozen=True)
class ReplayConfig:
    query: str
    topic: str = "/camera/image/compressed"
    model: str = "tiny-random"
    mode: Mode = "codec"
    canvases: int = 32                 # window budget; equal budgets give equal tokens in codec and uniform mode
    segment: bool = True               # SAM2 masks for track/point answers
    segment_model: str = "tiny-random"  # SAM2 checkpoint: tiny-random, sam2-toy, an HF id or a folder
    max_new_tokens: int = 128
    device: str = "cpu"
    backend: str = "torch"             # torch | onnxruntime | tensorrt (PipelineConfig.backend)
    export_dir: str = ""               # what `ov2-ros export` wrote, for onnxruntime/tensorrt
    ray_address: str = "http://127.0.0.1:8000"   # ray backend: the Serve endpoint (PipelineConfig.ray_address)
    ray_app: str = "ov2"
    storage: Storage = "mcap"          # of the results bag
    uniform_group_frames: int = 32     # uniform mode's fixed group length (match codec's to equal total tokens)
    encode_fps: float = 30.0           # raw/JPEG input only: the bridge encoder's nominal rate
    encode_gop: int = 30
    overlay: str = ""                  # "png" (OUT/overlay/NNNNNN.png) or "mp4" (OUT/overlay.mp4): answers drawn


def pipeline_config(config: ReplayConfig, codec: str = "h264") -> Any:
    """The live node's ``PipelineConfig`` for a replay: every group's window is due (rerun per group)."""
    from ov2_ros.pipeline import PipelineConfig

    return PipelineConfig(tokenizer=TokenizerConfig(mode=config.mode, window_canvases=config.canvases,
                                                    uniform_group_frames=config.uniform_group_frames),
                          model=config.model, device=config.device, segment=config.segment,
                          segment_model=config.segment_model, rerun="group",
                          max_new_tokens=config.max_new_tokens, backend=config.backend,
                          export_dir=config.export_dir, ray_address=config.ray_address, ray_app=config.ray_app,
                          overlay=bool(config.overlay),
                          codec=codec)


def group_record(group: FrameGroup) -> GroupRecord:
    """Tokens per source frame in one group: its patches on every canvas / 4 (the 2x2 merger)."""
    counts: dict[int, float] = {}
    for canvas in group.canvases:
        t = canvas.positions[:, 0]
        for frame in canvas.frames:
            counts[int(frame)] = counts.get(int(frame), 0.0) + float((t == frame).sum()) / 4
    return GroupRecord(group.index, group.start_frame, group.end_frame, dict(sorted(counts.items())))


def _prepare_out(out_dir: Path) -> None:
    """A fresh output folder; a previous replay's outputs there are replaced, anything else is left alone."""
    out_dir.mkdir(parents=True, exist_ok=True)
    previous = (out_dir / RESULTS_FILE).is_file()
    for name in (RESULTS_BAG, MASKS_DIR, OVERLAY_DIR, OVERLAY_MP4):
        target = out_dir / name
        if target.exists():
            if not previous:
                raise EvalError(f"{target} exists and is not from an earlier replay; choose another --out")
            shutil.rmtree(target) if target.is_dir() else target.unlink()
    (out_dir / MASKS_DIR).mkdir()


def replay_bag(bag: str | Path, out_dir: str | Path, config: ReplayConfig, progress: bool = True,
               runtime: Any = None, tracker_factory: Callable[[], Any] | None = None) -> ReplayResults:
    """Replay ``bag`` into ``out_dir`` (results.json, results_bag/, masks/). ``runtime``/``tracker_factory``
    pass an already-loaded model/SAM2 to the pipeline (the compare mode loads once for both runs)."""
    from tqdm import tqdm

    from ov2_ros.pipeline import PerceptionPipeline

    bag, out_dir = Path(bag), Path(out_dir)
    t_start = time.perf_counter()
    # read the first message before loading any model, so a bad bag or topic fails fast
    images = read_images(bag, config.topic)
    first = next(images, None)
    if first is None:
        raise EvalError(f"bag {bag}: topic {config.topic} has no messages")
    pipeline = PerceptionPipeline(pipeline_config(config, "hevc" if first.kind == "hevc" else "h264"),
                                  runtime=runtime, tracker_factory=tracker_factory)   # raw/JPEG are encoded to H.264
    missing = pipeline.load()
    pipeline.set_query(config.query)
    _prepare_out(out_dir)

    overlays = (OverlayWriter(out_dir / (OVERLAY_MP4 if config.overlay == "mp4" else OVERLAY_DIR), config.overlay)
                if config.overlay else None)
    with BagWriter(out_dir / RESULTS_BAG, config.storage) as writer, (
            contextlib.closing(overlays) if overlays else contextlib.nullcontext()):
        run = _Run(pipeline, writer, out_dir, first, overlays)
        aus = access_units(run.seen(itertools.chain([first], images)), config.encode_fps, config.encode_gop)
        with tqdm(aus, total=message_count(bag, config.topic), unit="msg", desc=f"replay {config.mode}",
                  disable=not progress, leave=False) as bar:
            for au, stamp_ns in bar:
                pushed = pipeline.push(au, SourceStamp.from_ns(stamp_ns))
                if pushed.groups:
                    run.on_groups(pushed.groups, pushed.push_s, stamp_ns / 1e9)
        t0 = time.perf_counter()
        flushed = pipeline.flush()
        if flushed:
            run.on_groups(flushed, time.perf_counter() - t0, run.message_stamps[-1] / 1e9)

    results = ReplayResults(
        name=bag.resolve().name, bag=str(bag), topic=config.topic, query=config.query, model=config.model,
        mode=config.mode, canvases=config.canvases, source_kind=first.kind,
        frame_stamps_ns=tuple(run.stamps(f) for f in range(pipeline.stats.frames)), groups=tuple(run.groups),
        windows=tuple(run.windows), missing=missing,
        stats={**pipeline.status(), "messages": len(run.message_stamps), "wall_s": time.perf_counter() - t_start})
    save_results(results, out_dir)
    if pipeline.stats.frames == 0:     # results.json stays, for `ov2-ros eval` and people to read the counts
        raise BagError(undecodable_message(bag, config.topic, first, len(run.message_stamps), pipeline.stats))
    return results


def undecodable_message(bag: Path, topic: str, first: BagImage, messages: int, stats: Any) -> str:
    """Why a replay decoded no frame, in one line: counts, the last codec issue, and a hint when the bytes are
    another codec than the messages' ``format`` says."""
    line = f"bag {bag}, topic {topic}: no frame decoded from {messages} message(s) ({stats.codec_issues} rejected"
    line += f"; last: {stats.last_issue})" if stats.last_issue else ", none had an IDR with SPS/PPS)"
    other = {"h264": "hevc", "hevc": "h264"}.get(first.kind)
    if other and _looks_like(first.data, other):
        line += f"; the data looks like {other}: the messages' format says {first.kind}"
    return line


def _looks_like(data: bytes, codec: str) -> bool:
    """Whether ``data`` parses as a ``codec`` access unit holding a parameter set (a strong sign of that codec)."""
    from ov2_ros.codec.nal import PARAMETER_SET_TYPES, nal_type, validate_access_unit

    try:
        nals = validate_access_unit(data, codec)
    except CodecError:
        return False
    return any(nal_type(n, codec) in PARAMETER_SET_TYPES[codec] for n in nals)


class _Run:
    """One replay's running state: message stamps, frame stamps, closed groups and inferred windows."""

    def __init__(self, pipeline: Any, writer: BagWriter, out_dir: Path, first: BagImage,
                 overlays: OverlayWriter | None = None) -> None:
        self.pipeline, self.out_dir, self.overlays = pipeline, out_dir, overlays
        self.message_stamps: list[int] = []
        self.stamps = FrameStamps(self.message_stamps)
        self.sink = ResultsBag(writer, first.frame_id, self.stamps)
        self.groups: list[GroupRecord] = []
        self.windows: list[WindowRecord] = []

    def seen(self, images: Iterator[BagImage]) -> Iterator[BagImage]:
        for image in images:
            self.message_stamps.append(image.stamp_ns)
            yield image

    def on_groups(self, new: tuple[FrameGroup, ...], push_s: float, now_s: float) -> None:
        """Record the closed groups, then run the window they completed (if the pipeline says one is due)."""
        for g in new:
            self.groups.append(group_record(g))
            for f, s in g.frame_stamps.items():
                if isinstance(s, SourceStamp):
                    self.stamps.learn(f, s.ns)
        job = self.pipeline.next_job(now=now_s)
        if job is not None:
            self.windows.append(self._infer(job, push_s))

    def _infer(self, job: Any, push_s: float) -> WindowRecord:
        """Infer one window; its answer and masks go to the results bag and masks/ (a later window overwrites)."""
        result = self.pipeline.infer(job)
        masks = {}
        for frame, objects in result.masks.items():
            mono = mask_union(objects)
            if mono is not None:
                masks[frame] = mono
                cv2.imwrite(str(self.out_dir / MASKS_DIR / f"{frame:06d}.png"), mono)
        if result.answer is not None:
            self.sink.write_window(result.answer, job.query_text, masks)
        if self.overlays is not None and result.overlay is not None:
            self.overlays.add(job.source.index, result.overlay)
        window = job.window
        return WindowRecord(
            seq=job.seq, start_frame=window.start_frame, end_frame=window.end_frame, tokens=window.num_tokens,
            canvases=len(window.canvases), answer=answer_record(result.answer),
            error=result.error, push_s=push_s, model_s=result.model_s, segment_s=result.segment_s,
            mask_frames=tuple(sorted(masks)))
