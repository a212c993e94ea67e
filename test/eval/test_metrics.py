"""Each metric against cases worked out by hand (the arithmetic is in the comments)."""
import math

import numpy as np
import pytest

from ov2_ros.eval import metrics as m


# ---------------------------------------------------------------- JumpScore

def test_event_ap_hand_case_per_tolerance():
    gt, pred = [1.0, 2.0, 3.0], [1.05, 2.25, 5.0]
    # 0.1 s and 0.2 s: only 1.05 hits (P=1, dR=1/3); 0.3 s: 2.25 also hits at rank 2 (P=2/2, dR=1/3)
    assert m.event_ap(pred, gt, 0.1) == pytest.approx(1 / 3)
    assert m.event_ap(pred, gt, 0.2) == pytest.approx(1 / 3)
    assert m.event_ap(pred, gt, 0.3) == pytest.approx(2 / 3)
    assert m.jumpscore(pred, gt) == pytest.approx(4 / 9)


def test_event_ap_false_positive_before_hit_costs_precision():
    # rank 1 misses, rank 2 hits: AP = (1/2) * 1
    assert m.event_ap([1.5, 1.0], [1.0], 0.1) == pytest.approx(0.5)
    # scores re-rank: the hit goes first, the later miss adds no recall -> AP = 1
    assert m.event_ap([1.5, 1.0], [1.0], 0.1, scores=[0.1, 0.9]) == pytest.approx(1.0)


def test_event_ap_greedy_match_is_one_to_one():
    # both predictions are nearest to GT 1.0; the first takes it, the second is a false positive -> AP = 1*(1/2)
    assert m.event_ap([1.0, 1.02], [1.0, 2.0], 0.1) == pytest.approx(0.5)
    # tolerance is inclusive
    assert m.event_ap([1.3], [1.0], 0.3) == pytest.approx(1.0)


def test_jumpscore_empty_cases():
    assert m.jumpscore([], []) == 1.0           # nothing to find, nothing claimed
    assert m.jumpscore([1.0], []) == 0.0
    assert m.jumpscore([], [1.0]) == 0.0


def test_jumpscore_map_means_over_samples():
    samples = [([1.05, 2.25, 5.0], [1.0, 2.0, 3.0]), ([], []), ([0.0], [4.0])]
    assert m.jumpscore_map(samples) == pytest.approx((4 / 9 + 1 + 0) / 3)
    with pytest.raises(ValueError):
        m.jumpscore_map([])
    with pytest.raises(ValueError, match="scores"):
        m.event_ap([1.0], [1.0], 0.1, scores=[1.0, 2.0])


# ---------------------------------------------------------------- grounding

def test_span_iou_hand_cases():
    assert m.span_iou((0, 2), (1, 3)) == pytest.approx(1 / 3)
    assert m.span_iou((0, 1), (2, 3)) == 0.0
    assert m.span_iou((1, 1), (1, 1)) == 1.0
    assert m.span_iou((0, 4), (1, 2)) == pytest.approx(0.25)
    assert m.best_span_iou([(0, 1), (1, 3)], (1, 3)) == 1.0
    assert m.best_span_iou([], (1, 3)) == 0.0


def test_grounding_scores():
    s = m.grounding_scores([1 / 3, 0.5, 0.8])
    assert s.miou == pytest.approx((1 / 3 + 0.5 + 0.8) / 3)
    assert s.recall_at == {0.3: pytest.approx(1.0), 0.5: pytest.approx(2 / 3), 0.7: pytest.approx(1 / 3)}
    with pytest.raises(ValueError):
        m.grounding_scores([])


# ---------------------------------------------------------------- points in masks

def _square(shape=(10, 10), rows=(2, 5), cols=(2, 5)):
    mask = np.zeros(shape, bool)
    mask[rows[0]:rows[1], cols[0]:cols[1]] = True
    return mask


def test_point_in_mask_hand_case():
    gt = {0: _square(), 1: np.zeros((10, 10), bool), 2: _square()}
    pred = {0: np.array([[3, 3], [8, 8]]), 1: np.array([[1, 1]])}    # frame 2: nothing predicted
    s = m.point_in_mask_scores(pred, gt)
    # 1 of 3 points inside; object on frames 0 and 2, found on frame 0 only
    assert (s.precision, s.recall) == (pytest.approx(1 / 3), pytest.approx(0.5))
    assert s.f1 == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))
    assert (s.num_points, s.num_frames) == (3, 3)


