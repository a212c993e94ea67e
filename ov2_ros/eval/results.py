"""``results.json``: what one replay produced, as frozen values, and its JSON round trip.

A replay directory holds ``results.json``, the results bag (``results_bag/``) and the SAM2 masks
(``masks/NNNNNN.png``, mono8 0/255, the union of the objects on that source frame, newest window wins).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ov2_ros.eval.errors import ResultsError
from ov2_ros.model.answer import Answer, Point, Span, TrackPoint, Waypoint

RESULTS_FORMAT = "ov2_ros.replay/1"
RESULTS_FILE = "results.json"
RESULTS_BAG = "results_bag"
MASKS_DIR = "masks"


@dataclass(frozen=True)
class WindowRecord:
    """One inference over one CodecWindow, and the latency it would have had live (seconds): the push of the AU
    that closed the window's last group, plus the model, plus SAM2."""

    seq: int
    start_frame: int
    end_frame: int                   # exclusive
    tokens: int
    canvases: int
    answer: dict[str, Any] | None    # Answer.to_json_dict(); None when the model failed or is missing
    error: str | None
    push_s: float
    model_s: float
    segment_s: float
    mask_frames: tuple[int, ...] = ()

    @property
    def latency_s(self) -> float:
        return self.push_s + self.model_s + self.segment_s


@dataclass(frozen=True)
class GroupRecord:
    """A closed group of frames [start_frame, end_frame) and the tokens each source frame got on its canvases."""

    index: int
    start_frame: int
    end_frame: int
    tokens_per_frame: dict[int, float]   # frame -> LLM tokens (patches / 4) it contributed


@dataclass(frozen=True)
class ReplayResults:
    name: str                         # the bag folder name; annotations are matched on it
    bag: str
    topic: str
    query: str
    model: str
    mode: str
    canvases: int                     # window budget in canvases (equal budgets = equal tokens across modes)
    source_kind: str                  # h264, hevc, jpeg, png or raw (the last three were encoded first)
    frame_stamps_ns: tuple[int, ...]  # source stamp of every frame, by frame index
    groups: tuple[GroupRecord, ...]
    windows: tuple[WindowRecord, ...]
    missing: dict[str, str] = field(default_factory=dict)   # pipeline stages that could not load, and why
    stats: dict[str, Any] = field(default_factory=dict)     # pipeline counters and wall-clock timings

    @property
    def num_frames(self) -> int:
        return len(self.frame_stamps_ns)

    def frame_time_s(self, frame: int) -> float:
        """Seconds since the first frame, from source stamps (the annotations' time base)."""
        return (self.frame_stamps_ns[frame] - self.frame_stamps_ns[0]) / 1e9

    @property
    def selected_frames(self) -> tuple[int, ...]:
        """Frames that gave at least one patch to some canvas."""
        return tuple(sorted({f for g in self.groups for f, n in g.tokens_per_frame.items() if n > 0}))

    def answers(self) -> list[tuple[WindowRecord, Answer]]:
        """Windows with a parsed answer, oldest first."""
        return [(w, answer_from_dict(w.answer)) for w in self.windows if w.answer is not None]


def answer_record(answer: Answer | None) -> dict[str, Any] | None:
    """The answer as results.json holds it (tuples become lists), so a saved record equals the live one."""
    return None if answer is None else json.loads(json.dumps(answer.to_json_dict(), default=_jsonable))


def answer_from_dict(d: dict[str, Any]) -> Answer:
    """Inverse of ``Answer.to_json_dict`` (after a JSON round trip: lists back to tuples)."""
    try:
        return Answer(
            task=d["task"], text=d["text"],
            tracks=tuple(TrackPoint(**t) for t in d.get("tracks", ())),
            points=tuple(Point(**p) for p in d.get("points", ())),
            waypoints=tuple(Waypoint(**w) for w in d.get("waypoints", ())),
            waypoint_frame=d.get("waypoint_frame"),
            spans=tuple(Span(**s) for s in d.get("spans", ())),
            errors=tuple(d.get("errors", ())),
            window_span=tuple(d.get("window_span", (0.0, 0.0))),
            window_frames=tuple(d.get("window_frames", (0, 0))),
            latency_s=d.get("latency_s", 0.0), extra=d.get("extra", {}))
    except (KeyError, TypeError) as exc:
        raise ResultsError(f"answer record does not match ov2_ros.model.answer.Answer: {exc}") from exc


def save_results(results: ReplayResults, out_dir: Path) -> Path:
    path = out_dir / RESULTS_FILE
    doc = {"format": RESULTS_FORMAT, **asdict(results)}
    for g in doc["groups"]:     # JSON object keys are strings; keep frames sortable as ints on load
        g["tokens_per_frame"] = [[int(f), n] for f, n in sorted(g["tokens_per_frame"].items())]
    path.write_text(json.dumps(doc, indent=1, default=_jsonable))
    return path


def load_results(path: str | Path) -> ReplayResults:
    """``results.json`` (or the replay directory holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != RESULTS_FORMAT:
        raise ResultsError(f"{path}: not an ov2-ros replay results file (format must be {RESULTS_FORMAT!r})")
    try:
        groups = tuple(GroupRecord(g["index"], g["start_frame"], g["end_frame"],
                                   {int(f): float(n) for f, n in g["tokens_per_frame"]}) for g in doc["groups"])
        windows = tuple(WindowRecord(**{**w, "mask_frames": tuple(w["mask_frames"])}) for w in doc["windows"])
        return ReplayResults(
            name=doc["name"], bag=doc["bag"], topic=doc["topic"], query=doc["query"], model=doc["model"],
            mode=doc["mode"], canvases=doc["canvases"], source_kind=doc["source_kind"],
            frame_stamps_ns=tuple(doc["frame_stamps_ns"]), groups=groups, windows=windows,
            missing=doc.get("missing", {}), stats=doc.get("stats", {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise ResultsError(f"{path}: malformed results record: {type(exc).__name__}: {exc}") from exc


def _jsonable(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")
