"""Task instructions, in the release's formats where it has one. Each names the answer format ``parsers.py`` reads
back (and ``parsers.render_answer`` writes, for training targets).

- ``track``: the release's demo asks "Track the animal moving forward." and answers
  ``<tracks coords="0.00 0 231 493;1.00 0 273 500;...">\\nthe animal moving forward\\n</tracks>`` (t seconds, object id,
  x y in 0-1000); the instruction is that question alone.
- ``waypoints``: TraceSpatial's ``[x, y, d]`` waypoints, x y in 0-1000, depth d in metres.
- ``ground``: the release's answers read "Predicted interval 38–41 s".
- ``point``: the release documents no video-pointing format; ``<points coords="t x y;...">`` (as tracks, without
  the id) is the project's own.

Times are seconds as written in the prompt's ``<t seconds>`` tags (counted from the window's origin).
"""
from __future__ import annotations

from ov2_ros.model.answer import QUERY_PREFIXES, TASKS, Query

TEMPLATES = {
    "track": "Track {text}.",
    "point": ('Point to {text}. Answer with <points coords="t x y;t x y;...">label</points>, t in seconds as in '
              'the video, x y in 0-1000 over the frame width and height.'),
    "waypoints": ("{text}. Give the waypoints in order as a list of [x, y, d] points, x y in 0-1000 over the "
                  "image width and height, d the depth in meters."),
    "ground": "When does this happen in the video: {text}? Answer with the interval in seconds.",
    "ask": "{text}",
}


def instruction(query: Query) -> str:
    """The user-turn instruction for a query (the vision part is prepended by the processor). Trailing sentence
    punctuation of the user's words is dropped where the template adds its own."""
    if query.task not in TEMPLATES:
        from ov2_ros.model.errors import ProcessorError
        raise ProcessorError(f"unknown task {query.task!r}; expected one of {TASKS}")
    text = query.text.strip()
    if query.task != "ask":
        text = text.rstrip(" .?!")
    return TEMPLATES[query.task].format(text=text)


def parse_query(text: str, default_task: str = "ask") -> Query:
    """``"track: the red mug"`` -> Query("track", "the red mug"); no known prefix -> ``default_task``."""
    head, sep, rest = text.partition(":")
    task = QUERY_PREFIXES.get(head.strip().lower()) if sep else None
    if task is None:
        return Query(default_task if default_task in TASKS else "ask", text.strip())  # type: ignore[arg-type]
    return Query(task, rest.strip())  # type: ignore[arg-type]
