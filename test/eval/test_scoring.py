"""Scoring of replay records: merging predictions across overlapping windows, each task's metrics, the report."""
import math

import cv2
import numpy as np
import pytest

from ov2_ros.eval.annotations import VideoAnnotation
from ov2_ros.eval.report import ReportEntry, metric_table_html, write_report
from ov2_ros.eval.results import GroupRecord, ReplayResults, WindowRecord, answer_record
from ov2_ros.eval.scoring import (aggregate, evaluate, frame_at, json_metrics, predicted_events, predicted_points,
                                  predicted_spans, tokenization_scores)
from ov2_ros.model.answer import Answer, Point, Span, TrackPoint

FPS = 10


def _results(answers, n=50, groups=None, mode="codec", windows=None):
    """Answers from successive windows ([start, end) frames, default the whole stream) over an n-frame, 10 fps
    stream (stamps 100 ms apart)."""
    windows = windows or [(0, n)] * len(answers)
    windows = tuple(WindowRecord(seq=i + 1, start_frame=w[0], end_frame=w[1], tokens=180, canvases=4,
                                 answer=answer_record(a), error=None, push_s=0.001, model_s=0.1 * (i + 1),
                                 segment_s=0.0) for i, (a, w) in enumerate(zip(answers, windows, strict=True)))
    groups = groups or (GroupRecord(0, 0, n, {0: 45.0, 12: 10.0, 30: 5.0}),)
    return ReplayResults(name="v", bag="/nowhere", topic="/t", query="q", model="tiny-random", mode=mode,
                         canvases=8, source_kind="h264", frame_stamps_ns=tuple(i * 100_000_000 for i in range(n)),
                         groups=groups, windows=windows)


def _spans(*pairs):
    return Answer(task="ground", text="", spans=tuple(Span(a, b) for a, b in pairs))


def test_newer_windows_replace_older_predictions_in_their_range():
    # window 1 sees 0-2.4 s, window 2 sees 2.0-4.9 s and says something else about 2.0-2.4 s
    r = _results([_spans((1.0, 1.5), (2.1, 2.4)), _spans((2.05, 2.6), (3.0, 3.5), (6.0, 7.0))],
                 windows=[(0, 25), (20, 50)])
    assert predicted_events(r) == [1.0, 2.05, 3.0]         # 2.1 replaced; 6.0 is outside what window 2 saw
    assert predicted_spans(r) == [(1.0, 1.5), (2.05, 2.6), (3.0, 3.5)]
    # an older span reaching into a newer window keeps its part before the newer window's range, and merges
    r = _results([_spans((1.0, 2.0)), _spans((1.5, 3.0))], windows=[(0, 20), (15, 50)])
    assert predicted_spans(r) == [(1.0, 3.0)]
    # the same event repeated by overlapping windows counts once
    r = _results([_spans((1.0, 1.2)), _spans((1.02, 1.2))], windows=[(0, 20), (5, 30)])
    assert predicted_events(r) == [1.02]


def test_back_to_back_windows_join_spans_and_drop_the_nothing_answer():
    # 4-frame windows at 10 fps: a move over frames 8-19 is answered as 0.8-1.1, 1.2-1.5, 1.6-1.9 (one frame apart)
    wins = [(0, 4), (4, 8), (8, 12), (12, 16), (16, 20), (20, 24)]
    nothing = [_spans((0.0, 0.0)), _spans((0.4, 0.4))]            # a zero-length span at the first frame: none
    r = _results(nothing + [_spans((0.8, 1.1)), _spans((1.2, 1.5)), _spans((1.6, 1.9)), _spans((2.0, 2.0))],
                 n=24, windows=wins)
    assert predicted_spans(r) == [(0.8, 1.9)]
    assert predicted_events(r) == [0.8, 1.2, 1.6]                   # the nothing answers are no events
    gt = VideoAnnotation("v", "ground", "q", spans_s=((0.8, 1.9),))
    assert evaluate(r, gt).metrics["miou"] == pytest.approx(1.0)
    # two frames apart is a real gap, and a zero-length span inside the window is a real (one-frame) answer
    r = _results([_spans((0.0, 0.1)), _spans((0.5, 0.6), (0.7, 0.7))], n=8, windows=[(0, 4), (4, 8)])
    assert predicted_spans(r) == [(0.0, 0.1), (0.5, 0.7)]
    assert predicted_events(r) == [0.0, 0.5, 0.7]


