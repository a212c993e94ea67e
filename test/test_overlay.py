"""The answer-on-its-frame picture (ov2_ros.overlay): what is drawn lands where the answer says, pure numpy/OpenCV."""
from __future__ import annotations

import av
import numpy as np
import pytest

from ov2_ros.model.answer import Answer, Point, Span, TrackPoint, Waypoint
from ov2_ros.overlay import OverlayWriter, _colour, draw_overlay, source_frame


class Mask:
    def __init__(self, mask, lost=False):
        self.mask, self.lost = mask, lost


def answer(**fields) -> Answer:
    return Answer(task=fields.pop("task", "track"), text=fields.pop("text", "ok"), window_frames=(0, 30), **fields)


def changed(a, b) -> np.ndarray:
    return (a != b).any(axis=2)


def test_track_points_waypoints_and_points_are_drawn_where_the_answer_says():
    rgb = np.full((240, 320, 3), 90, np.uint8)
    tracks = (TrackPoint(10, 0.3, 1, 60, 200), TrackPoint(29, 1.0, 1, 100, 200), TrackPoint(29, 1.0, 2, 250, 150))
    out = draw_overlay(rgb, answer(tracks=tracks), query="track: the mug")
    assert out.shape == rgb.shape and out.dtype == np.uint8 and (rgb == 90).all()     # input untouched
    assert tuple(out[200, 100]) == _colour(1) and tuple(out[150, 250]) == _colour(2)     # newest points
    assert changed(out, rgb)[200, 70:90].all()                                       # object 1's trail
    assert not changed(out, rgb)[100:130, 150:200].any()                             # nothing elsewhere
    assert changed(out, rgb)[:20].any()                                              # the caption band
    way = draw_overlay(rgb, answer(task="waypoints", waypoints=(Waypoint(40, 200, 1.0), Waypoint(280, 200, 0.5)),
                                   waypoint_frame=29))
    assert changed(way, rgb)[200, 50:270].all() and tuple(way[200, 40]) == (0, 255, 120)
    pts = draw_overlay(rgb, answer(task="point", points=(Point(29, 1.0, 160, 120),)))
    assert changed(pts, rgb)[120, 155:166].all() and not changed(pts, rgb)[60:100, 100:140].any()


def test_the_mask_outline_follows_the_mask_boundary_and_lost_objects_are_skipped():
    rgb = np.zeros((120, 160, 3), np.uint8)
    mask = np.zeros((120, 160), bool)
    mask[40:80, 50:110] = True
    out = draw_overlay(rgb, answer(task="ask"), {1: Mask(mask)})
    diff = changed(out, rgb)
    assert diff[40, 60:100].all() and diff[79, 60:100].all() and diff[50:70, 50].all()   # the boundary
    assert not diff[50:70, 60:100].any()                                                # not the inside
    lost = draw_overlay(rgb, answer(task="ask"), {1: Mask(mask, lost=True)})
    assert not changed(lost, rgb)[30:, :].any()


def test_spans_are_captioned_and_the_source_frame_is_the_windows_newest():
    a = answer(task="ground", spans=(Span(1.0, 2.5),))
    assert source_frame(a) == 29
    assert source_frame(answer(task="waypoints", waypoints=(Waypoint(1, 1, 1),), waypoint_frame=12)) == 12
    out = draw_overlay(np.zeros((120, 160, 3), np.uint8), a)
    assert changed(out, np.zeros_like(out))[:30].any() and not changed(out, np.zeros_like(out))[40:].any()


@pytest.mark.parametrize("kind", ["png", "mp4"])
def test_overlay_writer_writes_pngs_or_a_playable_mp4(tmp_path, kind):
    import cv2

    frames = [np.full((120, 160, 3), (40 * i, 0, 0), np.uint8) for i in range(4)]
    path = tmp_path / ("o.mp4" if kind == "mp4" else "o")
    writer = OverlayWriter(path, kind)
    for i, f in enumerate(frames):
        writer.add(10 + i, f)
    writer.close()
    if kind == "png":
        assert sorted(p.name for p in path.iterdir()) == [f"{10 + i:06d}.png" for i in range(4)]
        assert tuple(cv2.imread(str(path / "000012.png"))[0, 0]) == (0, 0, 80)     # BGR on disk
    else:
        with av.open(str(path)) as c:
            decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert len(decoded) == 4 and decoded[0].shape == (120, 160, 3)
        assert abs(int(decoded[3][60, 80, 0]) - 120) < 12                            # lossy, but that picture
