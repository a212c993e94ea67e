"""Training targets: ground truth as ``Answer`` items, written by ``ov2_ros.model.parsers.render_answer`` (the
parsers' own inverse, in the release's formats) under the runtime's instruction for the task.

Items carry absolute source times (seconds since stream start) and pixels; ``render_answer`` writes them the way
the prompt's ``<t seconds>`` tags count time. ``check_target`` parses each rendered answer back with the runtime's
parser, so a drift between the two fails loudly instead of training on targets the node cannot read.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from ov2_ros.model.answer import Answer, Point, Query, Span, TrackPoint
from ov2_ros.model.parsers import parse_answer, render_answer
from ov2_ros.model.prompts import instruction
from ov2_ros.train.errors import TrainDataError


def render_target(task: str, frame_times: dict[int, float], source_size: tuple[int, int], label: str,
                  points: Mapping[int, tuple[float, float]] | None = None,
                  spans: Sequence[tuple[float, float]] = ()) -> tuple[str, int]:
    """(answer text, item count). ``points``: frame -> (x, y) pixels (track / point); ``spans``: seconds since
    stream start (ground). A ground window with no span answers an empty interval at its first frame, which the
    scorer clips away, so every window has a parseable answer."""
    points = points or {}
    fields: dict = {}
    if task == "track":
        fields["tracks"] = tuple(TrackPoint(f, frame_times[f], 0, x, y, label) for f, (x, y) in sorted(points.items()))
    elif task == "point":
        fields["points"] = tuple(Point(f, frame_times[f], x, y, label) for f, (x, y) in sorted(points.items()))
    elif task == "ground":
        first = min(frame_times.values())
        fields["spans"] = tuple(Span(a, b) for a, b in spans) or (Span(first, first),)
    else:
        raise TrainDataError(f"no training target for task {task!r}")
    items = next(iter(fields.values()))
    return render_answer(task, Answer(task=task, text="", **fields), frame_times, source_size, label), len(items)


def prompt_instruction(task: str, text: str) -> str:
    """The user-turn instruction the runtime sends for ``task: text``."""
    return instruction(Query(task, text))  # type: ignore[arg-type]


def check_target(task: str, answer: str, frame_times: dict[int, float], source_size: tuple[int, int],
                 expected: int) -> None:
    """Raise TrainDataError unless ``answer`` parses without errors into ``expected`` items."""
    parsed = parse_answer(task, answer, frame_times, source_size)
    items = {"track": parsed.tracks, "point": parsed.points, "ground": parsed.spans}.get(task, ())
    if parsed.errors or len(items) != expected:
        raise TrainDataError(f"rendered {task} target {answer!r} does not parse back ({len(items)} of {expected} "
                             f"items; {list(parsed.errors)}): the renderer and ov2_ros.model.parsers disagree")