def test_jump_task_scores():
    r = _results([_spans((1.0, 1.5)), _spans((2.25, 2.5), (4.0, 4.2))], windows=[(0, 20), (20, 50)])
    gt = VideoAnnotation("v", "jump", "q", events_s=(1.05, 2.0))
    e = evaluate(r, gt)
    # 0.1/0.2 s: only 1.0 hits (AP 1/2); 0.3 s: 2.25 hits at rank 2 (AP 1/2 + 1/2)
    assert e.metrics["jumpscore"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert e.metrics["ap@0.3s"] == pytest.approx(1.0)
    assert e.onset_frames == (10, 20)                      # frames nearest to 1.05 s and 2.0 s at 10 fps
    assert e.metrics["latency_p50_s"] == pytest.approx(0.151)    # push + model of the two windows
    assert e.metrics["windows"] == 2


def test_ground_task_scores():
    r = _results([_spans((1.0, 2.0)), _spans((1.5, 3.0))], windows=[(0, 20), (15, 50)])
    e = evaluate(r, VideoAnnotation("v", "ground", "q", spans_s=((1.0, 3.0), (4.0, 4.5))))
    assert e.metrics["miou"] == pytest.approx(0.5)          # (1.0, 3.0) matched exactly, (4.0, 4.5) missed
    assert (e.metrics["r@0.3"], e.metrics["r@0.7"]) == (0.5, 0.5)


def test_track_points_newest_window_wins_and_scores(tmp_path):
    old = Answer(task="track", text="", tracks=(TrackPoint(5, 0.5, 1, 0.0, 0.0), TrackPoint(6, 0.6, 1, 50, 50)))
    new = Answer(task="track", text="", tracks=(TrackPoint(6, 0.6, 1, 20, 21),), points=(Point(7, 0.7, 90, 90),))
    r = _results([old, new])
    pts = predicted_points(r)
    assert sorted(pts) == [5, 6, 7] and pts[6].tolist() == [[20, 21]]
    mask = np.zeros((40, 60), np.uint8)
    mask[15:30, 15:30] = 255
    cv2.imwrite(str(tmp_path / "m6.png"), mask)
    (tmp_path / "masks").mkdir()
    pred = np.zeros_like(mask)
    pred[15:30, 15:25] = 255                                # SAM2 found 2/3 of the object on frame 6
    cv2.imwrite(str(tmp_path / "masks" / "000006.png"), pred)
    gt = VideoAnnotation("v", "track", "q", points={5: (3.0, 4.0), 6: (20.0, 20.0), 8: (1.0, 1.0)},
                         masks={6: tmp_path / "m6.png"}, point_radius_px=2)
    e = evaluate(r, gt, tmp_path)
    # discs of radius 2: frame 5 (0,0) is 5 px away -> out; frame 6 (20,21) is 1 px -> in; frame 8 has nothing
    assert e.point_errors_px[5] == pytest.approx(5.0) and e.point_errors_px[6] == pytest.approx(1.0)
    assert math.isinf(e.point_errors_px[8])
    assert (e.metrics["point_precision"], e.metrics["point_recall"]) == (0.5, pytest.approx(1 / 3))
    assert e.metrics["mask_point_precision"] == 1.0        # the frame-6 point lies inside the GT mask
    assert e.metrics["j"] == pytest.approx(10 / 15)
    assert 0 < e.metrics["f"] < 1


def test_tokenization_scores_count_onsets_on_selected_frames():
    r = _results([], groups=(GroupRecord(0, 0, 50, {0: 45.0, 12: 10.0, 30: 5.0}),))
    out = tokenization_scores(r, (0, 10, 30, 40))
    assert out["onsets_on_selected"] == 0.5 and out["onsets_within_2"] == 0.75   # 10 is 2 from 12
    assert out["tokens_total"] == 60 and out["frames_selected"] == 3
    assert out["onsets_at_group_start"] == 0.25                # only onset 0 opens a group
    # all 60 tokens sit within 2 frames of an onset; those frames are 3 + 5 + 5 + 5 = 18 of 50
    assert out["onset_token_density"] == pytest.approx(1.0 / (18 / 50))
    assert frame_at(r, 1.04) == 10


def test_aggregate_means_per_metric():
    r = _results([_spans((1.0, 2.0))])
    a = evaluate(r, VideoAnnotation("v", "ground", "q", spans_s=((1.0, 2.0),)))
    b = evaluate(r, VideoAnnotation("v", "ground", "q", spans_s=((3.0, 4.0),)))
    assert aggregate([a, b])["miou"] == pytest.approx(0.5)


def test_report_writes_html_and_pngs(tmp_path):
    gt = VideoAnnotation("v", "ground", "when: q", spans_s=((1.0, 2.0),))
    entries = [ReportEntry(r, tmp_path, evaluate(r, gt)) for r in
               (_results([_spans((1.0, 1.8))], mode="codec"), _results([_spans((0.0, 0.5))], mode="uniform"))]
    path = write_report(entries, gt, tmp_path / "report", note="test")
    html = path.read_text()
    for png in ("timeline.png", "tokens.png"):
        assert f"src='{png}'" in html and (tmp_path / "report" / png).stat().st_size > 5000
    assert "codec - uniform" in metric_table_html(entries)
    assert not (tmp_path / "report" / "point_errors.png").exists()        # no GT points: no empty plot


def test_track_report_on_a_real_replay(codec_replay, small_clip, tmp_path):
    """GT masks/points from the clip's known object boxes; the strip decodes those frames from the bag again."""
    results, replay_dir = codec_replay
    masks, points = {}, {}
    for f in (35, 45, 55):
        x0, y0, x1, y1 = small_clip.boxes[f]
        mask = np.zeros((small_clip.height, small_clip.width), np.uint8)
        mask[y0:y1, x0:x1] = 255
        cv2.imwrite(str(tmp_path / f"{f}.png"), mask)
        masks[f], points[f] = tmp_path / f"{f}.png", ((x0 + x1) / 2, (y0 + y1) / 2)
    gt = VideoAnnotation(results.name, "track", "track: the red square", points=points, masks=masks)
    e = evaluate(results, gt, replay_dir)
    # the random model names no points and SAM2 made no masks: everything is missed, nothing is made up
    assert (e.metrics["point_recall"], e.metrics["mask_point_recall"], e.metrics["j"]) == (0.0, 0.0, 0.0)
    assert all(math.isinf(v) for v in e.point_errors_px.values())
    assert json_metrics(e.metrics)["point_error_median_px"] is None          # strict JSON: no Infinity
    path = write_report([ReportEntry(results, replay_dir, e)], gt, tmp_path / "report")
    html = path.read_text()
    for png in ("masks_codec.png", "point_errors.png", "timeline.png", "tokens.png"):
        assert png in html and (tmp_path / "report" / png).stat().st_size > 5000
