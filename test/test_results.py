"""The pure output layouts (ov2_ros.results) and camera payload helpers (ov2_ros.images) that the live node and
bag replay share."""
import array
import ast
import json
import pathlib

import numpy as np
import pytest

from ov2_ros import images, results
from ov2_ros.codec.errors import UnsupportedFormatError
from ov2_ros.model.answer import Answer, Point, TrackPoint, Waypoint
from ov2_ros.segment.tracker import ObjectMask


@pytest.mark.parametrize("module", [results, images])
def test_shared_layouts_import_no_ros_and_no_bag_library(module):
    tree = ast.parse(pathlib.Path(module.__file__).read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not names & {"rclpy", "std_msgs", "sensor_msgs", "rosbags"}


def test_answer_json_layout_and_unknown_stamps():
    answer = Answer(task="track", text="t", window_frames=(4, 9), window_span=(0.1, 0.3),
                    tracks=(TrackPoint(5, 0.2, np.int64(1), np.float32(3.5), 4.0),))
    known = {4: 10.0}
    payload = json.loads(results.answer_json(answer, "track: it", known.get, latency_s=0.5))
    assert list(payload) == ["task", "query", "text", "result", "window", "errors", "latency_s"]
    assert list(payload["result"]) == ["tracks", "points", "waypoints", "waypoint_frame", "spans"]
    assert payload["window"] == {"start_s": 0.1, "end_s": 0.3, "start_frame": 4, "end_frame": 9, "start_stamp": 10.0}
    assert payload["result"]["tracks"][0]["x"] == 3.5 and payload["latency_s"] == 0.5   # numpy scalars serialise


def test_points_and_waypoint_frame():
    answer = Answer(task="track", text="", window_frames=(10, 20), tracks=(TrackPoint(12, 0.6, 2, 1, 2),),
                    points=(Point(19, 0.9, 5, 6),), waypoints=(Waypoint(1, 2, 0.5),))
    assert results.located_points(answer) == [(12, 1.0, 2.0, 2.0), (19, 5.0, 6.0, -1.0)]
    assert results.newest_frame(answer) == results.waypoint_frame(answer) == 19
    assert results.waypoint_frame(Answer(task="waypoints", text="", window_frames=(10, 20), waypoint_frame=13)) == 13


def test_mask_union_skips_lost_objects():
    a = np.zeros((3, 4), bool)
    a[0, :2] = True
    objects = {0: ObjectMask(a, 0.9, None, False), 1: ObjectMask(np.ones((3, 4), bool), 0.1, None, True)}
    union = results.mask_union(objects)
    assert union.dtype == np.uint8 and union.tolist()[0] == [255, 255, 0, 0] and union.sum() == 2 * 255
    assert results.mask_union({}) is None


@pytest.mark.parametrize("fmt, kind", [("h264", "h264"), ("H.265", "hevc"), ("avc", "h264"),
                                       ("rgb8; jpeg compressed bgr8", "jpeg"), ("png", "png"), ("theora", None),
                                       ("", None)])
def test_payload_kind(fmt, kind):
    assert images.payload_kind(fmt) == kind


def test_raw_to_rgb_from_every_buffer_kind():
    rgb = np.random.default_rng(1).integers(0, 255, (3, 5, 3), dtype=np.uint8)
    padded = np.zeros((3, 16), np.uint8)
    padded[:, :15] = rgb[..., ::-1].reshape(3, 15)
    for data in (padded.tobytes(), array.array("B", padded.tobytes()), padded.reshape(-1)):
        assert np.array_equal(images.raw_to_rgb("bgr8", 5, 3, 16, data), rgb)
    rgba = np.concatenate([rgb, np.full((3, 5, 1), 7, np.uint8)], axis=2)
    assert np.array_equal(images.raw_to_rgb("RGBA8", 5, 3, 20, rgba.tobytes()), rgb)
    with pytest.raises(UnsupportedFormatError, match=r"cam 7: image encoding '16UC1'"):
        images.raw_to_rgb("16UC1", 5, 3, 10, bytes(30), "cam 7")
    with pytest.raises(ValueError, match=r"cam 7: 5x3 rgb8 with step 15: 20 bytes do not hold"):
        images.raw_to_rgb("rgb8", 5, 3, 15, bytes(20), "cam 7")


def test_encoded_to_rgb_and_garbage():
    import cv2

    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:, :, 0] = 250
    ok, png = cv2.imencode(".png", rgb[..., ::-1])
    assert np.array_equal(images.encoded_to_rgb(png.tobytes()), rgb)
    with pytest.raises(UnsupportedFormatError, match="msg 3: bytes are not a decodable image"):
        images.encoded_to_rgb(b"\x00garbage", "msg 3")
