"""The shipped toy models on held-out synthetic clips, end to end.

- ``ov2-toy`` through ``PerceptionPipeline`` (the node's and replay's path, the model's recorded tokenizer settings
  applied by name): every answer parses into tracks on the window's frames; on a one-object scene most points land
  inside the queried object's box, and with one or two distractors most land on the named shape (the issue's F1
  goal over the held-out set is not met yet: models/ov2-toy/README.md);
- ``sam2-toy`` through the streaming ``MaskTracker`` from one point prompt: its masks cover the object (J), but
  it masks every shape rather than the prompted one (strict xfail: it fails the suite once it passes);
- ``ov2-ros demo`` with both defaults publishes tracks, points and masks.
If a tokenizer or prompt change no longer matches what the toys were trained on, these fail: retrain with
``make train-toy``.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from ov2_ros.codec.synth import make_scene
from ov2_ros.train.toy import HELD_OUT

MARGIN_PX = 4          # a point on the box edge counts (coordinates are rounded to 0-1000 of the frame)


def _inside(scene, obj, frame, x, y) -> bool | None:
    box = scene.box(frame, obj)
    if box is None:
        return None
    return (box[0] - MARGIN_PX <= x <= box[2] + MARGIN_PX) and (box[1] - MARGIN_PX <= y <= box[3] + MARGIN_PX)


def _pipeline_tracks(seed: int):
    """ov2-toy through PerceptionPipeline on one held-out scene: (scene, [(window, answer)])."""
    from ov2_ros.pipeline import PerceptionPipeline, PipelineConfig

    scene = make_scene(seed)
    pipeline = PerceptionPipeline(PipelineConfig(model="ov2-toy", segment=False))
    assert not pipeline.load()
    assert pipeline._tokenizer.config.max_pixels == 20_000     # the model's recorded settings, applied by name
    pipeline.set_query(f"track: {scene.objects[0].name}")
    out = []
    for au in scene.aus:
        if pipeline.push(au).groups:
            job = pipeline.next_job()
            result = pipeline.infer(job)
            assert result.answer is not None, result.error
            out.append((job.window, result.answer))
    return scene, out


def test_ov2_toy_answers_tracks_through_the_pipeline():
    scene, answers = _pipeline_tracks(HELD_OUT[0])
    assert len(answers) >= 14
    for window, answer in answers:
        assert not answer.errors, answer.text
        assert answer.tracks and all(p.frame in window.frame_times for p in answer.tracks)
        assert all(0 <= p.x <= scene.width and 0 <= p.y <= scene.height for p in answer.tracks)


def _hit_rates(seed: int) -> tuple[float, float]:
    """(share of ov2-toy's track points inside the object's box, same for the frame centre at those frames)."""
    scene, answers = _pipeline_tracks(seed)
    pts = [p for _, a in answers for p in a.tracks]
    model = [_inside(scene, 0, p.frame, p.x, p.y) for p in pts]
    centre = [_inside(scene, 0, p.frame, scene.width / 2, scene.height / 2) for p in pts]
    keep = [i for i, h in enumerate(model) if h is not None]
    assert len(keep) >= 40
    return float(np.mean([model[i] for i in keep])), float(np.mean([centre[i] for i in keep]))


def test_ov2_toy_track_points_land_in_the_object():
    """The level reached (models/ov2-toy/README.md): on a one-object held-out scene most points are in the box."""
    model, centre = _hit_rates(HELD_OUT[2])
    assert model >= 0.7 and model >= centre + 0.4, f"{model:.2f} of track points inside the box (centre {centre:.2f})"


def test_ov2_toy_beats_the_frame_centre_with_distractors():
    model, centre = _hit_rates(HELD_OUT[1])
    assert model >= centre + 0.1, f"{model:.2f} of track points inside the box (centre {centre:.2f})"


def test_ov2_toy_track_points_land_in_the_named_object_among_distractors():
    """Two shapes in view, one named: most points on the named one (0.87 measured; 0.30 before stages F-J)."""
    model, _ = _hit_rates(HELD_OUT[1])
    assert model >= 0.6, f"{model:.2f} of track points inside the box"


def test_ov2_toy_track_points_land_in_the_named_object_among_two_distractors():
    """Three shapes in view (0.68 measured; 0.00 before stages F-J)."""
    model, _ = _hit_rates(HELD_OUT[3])
    assert model >= 0.5, f"{model:.2f} of track points inside the box"


def test_sam2_toy_masks_cover_the_object_from_one_point():
    from ov2_ros.eval.metrics import jaccard
    from ov2_ros.segment import MaskTracker
    from ov2_ros.codec.synth import scene_frames

    frames, objects, masks, _ = scene_frames(HELD_OUT[2], num_frames=12)
    js = []
    with MaskTracker(model="sam2-toy") as tracker:
        for j in range(len(objects)):
            ys, xs = np.nonzero(masks[0, j])
            if len(xs):
                tracker.add_points(0, j + 1, [[float(np.median(xs)), float(np.median(ys))]], [1])
        for i, rgb in enumerate(frames):
            out = tracker.push(i, rgb)
            js += [jaccard(out[j + 1].mask, masks[i, j]) for j in range(len(objects)) if j + 1 in out]
    assert len(js) >= len(frames)
    assert float(np.mean(js)) >= 0.6, f"mean J {np.mean(js):.3f}"


@pytest.mark.xfail(strict=True, reason="issue 13: sam2-toy ignores its point prompt and masks every shape in view "
                                       "(models/sam2-toy/README.md); retrain to fix")
def test_sam2_toy_segments_the_prompted_shape_not_every_shape():
    """Two shapes in view: the point decides which one the mask covers (a model that masks every shape scores
    J ~0.5 on each of two and passes a one-object check)."""
    from ov2_ros.eval.metrics import jaccard
    from ov2_ros.segment import MaskTracker
    from ov2_ros.codec.synth import scene_frames

    seed = next(s for s in HELD_OUT if len(scene_frames(s, num_frames=1)[1]) >= 2)
    frames, objects, masks, _ = scene_frames(seed, num_frames=4)
    for j in range(len(objects)):
        ys, xs = np.nonzero(masks[0, j])
        if len(xs) < 50:
            continue
        with MaskTracker(model="sam2-toy") as tracker:
            tracker.add_points(0, 1, [[float(np.median(xs)), float(np.median(ys))]], [1])
            out = [tracker.push(i, rgb)[1].mask for i, rgb in enumerate(frames)]
        own = np.mean([jaccard(m, masks[i, j]) for i, m in enumerate(out)])
        others = [np.mean([jaccard(m, masks[i, k]) for i, m in enumerate(out)]) for k in range(len(objects)) if k != j]
        assert own >= 0.5 and own > max(others) + 0.3, f"{objects[j].name}: J {own:.2f}, other shapes {others}"


def test_demo_defaults_to_the_toy_models_and_publishes_tracks_and_masks(tmp_path, capsys):
    from ov2_ros.cli import main

    assert main(["demo", "--out", str(tmp_path), "--loops", "1"]) == 0
    printed = capsys.readouterr().out
    assert "tiny RANDOM" not in printed and "parsed: frame" in printed
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["model"] == "ov2-toy"
    counts = summary["counts"]
    assert counts["/answer"] >= 1 and counts["/tracking/points"] >= 1 and counts["/mask"] >= 1
    assert counts["/markers"] >= 1
