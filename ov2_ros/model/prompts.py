"""Task instructions. Each names the answer format that ``parsers.py`` reads back.

Coordinates are integers 0-1000 over the frame width/height (x right, y down); times are seconds as written in the
prompt's ``<t seconds>`` tags; waypoint depth ``z`` is normalised to [0, 1] (0 = nearest).
"""
from __future__ import annotations

from ov2_ros.model.answer import QUERY_PREFIXES, TASKS, Query

TEMPLATES = {
    "track": ('Track {text} through the video. Answer only with <tracks coords="t id x y; t id x y; ...">label'
              '</tracks>, one entry per frame and object, t in seconds, id an integer per object, x y in 0-1000.'),
    "point": ('Point to {text}. Answer only with <points coords="t x y; t x y; ...">label</points>, t in seconds, '
              'x y in 0-1000.'),
    "waypoints": ('{text} Give the gripper waypoints in order, in the last frame, as <waypoints coords="x y z; '
                  'x y z; ...">label</waypoints>, x y in 0-1000, z the normalised depth in [0, 1].'),
    "ground": "When does this happen: {text}? Answer with one or more spans '<start> - <end> seconds'.",
    "ask": "{text}",
}


def instruction(query: Query) -> str:
    """The user-turn instruction for a query (the vision part is prepended by the processor)."""
    if query.task not in TEMPLATES:
        from ov2_ros.model.errors import ProcessorError
        raise ProcessorError(f"unknown task {query.task!r}; expected one of {TASKS}")
    return TEMPLATES[query.task].format(text=query.text.strip())


def parse_query(text: str, default_task: str = "ask") -> Query:
    """``"track: the red mug"`` -> Query("track", "the red mug"); no known prefix -> ``default_task``."""
    head, sep, rest = text.partition(":")
    task = QUERY_PREFIXES.get(head.strip().lower()) if sep else None
    if task is None:
        return Query(default_task if default_task in TASKS else "ask", text.strip())  # type: ignore[arg-type]
    return Query(task, rest.strip())  # type: ignore[arg-type]
