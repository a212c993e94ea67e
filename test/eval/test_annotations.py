"""annotations.json validation: good documents load, each schema violation names its JSON path."""
import json

import cv2
import numpy as np
import pytest

from ov2_ros.eval.annotations import load_annotations
from ov2_ros.eval.errors import AnnotationError


def _write(tmp_path, doc):
    p = tmp_path / "annotations.json"
    p.write_text(json.dumps(doc))
    return p


def _doc(*videos):
    return {"version": 1, "videos": list(videos)}


def test_all_three_tasks_load(tmp_path):
    mask = np.zeros((12, 16), np.uint8)
    mask[2:5, 3:7] = 255
    (tmp_path / "m").mkdir()
    cv2.imwrite(str(tmp_path / "m" / "000004.png"), mask)
    ann = load_annotations(_write(tmp_path, _doc(
        {"name": "jumps", "task": "jump", "query": "when: start of each jump", "events_s": [2.0, 0.5]},
        {"name": "cuts", "task": "ground", "query": "when: the red square moves", "spans_s": [[1.0, 2.0]]},
        {"name": "mug", "task": "track", "query": "track: the red square", "point_radius_px": 6,
         "points": [{"frame": 3, "x": 10, "y": 4.5}], "masks": {"4": "m/000004.png"}})))
    jumps, cuts, mug = ann.videos
    assert jumps.events_s == (0.5, 2.0)                          # sorted
    assert cuts.spans_s == ((1.0, 2.0),)
    assert mug.points == {3: (10.0, 4.5)} and mug.point_radius_px == 6
    assert mug.load_mask(4).sum() == 12 and mug.load_mask(4).shape == (12, 16)
    assert ann.for_name("cuts") is cuts
    with pytest.raises(AnnotationError, match="no video named 'x'"):
        ann.for_name("x")


def test_single_video_matches_any_name(tmp_path):
    ann = load_annotations(_write(tmp_path, _doc({"name": "a", "task": "jump", "query": "q", "events_s": []})))
    assert ann.for_name("whatever").name == "a"


@pytest.mark.parametrize("doc, message", [
    ([], "top level must be an object"),
    ({"version": 2, "videos": []}, "version: must be 1"),
    ({"version": 1, "videos": []}, "videos: must be a non-empty list"),
    (_doc({"name": "a", "task": "dance", "query": "q"}), r"videos\[0\].task: must be one of"),
    (_doc({"name": "", "task": "jump", "query": "q", "events_s": []}), r"videos\[0\].name"),
    (_doc({"name": "a", "task": "jump", "query": " "}), r"videos\[0\].query"),
    (_doc({"name": "a", "task": "jump", "query": "q"}), "needs events_s"),
    (_doc({"name": "a", "task": "jump", "query": "q", "events_s": [1, "2"]}), r"events_s\[1\]: must be a finite"),
    (_doc({"name": "a", "task": "jump", "query": "q", "events_s": [-1]}), r"events_s\[0\]: times are seconds"),
    (_doc({"name": "a", "task": "ground", "query": "q", "spans_s": [[3, 1]]}), r"spans_s\[0\]: end 1.0 is before"),
    (_doc({"name": "a", "task": "ground", "query": "q", "spans_s": [[1]]}), r"spans_s\[0\]: must be \[start, end\]"),
    (_doc({"name": "a", "task": "ground", "query": "q", "spans_s": []}), "needs at least one span"),
    (_doc({"name": "a", "task": "track", "query": "q"}), "needs points and/or masks"),
    (_doc({"name": "a", "task": "track", "query": "q", "points": [{"frame": -1, "x": 1, "y": 1}]}),
     r"points\[0\].frame: must be a frame index"),
    (_doc({"name": "a", "task": "track", "query": "q", "points": [{"frame": 1, "x": 1}]}),
     r"points\[0\]: must be \{frame, x, y\}"),
    (_doc({"name": "a", "task": "track", "query": "q", "masks": {"3": "missing.png"}}), r"masks\['3'\]: file .* not"),
    (_doc({"name": "a", "task": "track", "query": "q", "masks": {"x": "a.png"}}), "keys must be frame numbers"),
    (_doc({"name": "a", "task": "jump", "query": "q", "events_s": [], "extra": 1}), r"unknown keys \['extra'\]"),
    (_doc({"name": "a", "task": "jump", "query": "q", "events_s": []},
          {"name": "a", "task": "jump", "query": "q", "events_s": []}), "names must be unique"),
])
def test_schema_violations_name_the_path(tmp_path, doc, message):
    with pytest.raises(AnnotationError, match=message):
        load_annotations(_write(tmp_path, doc))


def test_invalid_json_and_missing_file(tmp_path):
    p = tmp_path / "a.json"
    p.write_text("{not json")
    with pytest.raises(AnnotationError, match="not valid JSON"):
        load_annotations(p)
    with pytest.raises(FileNotFoundError):
        load_annotations(tmp_path / "none.json")
