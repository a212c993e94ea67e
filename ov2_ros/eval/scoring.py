"""Scores one replay (results.json + masks/) against its ground truth (one ``VideoAnnotation``).

Predictions are merged across the replay's overlapping windows the way a live subscriber would keep them: the
newest window that covers a moment decides what happened then. For events and spans, a window replaces whatever
older windows said about its own time range (predictions outside the range the window saw are dropped); for
per-frame points and masks, the newest window that mentions a frame wins. Besides the model's metrics, model-free
*tokenization* figures say how the tokens relate to the GT onsets: with tiny random weights those are the only
meaningful comparison.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ov2_ros.eval import metrics as m
from ov2_ros.eval.annotations import VideoAnnotation
from ov2_ros.eval.errors import ResultsError
from ov2_ros.eval.results import MASKS_DIR, ReplayResults, WindowRecord



@dataclass(frozen=True)
class Evaluation:
    name: str
    task: str
    mode: str
    metrics: dict[str, float]                    # flat name -> value (see metric_names in the report)
    predicted_events_s: tuple[float, ...] = ()
    predicted_spans_s: tuple[tuple[float, float], ...] = ()
    point_errors_px: dict[int, float] = field(default_factory=dict)   # GT-point frame -> px (inf: none predicted)
    onset_frames: tuple[int, ...] = ()           # GT onsets as frame indices (jump events / span starts)


# ---------------------------------------------------------------- predictions merged across windows

def window_range_s(results: ReplayResults, window: WindowRecord) -> tuple[float, float]:
    """Seconds (annotation time base) from the window's first to its last frame."""
    last = min(window.end_frame, results.num_frames) - 1
    return results.frame_time_s(window.start_frame), results.frame_time_s(max(window.start_frame, last))


def predicted_events(results: ReplayResults) -> list[float]:
    """Start times of the answered spans; each window replaces the older windows' events inside its range."""
    events: list[float] = []
    frame_s = _frame_interval_s(results)
    for window, answer in results.answers():
        lo, hi = window_range_s(results, window)
        events = [t for t in events if not lo <= t <= hi] + [s.start_s for s in _answered_spans(answer, lo, frame_s)
                                                             if lo <= s.start_s <= hi]
    return sorted(events)


def predicted_spans(results: ReplayResults) -> list[tuple[float, float]]:
    """Disjoint sorted spans; each window replaces the older windows' spans inside its range (clipped to it).

    Spans run from the first to the last frame of what they cover, so spans on consecutive frames (a gap of at most
    one frame interval, as between two back-to-back windows) are one span: without that, a stream answered in short
    windows could never score a span longer than one window."""
    spans: list[tuple[float, float]] = []
    frame_s = _frame_interval_s(results)
    for window, answer in results.answers():
        lo, hi = window_range_s(results, window)
        kept = [(s, min(e, lo)) for s, e in spans if s < lo] + [(max(s, hi), e) for s, e in spans if e > hi]
        new = [(max(lo, min(s.start_s, s.end_s)), min(hi, max(s.start_s, s.end_s)))
               for s in _answered_spans(answer, lo, frame_s)]
        spans = kept + [(a, b) for a, b in new if a <= b]
    gap = frame_s * 1.5
    merged: list[list[float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1] + gap:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def _answered_spans(answer, first_s: float, frame_s: float):
    """The answer's spans without the "nothing in this window" answer: a zero-length span at the window's first
    frame (what training renders when a window holds no span); ``frame_s``: the stream's frame interval."""
    return [s for s in answer.spans
            if not (abs(s.end_s - s.start_s) < 1e-9 and abs(s.start_s - first_s) < frame_s / 2)]


def _frame_interval_s(results: ReplayResults) -> float:
    stamps = np.asarray(results.frame_stamps_ns, np.int64)
    return float(np.median(np.diff(stamps))) / 1e9 if len(stamps) > 1 else 0.0


def predicted_points(results: ReplayResults) -> dict[int, np.ndarray]:
    """Frame -> (N, 2) points (tracks and point answers); the newest window that mentions a frame wins."""
    out: dict[int, np.ndarray] = {}
    for _, answer in results.answers():
        per_frame: dict[int, list[tuple[float, float]]] = {}
        for t in answer.tracks:
            per_frame.setdefault(t.frame, []).append((t.x, t.y))
        for p in answer.points:
            per_frame.setdefault(p.frame, []).append((p.x, p.y))
        out.update({f: np.asarray(pts, float) for f, pts in per_frame.items()})
    return out


def predicted_mask(replay_dir: Path, frame: int, shape: tuple[int, int]) -> np.ndarray:
    """The replay's SAM2 mask of ``frame`` (bool), or an empty mask when none was made for it."""
    import cv2

    path = replay_dir / MASKS_DIR / f"{frame:06d}.png"
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) if path.is_file() else None
    return img > 0 if img is not None and img.shape == shape else np.zeros(shape, bool)


def frame_at(results: ReplayResults, t_s: float) -> int:
    """The frame whose source time is nearest to ``t_s``."""
    times = (np.asarray(results.frame_stamps_ns, np.int64) - results.frame_stamps_ns[0]) / 1e9
    return int(np.argmin(np.abs(times - t_s)))


# ---------------------------------------------------------------- scoring

