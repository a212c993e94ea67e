"""The streaming codec-stream tokenizer: access units in, closed ``FrameGroup``s and a ``CodecWindow`` out.

Per frame (every AU passes here, so the work is a few vectorised array ops, no Python loop over MVs or patches):
shrink Y/U/V to the canvas (kept as I420 until the frame's group closes) -> saliency at half canvas resolution
against the previous frame -> grouping decision. Per closed group: select blocks, pack the I420 tiles, convert each
canvas to RGB once.

Memory is bounded by ``max_group_frames + cut_grace`` canvas-size I420 frames (66 x 212 kB at 280x504) plus the
window's canvases (``pending_frames`` reports the first).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ov2_ros.codec.grouping import (BitCostGrouper, Boundary, FixedGrouper, GroupingConfig, PlannedGrouper,
                                    ReadinessConfig, ReadinessGrouper, readiness_threshold)
from ov2_ros.codec.packing import CanvasGrid, canvas_yuv, chroma_planes, resize_plane
from ov2_ros.codec.references import ReferenceHistory, decoded_before, wants_future
from ov2_ros.codec.sampling import RateSampler, SetSampler
from ov2_ros.codec.saliency import BitCostConfig, BitCostEstimator, SaliencyConfig, SaliencyScorer
from ov2_ros.codec.selection import FrameRecord, codec_canvases, official_canvases
from ov2_ros.codec.types import DecodedFrame, FrameGroup, TokenizerConfig
from ov2_ros.codec.uniform import hybrid_canvases, uniform_canvases
from ov2_ros.codec.window import WindowBuffer

DEFAULT_FPS = 30.0


@dataclass(frozen=True)
class TokenizerStats:
    frames: int = 0                 # frames pushed (decoded or given)
    groups: int = 0                 # groups closed
    canvases: int = 0               # canvases made
    resolution_changes: int = 0
    decode_s: float = 0.0           # time inside the decoder
    tokenize_s: float = 0.0         # time in saliency, grouping, selection and packing


MAX_FUTURE_WAIT = 16   # frames a sampled B-frame waits for its future reference (x264 mini-GOPs are <= 16 frames)


@dataclass
class _Scoring:
    """A sampled frame on its way into a group: its canvas image, its past reference and, once known, its scores."""

    frame: DecodedFrame
    yuv: np.ndarray
    key: bool
    past: DecodedFrame | None
    blocks: np.ndarray | None = None


class CodecTokenizer:
    """Streaming tokenizer for one camera stream.

    ``push(au, stamp)`` decodes one Annex-B access unit and returns the groups it closed; ``push_frame(frame)`` does
    the same for an already decoded frame (e.g. shared with SAM2); ``flush()`` drains the decoder and closes the open
    group; ``window()`` is the newest ``window_canvases`` worth of groups. A resolution change closes the open group
    and empties the window, so a window never mixes canvas sizes.

    Codec mode with ``config.structure == "official"`` (the default) works as the release's tool (see
    ``_push_sampled``): only sampled frames are scored and packed, in readiness groups of sampled frames. ``sampler``
    overrides the live ``RateSampler(config.sample_fps)`` (``tokenize_file`` passes the official offline plan), and
    ``offline=True`` holds every sampled frame until ``flush`` so the readiness threshold is the whole file's, as
    offline. Other modes and the "seed" structure see every frame:
    ``grouper`` overrides the mode's grouping (``tokenize_file`` passes a ``PlannedGrouper`` for fixed budgets).
    ``cut_grace``: frames a completed group waits for a cut before it is emitted (see ``_complete_open``).
    """

    def __init__(self, config: TokenizerConfig = TokenizerConfig(), *, fps: float | None = None,
                 codec: str = "h264", saliency: SaliencyConfig = SaliencyConfig(),
                 grouper: BitCostGrouper | FixedGrouper | PlannedGrouper | None = None, cut_grace: int = 2,
                 sampler: RateSampler | SetSampler | None = None, offline: bool = False):
        self.config, self.saliency_config, self.codec, self.fps_hint = config, saliency, codec, fps
        self.official = config.mode == "codec" and config.structure == "official"
        self.sampler = sampler if sampler is not None else RateSampler(config.sample_fps)
        self.offline = offline
        self._readiness: ReadinessGrouper | None = None
        self._estimator: BitCostEstimator | None = None
        self._sampled: list[FrameRecord] = []        # sampled frames of the open group(s)
        self._bits_log: list[tuple[int, int]] = []   # (frame, bits) of every frame since the first sampled one
        self._prev_full: np.ndarray | None = None    # full-resolution luma of the previous decoded frame
        self._refs = ReferenceHistory()               # the bit-cost estimate's prediction references
        self._waiting: list[_Scoring] = []            # sampled frames in display order, not yet in ``_sampled``
        if grouper is None:
            grouper = (FixedGrouper(config.uniform_group_frames) if config.mode == "uniform"
                       else BitCostGrouper(GroupingConfig.from_tokenizer(config)))
        self.grouper = grouper
        self.cut_grace = cut_grace if isinstance(grouper, BitCostGrouper) else 0   # only online grouping sees cuts
        self._held: list[FrameRecord] | None = None
        self._held_threshold = 0.0
        self._decoder = None
        self._window = WindowBuffer(config.window_canvases)
        self._grid: CanvasGrid | None = None
        self._source_size: tuple[int, int] | None = None
        self._scorer: SaliencyScorer | None = None
        self._prev_luma: np.ndarray | None = None
        self._open: list[FrameRecord] = []
        self._open_bits_threshold = 0.0
        self._next_group = 0
        self._mass_ema: float | None = None        # variable P allocation: running group saliency mass
        self._first_time: float | None = None
        self._last_time = 0.0
        self._counts = dict(frames=0, groups=0, canvases=0, resolution_changes=0)
        self._decode_s = 0.0
        self._tokenize_s = 0.0

    # --- public ---------------------------------------------------------------------------------------------------

    @property
    def decoder(self):
        """The owned ``StreamDecoder`` (created on first ``push``)."""
        if self._decoder is None:
            from ov2_ros.codec.decoder import StreamDecoder

            self._decoder = StreamDecoder(self.codec, threads=self.config.decoder_threads,
                                          thread_count=self.config.thread_count, fps=self.fps_hint)
            if self.official:    # only sampled frames are scored: the others' MVs are not copied out
                self._decoder.mv_filter = self.sampler.peek
        return self._decoder

    @property
    def frames_seen(self) -> int:
        return self._counts["frames"]

    @property
    def pending_frames(self) -> int:
        """Frames held for groups not emitted yet: at most ``max_group_frames + cut_grace`` (the memory bound), plus,
        official structure, the sampled frames behind a B-frame that waits for its future reference (at most
        ``MAX_FUTURE_WAIT`` frames)."""
        return len(self._open) + (len(self._held) if self._held else 0) + len(self._sampled) + len(self._waiting)

    @property
    def stats(self) -> TokenizerStats:
        return TokenizerStats(**self._counts, decode_s=self._decode_s, tokenize_s=self._tokenize_s)

    @property
    def canvas_size(self) -> tuple[int, int] | None:
        return self._grid.size if self._grid else None

    @property
    def source_size(self) -> tuple[int, int] | None:
        """(H_src, W_src) of the current stream."""
        return self._source_size

    @property
    def fps(self) -> float:
        """The fps hint, else measured from frame times, else 30."""
        if self.fps_hint:
            return float(self.fps_hint)
        n, span = self._counts["frames"], self._last_time - (self._first_time or 0.0)
        return (n - 1) / span if n > 1 and span > 0 else DEFAULT_FPS

    def push(self, au: bytes, stamp: Any = None) -> list[FrameGroup]:
        """Decode one access unit; the groups it closed (usually none). Decoder errors propagate unchanged
        (``BitstreamError``, ``DecodeError``) and leave the tokenizer's state as it was."""
        return self._push_all(self.decode(au, stamp))

    def decode(self, au: bytes, stamp: Any = None) -> list[DecodedFrame]:
        """The first half of ``push``: decode one access unit (timed into ``stats.decode_s``), tokenize nothing;
        ``push_frame`` each frame, in order, is the second half (``tokenize_file`` runs the halves on two threads)."""
        t0 = time.perf_counter()
        frames = self.decoder.decode(au, stamp)
        self._decode_s += time.perf_counter() - t0
        return frames

    def push_frame(self, frame: DecodedFrame) -> list[FrameGroup]:
        """Tokenize one decoded frame (output order); the groups it closed."""
        t0 = time.perf_counter()
        try:
            return self._push_frame(frame)
        finally:
            self._tokenize_s += time.perf_counter() - t0

    def flush(self) -> list[FrameGroup]:
        """End of stream: drain the decoder and close the open group."""
        closed: list[FrameGroup] = []
        if self._decoder is not None:
            t0 = time.perf_counter()
            frames = self._decoder.flush()
            self._decode_s += time.perf_counter() - t0
            closed += self._push_all(frames)
        t0 = time.perf_counter()
        closed += self._close_all()
        self._tokenize_s += time.perf_counter() - t0
        return closed

    def window(self) -> Any:
        """The newest closed groups within ``window_canvases``, as a ``CodecWindow``; None before the first group."""
        if self._grid is None:
            return None
        return self._window.window(self._grid.size, self._source_size, self.fps, self.config.patch_size)

    # --- internals ------------------------------------------------------------------------------------------------

    def _push_all(self, frames: list[DecodedFrame]) -> list[FrameGroup]:
        closed: list[FrameGroup] = []
        for f in frames:
            closed += self.push_frame(f)
        return closed

    def _push_frame(self, frame: DecodedFrame) -> list[FrameGroup]:
        closed: list[FrameGroup] = []
        size = (frame.height, frame.width)
        if size != self._source_size:
            if self._source_size is not None:
                closed += self._close_all()
                self._window.reset()
                self._counts["resolution_changes"] += 1
            self._start(size)
        grid = self._grid
        if self.official:
            closed += self._push_sampled(frame)
            self._count_frame(frame)
            return closed
        yuv = self._canvas_yuv(frame, grid)
        key = frame.key_frame or frame.pict_type == "I"
        change, blocks, luma = 0.0, None, None
        if self._scorer is not None:
            luma = self._scorer.analysis_luma(yuv[: grid.height])
            sal = self._scorer.score(luma, self._prev_luma, frame.mvs)
            change, blocks = sal.change, sal.blocks
        decision = self.grouper.push(frame.bits, key, change)
        if decision.boundary is Boundary.BEFORE:
            closed += self._close_before_cut()
        self._open.append(FrameRecord(frame.index, frame.time_s, frame.stamp, frame.bits, key, yuv, blocks,
                                      decision.billed_bits))
        self._open_bits_threshold = decision.threshold
        if decision.boundary is Boundary.AFTER:
            closed += self._complete_open(decision.threshold)
        elif self._held is not None and len(self._open) >= self.cut_grace:
            closed += self._release_held()
        self._prev_luma = luma
        self._count_frame(frame)
        return closed

    def _count_frame(self, frame: DecodedFrame) -> None:
        self._counts["frames"] += 1
        if self._first_time is None:
            self._first_time = frame.time_s
        self._last_time = frame.time_s

    # --- the official structure -----------------------------------------------------------------------------------

    def _push_sampled(self, frame: DecodedFrame) -> list[FrameGroup]:
        """One frame, official structure: a frame the sampler skips costs only its bits (kept for the group's
        ``frame_bits``) and, if it is a reference picture, a place in the reference history. A sampled frame is shrunk
        to the canvas, scored against its own references (``ov2_ros.codec.references``), and pushed to the readiness
        grouping. A sampled B-frame waits for its future reference, which comes out after it (at most a mini-GOP), and
        the frames sampled after it wait behind it, so the grouping sees them in display order."""
        key = frame.key_frame or frame.pict_type == "I"
        take = self.sampler.take(frame.index, frame.time_s, key)
        if self._estimator is not None:
            self._estimator.observe(frame.bits, key)     # every frame's bits, skipped ones too, set the running rate
        if take or self._sampled or self._waiting:
            self._bits_log.append((frame.index, frame.bits))
        if self._estimator is not None and frame.reference:
            for w in self._waiting:
                if w.blocks is None and decoded_before(frame, w.frame):
                    w.blocks = self._bitcost(w, future=frame)
        if take:
            w = _Scoring(frame, self._canvas_yuv(frame, self._grid), key, self._refs.past(frame))
            if self._estimator is None:
                w.blocks = self._saliency_blocks(frame, w.yuv, self._grid)
            elif not wants_future(frame):
                w.blocks = self._bitcost(w)
            self._waiting.append(w)
        self._refs.add(frame)
        self._prev_full = frame.luma
        return self._release_scored(frame.index)

    def _bitcost(self, w: _Scoring, future: DecodedFrame | None = None) -> np.ndarray:
        """The bit-cost estimate of a sampled frame from its past (and future) reference."""
        f, past = w.frame, w.past
        chroma = None
        if past is not None and (uv := chroma_planes(f.frame)) is not None and \
                (past_uv := chroma_planes(past.frame)) is not None:
            future_uv = chroma_planes(future.frame) if future is not None else None
            chroma = (uv, past_uv) + ((future_uv,) if future_uv is not None else ())
        return self._estimator.score(f.luma, None if past is None else past.luma, f.mvs, w.key, f.bits, chroma,
                                     None if future is None else future.luma)

    def _release_scored(self, now: int | None = None) -> list[FrameGroup]:
        """Move the scored head of ``_waiting`` into the open group(s). ``now``: the current frame index; a B-frame
        still waiting ``MAX_FUTURE_WAIT`` frames later (its future reference lost) is scored from its past alone.
        None: end of stream or size, everything is scored and released."""
        closed: list[FrameGroup] = []
        while self._waiting:
            w = self._waiting[0]
            if w.blocks is None:
                if now is not None and now - w.frame.index <= MAX_FUTURE_WAIT:
                    break
                w.blocks = self._bitcost(w)
            self._waiting.pop(0)
            f = w.frame
            self._sampled.append(FrameRecord(f.index, f.time_s, f.stamp, f.bits, w.key, w.yuv, w.blocks,
                                             float(f.bits)))
            if not self.offline:
                for n in self._readiness.push(w.blocks.reshape(-1)):
                    closed += self._emit_sampled(n)
        return closed

    def _saliency_blocks(self, frame: DecodedFrame, yuv: np.ndarray, grid: CanvasGrid) -> np.ndarray:
        """The seed's MV + residual saliency of a sampled frame against the frame decoded before it."""
        previous = None
        if self._prev_full is not None:
            previous = self._scorer.analysis_luma(resize_plane(self._prev_full, grid.height, grid.width))
        return self._scorer.score(self._scorer.analysis_luma(yuv[: grid.height]), previous, frame.mvs).blocks

    def _readiness_config(self) -> ReadinessConfig:
        cfg, grid = self.config, self._grid
        n_p = max(0, cfg.canvases_per_group - 1)
        return ReadinessConfig(min_frames=cfg.min_group_frames, max_frames=cfg.max_group_frames,
                               budget=n_p * grid.num_blocks, bins=max(1, min(3, n_p)), chunk=cfg.group_size)

    def _emit_sampled(self, n: int) -> list[FrameGroup]:
        """The next ``n`` sampled frames as a group: I-canvas from the first, P-canvases from the rest."""
        records, self._sampled = self._sampled[:n], self._sampled[n:]
        cfg, grid, gi = self.config, self._grid, self._next_group
        canvases = official_canvases(records, grid, gi, max(0, cfg.canvases_per_group - 1))
        start, end = records[0].index, records[-1].index + 1
        bits = np.array([b for f, b in self._bits_log if start <= f < end], dtype=np.int64)
        self._bits_log = [(f, b) for f, b in self._bits_log if f >= end]
        shown = {int(t) for c in canvases for t in c.frames}    # the I-canvas' frame may not be the first (bad)
        group = FrameGroup(
            index=gi, start_frame=start, end_frame=end, frame_bits=bits, threshold=float(self._readiness.threshold),
            canvases=tuple(canvases),
            frame_times={r.index: r.time_s for r in records if r.index in shown},
            frame_stamps={r.index: r.stamp for r in records if r.index in shown},
            frame_billed=None, sampled=np.array([r.index for r in records], dtype=np.int64),
            sampled_blocks=np.stack([r.blocks for r in records]))
        self._next_group += 1
        self._counts["groups"] += 1
        self._counts["canvases"] += len(canvases)
        self._window.add(group)
        return [group]

    def _close_sampled(self) -> list[FrameGroup]:
        """End of stream or size: the last groups (offline: every group, the threshold now known); a tail of fewer
        than ``min_group_frames`` sampled frames is dropped, as the release drops it."""
        if self._readiness is None:
            return []
        out = self._release_scored()
        if self.offline and self._sampled:
            blocks = [r.blocks.reshape(-1) for r in self._sampled]
            self._readiness = ReadinessGrouper(self._readiness.config,
                                               readiness_threshold(blocks, self._readiness.config))
            lengths = [n for b in blocks for n in self._readiness.push(b)]
        else:
            lengths = []
        lengths += self._readiness.finish()
        out += [g for n in lengths for g in self._emit_sampled(n)]
        self._sampled, self._bits_log = [], []
        return out

    def _start(self, size: tuple[int, int]) -> None:
        cfg = self.config
        self._source_size = size
        self._grid = CanvasGrid.for_source(size[0], size[1], cfg.patch_size, cfg.max_pixels)
        self._scorer = (None if cfg.mode == "uniform"
                        else SaliencyScorer(size[0], size[1], self._grid, self.saliency_config))
        self._prev_luma = None
        self.grouper.reset()
        if self.official:
            self._readiness = ReadinessGrouper(self._readiness_config())
            self._estimator = (None if cfg.scorer == "saliency" else BitCostEstimator(
                size[0], size[1], self._grid, BitCostConfig(shrink=None if cfg.scorer == "bitcost_half" else 1)))
            self._prev_full = None
            self._refs.reset()
            self.sampler.reset()

    @staticmethod
    def _canvas_yuv(frame: DecodedFrame, grid: CanvasGrid) -> np.ndarray:
        if frame.frame is not None:
            return canvas_yuv(frame.luma, frame.frame, grid)
        # a caller-decoded frame without its av.VideoFrame: luma only, neutral chroma (grey canvases)
        h, w = grid.size
        out = np.full((h * 3 // 2, w), 128, dtype=np.uint8)
        out[:h] = resize_plane(frame.luma, h, w)
        return out

    def _p_canvases_for(self, records: list[FrameRecord]) -> int:
        """P-canvases for this group: fixed, or (variable allocation) scaled by the group's saliency mass against
        the running mean mass, between 1 and twice the default, and within the window budget."""
        cfg = self.config
        n_p = max(0, cfg.canvases_per_group - 1)
        if not cfg.variable_p_canvases or n_p == 0:
            return n_p
        mass = float(sum(r.blocks.sum() for r in records[1:] if r.blocks is not None))
        mean = self._mass_ema if self._mass_ema else mass
        self._mass_ema = mass if self._mass_ema is None else 0.8 * self._mass_ema + 0.2 * mass
        if mean <= 0:
            return 1
        return int(np.clip(round(n_p * mass / mean), 1, min(2 * n_p, cfg.window_canvases - 1)))

    # Group closing. A group completed by its threshold is *held* for ``cut_grace`` frames before it is emitted: if a
    # cut comes within them, those few frames join the held group instead of forming a group of their own (encoders
    # end a GOP with a costly P frame, which often completes a group one frame before the next shot's IDR: on
    # bikes.mp4 that made 4 one-frame groups of 19). Emission lags completion by ``cut_grace`` frames.

    def _complete_open(self, threshold: float) -> list[FrameGroup]:
        records, self._open = self._open, []
        out = self._release_held()
        if self.cut_grace > 0:
            self._held, self._held_threshold = records, threshold
            return out
        return out + self._emit(records, threshold)

    def _release_held(self) -> list[FrameGroup]:
        if self._held is None:
            return []
        records, self._held = self._held, None
        return self._emit(records, self._held_threshold)

    def _close_before_cut(self) -> list[FrameGroup]:
        if self._held is not None and len(self._held) + len(self._open) <= self.config.max_group_frames:
            records, threshold = self._held + self._open, self._held_threshold
            self._held, self._open = None, []
            return self._emit(records, threshold)
        return self._close_all()

    def _close_all(self) -> list[FrameGroup]:
        """Emit the held and the open group (end of stream, resolution change)."""
        if self.official:
            return self._close_sampled()
        out = self._release_held()
        records, self._open = self._open, []
        return out + self._emit(records, self._open_bits_threshold)

    def _emit(self, records: list[FrameRecord], threshold: float) -> list[FrameGroup]:
        if not records:
            return []
        cfg, grid, gi = self.config, self._grid, self._next_group
        if cfg.mode == "uniform":
            canvases = uniform_canvases(records, grid, gi, cfg.canvases_per_group)
        elif cfg.mode == "hybrid":
            canvases = hybrid_canvases(records, grid, gi, cfg.canvases_per_group, cfg.hybrid_full_frames,
                                       cfg.attenuation_lambda)
        else:
            canvases = codec_canvases(records, grid, gi, self._p_canvases_for(records), cfg.attenuation_lambda)
        shown = {records[0].index} | {int(t) for c in canvases for t in c.frames}
        group = FrameGroup(
            index=gi, start_frame=records[0].index, end_frame=records[-1].index + 1,
            frame_bits=np.array([r.bits for r in records], dtype=np.int64), threshold=float(threshold),
            canvases=tuple(canvases),
            frame_times={r.index: r.time_s for r in records if r.index in shown},
            frame_stamps={r.index: r.stamp for r in records if r.index in shown},
            frame_billed=np.array([r.billed for r in records], dtype=np.float64))
        self._next_group += 1
        self._counts["groups"] += 1
        self._counts["canvases"] += len(canvases)
        self._window.add(group)
        return [group]


# --- whole files ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TokenizeResult:
    """Every group of a file, with what the CLI, benchmarks and evaluation report about it."""

    groups: tuple[FrameGroup, ...]
    frames_total: int                 # frames decoded
    fps: float
    source_size: tuple[int, int]      # (H_src, W_src) of the last frame
    canvas_size: tuple[int, int]      # (H, W)
    frame_bits: np.ndarray            # (frames_total,) bits per frame, output order
    timings: dict[str, float]         # decode_s, tokenize_s, total_s

    @property
    def canvases(self) -> tuple:
        return tuple(c for g in self.groups for c in g.canvases)

    @property
    def patch_positions(self) -> np.ndarray:
        """(P, 3) int32 over all canvases, canvas order (padding rows included)."""
        cs = self.canvases
        return np.concatenate([c.positions for c in cs]).astype(np.int32) if cs else np.zeros((0, 3), np.int32)

    @property
    def tokens(self) -> int:
        """LLM tokens after the 2x2 merger, padding included (the model is fed whole canvases)."""
        return sum(c.num_patches for c in self.canvases) // 4

    @property
    def selected_frames(self) -> list[int]:
        """Sorted frames with at least one patch on some canvas."""
        t = self.patch_positions[:, 0]
        return sorted(int(x) for x in np.unique(t[t >= 0]))

    def summary(self) -> dict[str, Any]:
        """The ``ov2-ros tokenize --json`` record (DESIGN.md contract 2)."""
        pos = self.patch_positions
        return {
            "frames_total": self.frames_total, "fps": self.fps, "tokens": self.tokens,
            "canvases": len(self.canvases), "selected_frames": self.selected_frames,
            "selected_patches": int((pos[:, 0] >= 0).sum()),
            "groups": [{"start_frame": g.start_frame, "end_frame": g.end_frame} for g in self.groups],
            "canvas_size": list(self.canvas_size), "source_size": list(self.source_size),
            "timings": dict(self.timings),
        }


def budget_grouper(path, config: TokenizerConfig, canvases: int, codec: str) -> PlannedGrouper:
    """A ``PlannedGrouper`` that cuts the file into ``canvases / canvases_per_group`` groups.

    Codec and hybrid modes: groups of equal billed bit-cost (``plan_group_ends``: the window's bit-cost rule applied
    to the whole file at once), so motion gets more, shorter groups; every encoder scene-cut keyframe
    (``scene_cut_keyframes``) opens a group, as a cut does online. Uniform mode: equal frame counts, so its
    ``canvases`` full frames are spread evenly over the file. Reads packet sizes only (no decoding); frames before
    the first keyframe are skipped, as the decoder's entry gate skips them.
    """
    from ov2_ros.codec.grouping import billed_bits, plan_group_ends, scene_cut_keyframes
    from ov2_ros.codec.nal import is_entry_point, split_nal_units
    from ov2_ros.codec.source import iter_access_units

    sizes, keys, times = [], [], []
    for au, pts in iter_access_units(path):
        key = is_entry_point(split_nal_units(au), codec)
        if keys or key:
            sizes.append(8 * len(au))
            keys.append(key)
            times.append(pts)
    order = np.argsort(np.asarray(times), kind="stable")     # decode order -> output order (B-frames)
    bits, key = np.asarray(sizes)[order], np.asarray(keys, dtype=bool)[order]
    n_groups = canvases // config.canvases_per_group
    if config.mode == "uniform":
        billed = np.ones(len(bits))
    else:
        billed = billed_bits(bits, key)
    cuts = scene_cut_keyframes(key) if config.mode != "uniform" else []
    ends = plan_group_ends(billed, n_groups, config.min_group_frames, cuts)
    starts = [0] + ends[:-1]
    billed[starts] = 0.0                                      # anchors are unbilled, as online
    cum = np.concatenate([[0.0], np.cumsum(billed)])
    return PlannedGrouper(ends, [float(cum[e] - cum[s]) for s, e in zip(starts, ends)], billed)


def official_plan(path, config: TokenizerConfig, canvases: int, codec: str) -> list[int]:
    """The frames the official tool samples from ``path`` for ``canvases`` canvases (``sampling.official_frame_ids``),
    from the file's packets: their count and which are keyframes (numbered in file order, as the tool reads them off
    the MP4 sample table). Frames before the first keyframe are skipped, as the decoder's entry gate skips them."""
    from ov2_ros.codec.nal import is_entry_point, split_nal_units
    from ov2_ros.codec.sampling import official_frame_ids
    from ov2_ros.codec.source import iter_access_units

    keys: list[bool] = []
    for au, _ in iter_access_units(path):
        key = is_entry_point(split_nal_units(au), codec)
        if keys or key:
            keys.append(key)
    return official_frame_ids(len(keys), canvases, np.flatnonzero(keys).tolist(), config.canvases_per_group,
                              config.group_size)


def decoded_ahead(tok: CodecTokenizer, aus, depth: int = 8):
    """The frames of each (AU, stamp) of ``aus``, decoded by ``tok.decode`` on a worker thread up to ``depth`` AUs
    ahead of the caller, who tokenizes them meanwhile (FFmpeg and OpenCV release the GIL, so the two overlap on two
    cores; the frames and their order are those of ``tok.push`` per AU). The worker's errors are raised here, and
    leaving the loop early stops the worker."""
    import queue
    import threading

    done, stop = object(), threading.Event()
    q: queue.Queue = queue.Queue(maxsize=depth)

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for au, stamp in aus:
                if not put(tok.decode(au, stamp)):
                    return
        except BaseException as exc:          # handed to the caller's thread and raised there
            put(exc)
            return
        put(done)

    worker = threading.Thread(target=work, name="ov2-decode-ahead", daemon=True)
    worker.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def tokenize_file(path, config: TokenizerConfig = TokenizerConfig(), canvases: int | None = None,
                  progress=None) -> TokenizeResult:
    """Feed a video file's packets one by one through a ``CodecTokenizer`` and keep every group.

    ``canvases=None``: the streaming rules as configured (online grouping; the number of canvases follows the video).
    ``canvases=N``: a fixed budget over the whole file, for comparisons at equal tokens: N must be a multiple of
    ``canvases_per_group``; the file is cut into N / canvases_per_group groups (see ``budget_grouper``) and each
    gives its canvases, so N canvases result (fewer only if the file has fewer frames than groups).
    ``progress``: called with 1 after each packet (e.g. ``tqdm.update``).
    """
    from ov2_ros.codec.errors import VideoFileError
    from ov2_ros.codec.source import iter_access_units, probe
    from ov2_ros.errors import ConfigError

    t0 = time.perf_counter()
    info = probe(path)
    if info.codec not in ("h264", "hevc"):
        from ov2_ros.codec.errors import UnsupportedFormatError

        raise UnsupportedFormatError(f"{path}: video codec is {info.codec}, only h264 and hevc can be tokenized")
    if info.b_frames and info.codec == "h264" and config.mode != "uniform" and config.decoder_threads == "frame":
        # FFmpeg's frame threads export some B-frames' MVs from the wrong picture, differently from run to run
        # (bikes.mp4: 11-20 of its B-frames, a third to a half of their MVs replaced; their pictures are right); one
        # thread per picture exports them all. bench/fidelity.py, bikes.mp4: P-block Jaccard 0.40 / 0.34 at 8 / 32
        # canvases every run, against 0.37-0.40 / 0.33-0.34 from run to run with frame threads.
        config = replace(config, decoder_threads="slice")
    grouper = sampler = None
    if canvases is not None:
        if canvases < config.canvases_per_group or canvases % config.canvases_per_group:
            raise ConfigError(f"--canvases {canvases} must be a positive multiple of canvases_per_group "
                              f"({config.canvases_per_group})")
        config = replace(config, window_canvases=max(canvases, config.canvases_per_group))
        if config.mode == "codec" and config.structure == "official":
            sampler = SetSampler(official_plan(path, config, canvases, info.codec))
        else:
            grouper = budget_grouper(path, config, canvases, info.codec)
    tok = CodecTokenizer(config, fps=info.fps, codec=info.codec, grouper=grouper, sampler=sampler,
                         offline=sampler is not None)
    groups: list[FrameGroup] = []
    bits: list[int] = []
    for frames in decoded_ahead(tok, iter_access_units(path)):
        for frame in frames:
            groups += tok.push_frame(frame)
        if progress is not None:
            progress(1)
    groups += tok.flush()
    if not groups:
        raise VideoFileError(f"{path}: no decodable frames")
    for g in groups:
        bits.extend(int(b) for b in g.frame_bits)
    st = tok.stats
    return TokenizeResult(
        groups=tuple(groups), frames_total=st.frames, fps=float(info.fps), source_size=tok.source_size,
        canvas_size=tok.canvas_size, frame_bits=np.asarray(bits, dtype=np.int64),
        timings={"decode_s": st.decode_s, "tokenize_s": st.tokenize_s, "total_s": time.perf_counter() - t0})
