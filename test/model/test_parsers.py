"""Parsers: coordinates to source pixels, times to source frames; fuzzed, they never raise."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ov2_ros.model import Query, parse_answer, parse_query
from ov2_ros.model.prompts import TEMPLATES, instruction

TIMES = {0: 0.0, 10: 1 / 3, 20: 2 / 3, 30: 1.0, 45: 1.5}
SIZE = (240, 320)   # (H, W)


def test_tracks_map_to_pixels_and_nearest_frames():
    a = parse_answer("track", '<tracks coords="0.3 1 500 250; 1.45 1 1000 0; 0.0 2 0 1000">red mug</tracks>',
                     TIMES, SIZE)
    assert not a.errors
    assert [(p.frame, p.obj_id, p.x, p.y, p.label) for p in a.tracks] == [
        (10, 1, 160.0, 60.0, "red mug"), (45, 1, 320.0, 0.0, "red mug"), (0, 2, 0.0, 240.0, "red mug")]
    assert a.tracks[1].time_s == 1.5


def test_partial_tracks_keep_the_good_entries():
    a = parse_answer("track", '<tracks coords="0.3 1 500 250; oops; 1 1 2000 5; 1 1.5 3 3">x</tracks>', TIMES, SIZE)
    assert len(a.tracks) == 1 and len(a.errors) == 3


def test_points_waypoints_and_spans():
    p = parse_answer("point", '<points coords="1.0 100 900">apple</points>', TIMES, SIZE)
    assert [(q.frame, q.x, q.y) for q in p.points] == [(30, 32.0, 216.0)] and not p.errors
    w = parse_answer("waypoints", '<waypoints coords="500 500 0.2; 600 400 0.9; 1 1 3">grasp</waypoints>',
                     TIMES, SIZE)
    assert [(q.x, q.y, q.z) for q in w.waypoints] == [(160.0, 120.0, 0.2), (192.0, 96.0, 0.9)]
    assert w.waypoint_frame == 45 and len(w.errors) == 1
    g = parse_answer("ground", "It starts at 1.0 - 2.5 seconds and again 4 to 5 seconds.", TIMES, SIZE)
    assert [(s.start_s, s.end_s) for s in g.spans] == [(1.0, 2.5), (4.0, 5.0)] and not g.errors
    assert parse_answer("ground", "3.0 - 1.0 seconds", TIMES, SIZE).errors
    assert parse_answer("ask", "a red mug", TIMES, SIZE).text == "a red mug"


def test_parse_query_prefixes():
    assert parse_query("track: the red mug") == Query("track", "the red mug")
    assert parse_query("When: the person jumps") == Query("ground", "the person jumps")
    assert parse_query("what is this?", "point") == Query("point", "what is this?")
    assert parse_query("note: x", "ask") == Query("ask", "note: x")
    for task in TEMPLATES:
        assert "mug" in instruction(Query(task, "mug"))   # type: ignore[arg-type]


_fragments = st.sampled_from(['<tracks coords="', '<points coords="', '<waypoints coords="', '">', '</tracks>',
                              '</points>', '</waypoints>', ";", " ", "-", " seconds", "nan", "inf", "1e309", "0.5",
                              "1000", "-3", "label", "\n", '"'])
_texts = st.one_of(st.text(max_size=200), st.lists(st.one_of(_fragments, st.text(max_size=5)), max_size=40).map("".join))


@settings(max_examples=300, deadline=None)
@given(task=st.sampled_from(["track", "point", "waypoints", "ground", "ask"]), text=_texts,
       times=st.dictionaries(st.integers(0, 10_000), st.floats(0, 1e4, allow_nan=False), max_size=6))
def test_parsers_never_raise_and_stay_in_bounds(task, text, times):
    a = parse_answer(task, text, times, SIZE)
    assert a.text == text
    for item in a.tracks + a.points:
        assert item.frame in times and 0 <= item.x <= SIZE[1] and 0 <= item.y <= SIZE[0]
    for w in a.waypoints:
        assert 0 <= w.x <= SIZE[1] and 0 <= w.y <= SIZE[0] and 0 <= w.z <= 1
    for s in a.spans:
        assert 0 <= s.start_s <= s.end_s


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80), st.sampled_from(["track", "point", "waypoints", "ground", "ask", "bogus"]))
def test_parse_query_never_raises(text, default):
    q = parse_query(text, default)
    assert q.task in ("track", "point", "waypoints", "ground", "ask")


_coord = st.integers(0, 1000)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 2, allow_nan=False), st.integers(0, 9), _coord, _coord), min_size=1,
                max_size=12), st.text(alphabet="abc xyz", max_size=12))
def test_well_formed_tracks_round_trip(entries, label):
    text = '<tracks coords="' + "; ".join(f"{t:.2f} {i} {x} {y}" for t, i, x, y in entries) + f'">{label}</tracks>'
    a = parse_answer("track", text, TIMES, SIZE)
    assert not a.errors and len(a.tracks) == len(entries)
    for p, (t, i, x, y) in zip(a.tracks, entries):
        assert p.obj_id == i and p.label == label.strip()
        assert abs(p.x - x * SIZE[1] / 1000) < 1e-9 and abs(p.y - y * SIZE[0] / 1000) < 1e-9
        assert abs(TIMES[p.frame] - round(t, 2)) <= min(abs(v - round(t, 2)) for v in TIMES.values()) + 1e-12