def test_point_in_mask_edge_cases():
    empty = {0: np.zeros((4, 4), bool)}
    assert m.point_in_mask_scores({}, empty).f1 == 1.0               # nothing there, nothing claimed
    assert m.point_in_mask_scores({}, {0: _square()}).f1 == 0.0
    # outside the image and on a pixel edge (rounded) are handled
    assert list(m.points_in_mask(np.array([[-1, 3], [3, 99], [4.4, 4.4], [4.6, 3]]), _square())) == [
        False, False, True, False]


def test_disc_and_nearest_point_error():
    disc = m.disc_mask((5, 5), 2, (11, 11))
    assert disc[5, 7] and disc[7, 5] and not disc[7, 7]
    assert m.nearest_point_error(np.array([[0, 0], [3, 4]]), (0, 8)) == pytest.approx(5.0)
    assert m.nearest_point_error(np.zeros((0, 2)), (1, 1)) == math.inf


# ---------------------------------------------------------------- J and F

def test_jaccard_hand_case():
    a = np.zeros((6, 6), bool); a[0:2, 0:4] = True
    b = np.zeros((6, 6), bool); b[0:2, 2:6] = True
    assert m.jaccard(a, b) == pytest.approx(4 / 12)
    assert m.jaccard(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0
    with pytest.raises(ValueError, match="shape"):
        m.jaccard(np.zeros((3, 3)), np.zeros((3, 4)))


def test_boundary_map_matches_davis_definition():
    b = m.boundary_map(_square())
    # bg row above + bg column left (7 px) and the fg bottom row + right column (5 px); image border is no edge
    assert b.sum() == 12
    assert m.boundary_map(np.ones((5, 5), bool)).sum() == 0


def test_boundary_f_hand_case():
    gt = np.zeros((10, 10), bool); gt[4:6, :] = True            # full-width band: boundary rows 3 and 5, 20 px
    pred = np.zeros((10, 10), bool); pred[4:6, :5] = True       # left half: rows 3,5 cols 0-4 plus (4,4): 11 px
    # radius 1 (cross): every pred boundary px is near GT -> P = 1; GT rows 3,5 cols 0-5 are reached -> R = 12/20
    assert m.boundary_f(pred, gt, bound_th=1) == pytest.approx(2 * 0.6 / 1.6)


def test_boundary_f_edge_cases_and_tolerance():
    sq = _square((40, 40), (10, 20), (10, 20))
    shifted = np.roll(sq, 1, axis=1)
    assert m.boundary_f(sq, sq) == 1.0
    assert m.boundary_f(sq, shifted) == 1.0           # DAVIS bound: ceil(0.008 * 56.6) = 1 px
    assert m.boundary_f(sq, shifted, bound_th=0.0) < 1.0
    assert m.boundary_f(sq, np.roll(sq, 15, axis=0)) == 0.0
    assert m.boundary_f(np.zeros((5, 5)), np.zeros((5, 5))) == 1.0
    assert m.boundary_f(np.zeros((40, 40)), sq) == 0.0


def test_j_and_f_means_over_frames():
    sq = _square((40, 40), (10, 20), (10, 20))
    s = m.j_and_f([(sq, sq), (np.zeros_like(sq), sq)])
    assert (s.j, s.f, s.jf) == (0.5, 0.5, 0.5)
    assert s.per_frame_j == (1.0, 0.0)
    with pytest.raises(ValueError):
        m.j_and_f([])


# ---------------------------------------------------------------- latency

def test_latency_percentiles():
    out = m.latency_percentiles([0.1, 0.2, 0.3, 0.4, 1.0])
    assert out["p50"] == pytest.approx(0.3)
    assert out["p90"] == pytest.approx(0.4 + 0.6 * 0.6)     # linear between the 4th and 5th values
    assert (out["max"], out["n"]) == (1.0, 5)
    assert out["mean"] == pytest.approx(0.4)
    with pytest.raises(ValueError):
        m.latency_percentiles([])
