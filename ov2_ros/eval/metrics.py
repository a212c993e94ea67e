"""The paper's metrics, in numpy (and OpenCV for mask boundaries). Pure functions over plain arrays.

Times are seconds; masks are boolean (H, W) arrays; points are (N, 2) arrays of (x, y) pixels.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

JUMPSCORE_TOLERANCES_S = (0.1, 0.2, 0.3)
GROUNDING_IOU_THRESHOLDS = (0.3, 0.5, 0.7)
DAVIS_BOUND_TH = 0.008          # DAVIS boundary tolerance: a fraction of the image diagonal
LATENCY_PERCENTILES = (50, 90, 95, 99)


# ---------------------------------------------------------------- JumpScore (event onsets)

def _greedy_match(pred_s: Sequence[float], gt_s: Sequence[float], tolerance_s: float) -> list[bool]:
    """For predictions taken in the given order, whether each claims the nearest still-free GT within tolerance."""
    free = list(gt_s)
    hits = []
    for t in pred_s:
        if not free:
            hits.append(False)
            continue
        dist = [abs(t - g) for g in free]
        k = int(np.argmin(dist))
        hit = dist[k] <= tolerance_s + 1e-9     # inclusive, robust to float noise in frame times
        if hit:
            free.pop(k)
        hits.append(hit)
    return hits


def event_ap(pred_s: Sequence[float], gt_s: Sequence[float], tolerance_s: float,
             scores: Sequence[float] | None = None) -> float:
    """Average precision of predicted event times at one tolerance: AP = sum_k P_k * (R_k - R_{k-1}).

    Predictions are ranked by ``scores`` (descending, stable) or taken in the given order, each matched greedily to
    the nearest unmatched GT within ``tolerance_s``. Empty GT: 1.0 if nothing was predicted, else 0.0.
    """
    if scores is not None and len(scores) != len(pred_s):
        raise ValueError(f"{len(scores)} scores for {len(pred_s)} predictions")
    if not gt_s:
        return 1.0 if not pred_s else 0.0
    order = np.argsort(-np.asarray(scores, float), kind="stable") if scores is not None else range(len(pred_s))
    hits = _greedy_match([pred_s[i] for i in order], gt_s, tolerance_s)
    ap, tp, prev_recall = 0.0, 0, 0.0
    for k, hit in enumerate(hits, start=1):
        if hit:
            tp += 1
            recall = tp / len(gt_s)
            ap += (tp / k) * (recall - prev_recall)
            prev_recall = recall
    return ap


def jumpscore(pred_s: Sequence[float], gt_s: Sequence[float], scores: Sequence[float] | None = None,
              tolerances_s: Sequence[float] = JUMPSCORE_TOLERANCES_S) -> float:
    """One sample's JumpScore: the mean of ``event_ap`` over the tolerances."""
    return float(np.mean([event_ap(pred_s, gt_s, tol, scores) for tol in tolerances_s]))


def jumpscore_map(samples: Sequence[tuple[Sequence[float], Sequence[float]]],
                  tolerances_s: Sequence[float] = JUMPSCORE_TOLERANCES_S) -> float:
    """JumpScore mAP over ``(pred_s, gt_s)`` samples: mean over tolerances, then over samples."""
    if not samples:
        raise ValueError("jumpscore_map needs at least one sample")
    return float(np.mean([jumpscore(p, g, tolerances_s=tolerances_s) for p, g in samples]))


# ---------------------------------------------------------------- temporal grounding

def span_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """1-D IoU of two [start, end] spans; two identical zero-length spans count as 1."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    if union <= 0:
        return 1.0 if a == b else 0.0
    return inter / union


def best_span_iou(pred: Sequence[tuple[float, float]], gt: tuple[float, float]) -> float:
    """The IoU of the predicted span that best overlaps ``gt`` (0 with no predictions)."""
    return max((span_iou(p, gt) for p in pred), default=0.0)


@dataclass(frozen=True)
class GroundingScores:
    miou: float
    recall_at: dict[float, float]     # IoU threshold -> fraction of GT spans reaching it
    ious: tuple[float, ...]           # per GT span


def grounding_scores(ious: Sequence[float],
                     thresholds: Sequence[float] = GROUNDING_IOU_THRESHOLDS) -> GroundingScores:
    """mIoU and R@threshold from per-query IoUs (R@k counts IoU >= k)."""
    if not ious:
        raise ValueError("grounding_scores needs at least one IoU")
    arr = np.asarray(ious, float)
    return GroundingScores(miou=float(arr.mean()),
                           recall_at={float(k): float((arr >= k - 1e-12).mean()) for k in thresholds},
                           ious=tuple(float(x) for x in arr))


# ---------------------------------------------------------------- tracking points vs GT regions

@dataclass(frozen=True)
class PointScores:
    precision: float      # predicted points (on annotated frames) that land inside the GT region
    recall: float         # annotated frames with an object that have >= 1 predicted point inside it
    f1: float
    num_points: int
    num_frames: int


def f1_score(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def points_in_mask(points_xy: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(N,) bool: which (x, y) points fall on a True pixel (rounded to the nearest pixel; outside the image = False)."""
    pts = np.asarray(points_xy, float).reshape(-1, 2)
    col, row = np.rint(pts[:, 0]).astype(int), np.rint(pts[:, 1]).astype(int)
    h, w = mask.shape
    ok = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    out = np.zeros(len(pts), bool)
    out[ok] = mask[row[ok], col[ok]]
    return out