def evaluate(results: ReplayResults, gt: VideoAnnotation, replay_dir: Path | None = None) -> Evaluation:
    """Every metric that applies to ``gt.task``, plus tokenization and latency figures."""
    if results.num_frames == 0:
        raise ResultsError(f"replay of {results.bag} decoded no frames (no IDR with SPS/PPS on {results.topic}?); "
                           "nothing to score")
    scores: dict[str, float] = {}
    extra: dict[str, Any] = {}
    if gt.task == "jump":
        events = predicted_events(results)
        scores["jumpscore"] = m.jumpscore(events, gt.events_s)
        for tol in m.JUMPSCORE_TOLERANCES_S:
            scores[f"ap@{tol:.1f}s"] = m.event_ap(events, gt.events_s, tol)
        extra["predicted_events_s"] = tuple(events)
        onsets = gt.events_s
    elif gt.task == "ground":
        spans = predicted_spans(results)
        g = m.grounding_scores([m.best_span_iou(spans, s) for s in gt.spans_s])
        scores["miou"] = g.miou
        scores.update({f"r@{k:.1f}": v for k, v in g.recall_at.items()})
        extra["predicted_spans_s"] = tuple(spans)
        onsets = tuple(s for s, _ in gt.spans_s)
    else:
        scores_t, extra_t = _track_scores(results, gt, replay_dir)
        scores.update(scores_t)
        extra.update(extra_t)
        onsets = ()
    onset_frames = tuple(frame_at(results, t) for t in onsets if t <= results.frame_time_s(results.num_frames - 1))
    scores.update(tokenization_scores(results, onset_frames))
    latencies = [w.latency_s for w in results.windows if w.answer is not None]
    if latencies:
        scores.update({f"latency_{k}_s" if k != "n" else "windows": v
                       for k, v in m.latency_percentiles(latencies).items()})
    return Evaluation(results.name, gt.task, results.mode, scores, onset_frames=onset_frames, **extra)


def _track_scores(results: ReplayResults, gt: VideoAnnotation,
                  replay_dir: Path | None) -> tuple[dict[str, float], dict[str, Any]]:
    pred = predicted_points(results)
    scores: dict[str, float] = {}
    extra: dict[str, Any] = {}
    if gt.points:
        r = gt.point_radius_px
        # any point farther than r from every GT point is outside every disc, so this canvas is large enough
        h = int(math.ceil(max(y for _, y in gt.points.values()) + r)) + 2
        w = int(math.ceil(max(x for x, _ in gt.points.values()) + r)) + 2
        s = m.point_in_mask_scores(pred, {f: m.disc_mask(xy, r, (h, w)) for f, xy in gt.points.items()})
        scores.update(point_precision=s.precision, point_recall=s.recall, point_f1=s.f1)
        errors = {f: m.nearest_point_error(pred.get(f, np.zeros((0, 2))), xy) for f, xy in gt.points.items()}
        finite = [e for e in errors.values() if math.isfinite(e)]
        scores["point_error_median_px"] = float(np.median(finite)) if finite else math.inf
        extra["point_errors_px"] = errors
    if gt.masks:
        gt_masks = {f: gt.load_mask(f) for f in gt.masks}
        s = m.point_in_mask_scores(pred, gt_masks)
        scores.update(mask_point_precision=s.precision, mask_point_recall=s.recall, mask_point_f1=s.f1)
        if replay_dir is not None:
            jf = m.j_and_f([(predicted_mask(replay_dir, f, g.shape), g) for f, g in gt_masks.items()])
            scores.update(j=jf.j, f=jf.f, jf=jf.jf)
    return scores, extra


def tokenization_scores(results: ReplayResults, onset_frames: tuple[int, ...], near: int = 2) -> dict[str, float]:
    """Model-free figures: tokens spent, and how they relate to the GT onsets (an onset counts within ``near`` frames).

    ``onsets_on_selected`` / ``onsets_within_N``: onsets whose frame (or a neighbour) gave tokens to some canvas.
    ``onsets_at_group_start``: onsets where a group starts, so the new scene is an I-canvas anchor, seen whole.
    ``onset_token_density``: the share of tokens on frames near onsets over the share of such frames (1 = spread
    evenly, > 1 = tokens gather at the onsets).
    """
    selected = set(results.selected_frames)
    per_frame: dict[int, float] = {}
    for g in results.groups:
        for f, n in g.tokens_per_frame.items():
            per_frame[f] = per_frame.get(f, 0.0) + n
    tokens = sum(per_frame.values())
    out = {"tokens_total": float(tokens), "frames_selected": float(len(selected)),
           "tokens_per_window": float(np.mean([w.tokens for w in results.windows])) if results.windows else 0.0}
    if onset_frames:
        def near_any(frames: set[int], f: int) -> bool:
            return any(f + d in frames for d in range(-near, near + 1))

        starts = {g.start_frame for g in results.groups}
        around = {f + d for f in onset_frames for d in range(-near, near + 1) if 0 <= f + d < results.num_frames}
        out["onsets_on_selected"] = sum(f in selected for f in onset_frames) / len(onset_frames)
        out[f"onsets_within_{near}"] = sum(near_any(selected, f) for f in onset_frames) / len(onset_frames)
        out["onsets_at_group_start"] = sum(near_any(starts, f) for f in onset_frames) / len(onset_frames)
        if tokens and results.num_frames:
            share = sum(per_frame.get(f, 0.0) for f in around) / tokens
            out["onset_token_density"] = share / (len(around) / results.num_frames)
    return out


def json_metrics(metrics: dict[str, float]) -> dict[str, float | None]:
    """Metrics for strict JSON: a non-finite value (e.g. an error with nothing predicted) becomes null."""
    return {k: (v if math.isfinite(v) else None) for k, v in metrics.items()}


def aggregate(evaluations: list[Evaluation]) -> dict[str, float]:
    """Mean of each metric over the videos that have it (JumpScore mAP = mean of per-video JumpScores)."""
    names = sorted({k for e in evaluations for k in e.metrics})
    return {k: float(np.mean([e.metrics[k] for e in evaluations if k in e.metrics])) for k in names}
