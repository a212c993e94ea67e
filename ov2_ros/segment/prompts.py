"""Turn a parsed VLM ``Answer`` into SAM2 point prompts, one per (frame, object)."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from ov2_ros.model.answer import Answer
from ov2_ros.segment.tracker import PointPrompt


def prompts_from_answer(answer: Answer) -> tuple[PointPrompt, ...]:
    """Positive point prompts from ``answer.tracks`` (their obj_id) and ``answer.points``, sorted by (frame, obj).

    Points carry no object id: each distinct label becomes one object, numbered after the largest track id, in order
    of first appearance. All points of one object on one frame form one prompt.
    """
    grouped: dict[tuple[int, int], list[tuple[float, float]]] = defaultdict(list)
    for tp in answer.tracks:
        grouped[(tp.frame, tp.obj_id)].append((tp.x, tp.y))
    next_id = max((tp.obj_id for tp in answer.tracks), default=-1) + 1
    label_ids: dict[str, int] = {}
    for pt in answer.points:
        obj_id = label_ids.setdefault(pt.label, next_id + len(label_ids))
        grouped[(pt.frame, obj_id)].append((pt.x, pt.y))
    return tuple(
        PointPrompt(frame=frame, obj_id=obj_id, points_xy=np.asarray(xy, dtype=np.float32),
                    labels=np.ones(len(xy), dtype=np.int32))
        for (frame, obj_id), xy in sorted(grouped.items()))