def point_in_mask_scores(pred: dict[int, np.ndarray], gt_masks: dict[int, np.ndarray]) -> PointScores:
    """Point-in-mask precision/recall/F1 over the annotated frames (keys of ``gt_masks``).

    ``pred`` maps frame -> (N, 2) predicted points. Frames whose GT mask is empty count against precision (any
    point there is a false positive) but not towards recall. No points at all: precision is 1 if there was nothing
    to find, else 0; no object on any frame: recall is 1.
    """
    inside = total = found = present = 0
    for frame, mask in gt_masks.items():
        pts = np.asarray(pred.get(frame, np.zeros((0, 2))), float).reshape(-1, 2)
        hits = points_in_mask(pts, mask)
        inside += int(hits.sum())
        total += len(pts)
        if mask.any():
            present += 1
            found += int(hits.any())
    precision = inside / total if total else (1.0 if present == 0 else 0.0)
    recall = found / present if present else 1.0
    return PointScores(precision, recall, f1_score(precision, recall), total, len(gt_masks))


def disc_mask(center_xy: tuple[float, float], radius_px: float, shape: tuple[int, int]) -> np.ndarray:
    """A filled disc, for GT given as points: a predicted point within ``radius_px`` counts as inside."""
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (xx - center_xy[0]) ** 2 + (yy - center_xy[1]) ** 2 <= radius_px ** 2


def nearest_point_error(pred_xy: np.ndarray, gt_xy: tuple[float, float]) -> float:
    """Pixel distance from a GT point to the closest predicted point (inf with none)."""
    pts = np.asarray(pred_xy, float).reshape(-1, 2)
    if len(pts) == 0:
        return math.inf
    return float(np.min(np.hypot(pts[:, 0] - gt_xy[0], pts[:, 1] - gt_xy[1])))


# ---------------------------------------------------------------- masks: J (IoU) and F (DAVIS boundary)

def jaccard(pred: np.ndarray, gt: np.ndarray) -> float:
    """Region similarity J = |pred & gt| / |pred | gt|; two empty masks score 1."""
    pred, gt = _same_shape_bool(pred, gt)
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """DAVIS-style one-pixel boundary: pixels (either side of an edge) that differ from their right, lower or
    lower-right neighbour. The image border is not an edge: beyond-border neighbours replicate the last row/col."""
    m = np.asarray(mask, bool)
    padded = np.pad(m, ((0, 1), (0, 1)), mode="edge")
    right, down, diag = padded[:-1, 1:], padded[1:, :-1], padded[1:, 1:]
    return (m != right) | (m != down) | (m != diag)


def boundary_f(pred: np.ndarray, gt: np.ndarray, bound_th: float = DAVIS_BOUND_TH) -> float:
    """Contour accuracy F: boundary precision/recall with a tolerance of ``bound_th`` x diagonal pixels
    (or ``bound_th`` pixels if >= 1), as the DAVIS benchmark defines it. Two empty masks score 1."""
    import cv2

    pred, gt = _same_shape_bool(pred, gt)
    radius = int(bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(*pred.shape)))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    pb, gb = boundary_map(pred), boundary_map(gt)
    n_p, n_g = int(pb.sum()), int(gb.sum())
    if n_p == 0 and n_g == 0:
        return 1.0
    if n_p == 0 or n_g == 0:
        return 0.0
    p_dil = cv2.dilate(pb.astype(np.uint8), disk).astype(bool)
    g_dil = cv2.dilate(gb.astype(np.uint8), disk).astype(bool)
    precision = float((pb & g_dil).sum() / n_p)
    recall = float((gb & p_dil).sum() / n_g)
    return f1_score(precision, recall)


@dataclass(frozen=True)
class MaskScores:
    j: float              # mean J over frames
    f: float              # mean F over frames
    jf: float             # (J + F) / 2
    per_frame_j: tuple[float, ...]
    per_frame_f: tuple[float, ...]


def j_and_f(pairs: Sequence[tuple[np.ndarray, np.ndarray]], bound_th: float = DAVIS_BOUND_TH) -> MaskScores:
    """J&F over ``(pred, gt)`` mask pairs (one per annotated frame; pass an empty pred where none was made)."""
    if not pairs:
        raise ValueError("j_and_f needs at least one (pred, gt) mask pair")
    js = tuple(jaccard(p, g) for p, g in pairs)
    fs = tuple(boundary_f(p, g, bound_th) for p, g in pairs)
    j, f = float(np.mean(js)), float(np.mean(fs))
    return MaskScores(j, f, (j + f) / 2, js, fs)


def _same_shape_bool(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a).astype(bool), np.asarray(b).astype(bool)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"masks must be 2-D and the same shape, got {a.shape} and {b.shape}")
    return a, b


# ---------------------------------------------------------------- latency

def latency_percentiles(latencies_s: Sequence[float],
                        percentiles: Sequence[int] = LATENCY_PERCENTILES) -> dict[str, float]:
    """``{"p50": ..., "p90": ..., "mean": ..., "max": ..., "n": ...}`` in seconds (linear interpolation)."""
    arr = np.asarray(latencies_s, float)
    if arr.size == 0:
        raise ValueError("latency_percentiles needs at least one latency")
    out = {f"p{p}": float(np.percentile(arr, p)) for p in percentiles}
    out.update(mean=float(arr.mean()), max=float(arr.max()), n=int(arr.size))
    return out
