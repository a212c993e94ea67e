"""VLM answers -> SAM2 point prompts."""
from __future__ import annotations

import numpy as np

from ov2_ros.model.answer import Answer, Point, TrackPoint
from ov2_ros.segment import MaskTracker, prompts_from_answer


def test_tracks_and_points_become_per_frame_per_object_prompts(small_frames):
    answer = Answer(task="track", text="", tracks=(
        TrackPoint(frame=4, time_s=0.13, obj_id=0, x=40.0, y=60.0, label="mug"),
        TrackPoint(frame=2, time_s=0.07, obj_id=1, x=100.0, y=20.0, label="cup"),
        TrackPoint(frame=2, time_s=0.07, obj_id=0, x=38.0, y=58.0, label="mug"),
    ), points=(
        Point(frame=3, time_s=0.1, x=10.0, y=11.0, label="apple"),
        Point(frame=3, time_s=0.1, x=12.0, y=13.0, label="apple"),
        Point(frame=3, time_s=0.1, x=90.0, y=91.0, label="pear"),
    ))
    prompts = prompts_from_answer(answer)
    assert [(p.frame, p.obj_id) for p in prompts] == [(2, 0), (2, 1), (3, 2), (3, 3), (4, 0)]
    apple = prompts[2]
    assert apple.points_xy.tolist() == [[10.0, 11.0], [12.0, 13.0]] and apple.labels.tolist() == [1, 1]
    assert all(p.points_xy.dtype == np.float32 and p.labels.dtype == np.int32 for p in prompts)
    assert prompts_from_answer(Answer(task="ask", text="no points")) == ()

    tracker = MaskTracker("tiny-random")
    for p in prompts:
        tracker.add_prompt(p)
    seen = [set(tracker.push(i, small_frames[i])) for i in range(5)]
    assert seen == [set(), set(), {0, 1}, {0, 1, 2, 3}, {0, 1, 2, 3}]
