"""Message conversions are plain functions: checked on real message types, without a node."""
import json

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from ov2_ros.codec.errors import UnsupportedFormatError
from ov2_ros.model.answer import Answer, Point, Span, TrackPoint, Waypoint
from ov2_ros.ros import convert
from ov2_ros.segment.tracker import ObjectMask


def _header(sec: int, frame_id: str = "cam") -> Header:
    return Header(stamp=Time(sec=sec, nanosec=500), frame_id=frame_id)


STAMPS = {i: _header(100 + i) for i in range(10)}
FALLBACK = _header(999, "fallback")


def test_video_format_accepts_h264_and_hevc_spellings():
    for fmt, want in [("h264", "h264"), ("H264", "h264"), ("avc", "h264"), ("hevc", "hevc"), ("h265", "hevc")]:
        assert convert.video_format(CompressedImage(format=fmt)) == want


@pytest.mark.parametrize("fmt", ["jpeg", "png", "bgr8; jpeg compressed bgr8", ""])
def test_video_format_refuses_images_by_name(fmt):
    with pytest.raises(UnsupportedFormatError, match="h264_encoder_node") as info:
        convert.video_format(CompressedImage(format=fmt), topic="/cam/image/compressed")
    assert "/cam/image/compressed" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_answer_json_carries_task_result_and_window_stamps():
    answer = Answer(task="ground", text="<0.5 - 1.0 seconds>", spans=(Span(0.5, 1.0),), window_span=(0.0, 0.3),
                    window_frames=(2, 9), latency_s=0.25)
    payload = json.loads(convert.answer_to_json(answer, "when: it jumps", STAMPS))
    assert payload["task"] == "ground" and payload["query"] == "when: it jumps"
    assert payload["result"]["spans"] == [{"start_s": 0.5, "end_s": 1.0}]
    assert payload["window"]["start_frame"] == 2 and payload["window"]["end_frame"] == 9
    assert payload["window"]["start_stamp"] == pytest.approx(102 + 5e-7)
    assert payload["window"]["end_stamp"] == pytest.approx(108 + 5e-7)


def test_track_points_are_stamped_with_their_source_frame():
    answer = Answer(task="track", text="", tracks=(TrackPoint(3, 0.1, 1, 10.0, 20.0), TrackPoint(7, 0.2, 2, 5, 6)),
                    points=(Point(42, 1.4, 1.5, 2.5),))
    msgs = convert.tracks_to_points(answer, STAMPS, FALLBACK)
    assert [(m.header.stamp.sec, m.point.x, m.point.y, m.point.z) for m in msgs] == [
        (103, 10.0, 20.0, 1.0), (107, 5.0, 6.0, 2.0), (999, 1.5, 2.5, -1.0)]   # frame 42 unknown -> fallback
    assert msgs[0].header.frame_id == "cam" and msgs[2].header.frame_id == "fallback"


def test_waypoints_path_uses_the_waypoint_frame():
    answer = Answer(task="waypoints", text="", waypoints=(Waypoint(1, 2, 0.5), Waypoint(3, 4, 0.25)),
                    waypoint_frame=5, window_frames=(0, 9))
    path = convert.waypoints_to_path(answer, STAMPS, FALLBACK)
    assert path.header.stamp.sec == 105
    assert [(p.pose.position.x, p.pose.position.y, p.pose.position.z) for p in path.poses] == [(1, 2, 0.5),
                                                                                                 (3, 4, 0.25)]
    assert convert.waypoints_to_path(Answer(task="ask", text="hi"), STAMPS, FALLBACK) is None


def _mask(shape, box, lost=False):
    m = np.zeros(shape, bool)
    if not lost:
        m[box[1]:box[3], box[0]:box[2]] = True
    return ObjectMask(m, 0.9, None if lost else box, lost)


def test_masks_union_and_id_image():
    masks = {0: _mask((12, 16), (0, 0, 4, 4)), 3: _mask((12, 16), (8, 6, 12, 10)), 5: _mask((12, 16), None, True)}
    mono, ids = convert.masks_to_images(masks, STAMPS[4])
    union = np.frombuffer(bytes(mono.data), np.uint8).reshape(12, 16)
    idimg = np.frombuffer(bytes(ids.data), np.uint8).reshape(12, 16)
    assert mono.encoding == ids.encoding == "mono8" and mono.header.stamp.sec == 104
    assert union[0, 0] == 255 and union[7, 9] == 255 and union.sum() == 255 * 32
    assert idimg[0, 0] == 1 and idimg[7, 9] == 4 and set(np.unique(idimg)) == {0, 1, 4}


def test_single_object_gives_no_id_image_and_big_ids_are_refused():
    mono, ids = convert.masks_to_images({1: _mask((4, 4), (0, 0, 2, 2))}, FALLBACK)
    assert mono is not None and ids is None
    with pytest.raises(ValueError, match="object id 300"):
        convert.masks_to_images({300: _mask((4, 4), (0, 0, 2, 2))}, FALLBACK)


def test_markers_cover_tracks_points_and_waypoints():
    answer = Answer(task="track", text="", tracks=(TrackPoint(1, 0, 1, 100, 200), TrackPoint(2, 0, 1, 110, 210)),
                    points=(Point(2, 0, 5, 5),), waypoints=(Waypoint(1, 1, 0.1), Waypoint(2, 2, 0.2)),
                    window_frames=(0, 3))
    markers = convert.answer_markers(answer, STAMPS, FALLBACK, pixel_scale=0.01).markers
    assert markers[0].action == Marker.DELETEALL
    kinds = {(m.ns, m.type) for m in markers[1:]}
    assert kinds == {("tracks", Marker.SPHERE_LIST), ("points", Marker.SPHERE_LIST), ("waypoints", Marker.LINE_STRIP)}
    track = next(m for m in markers if m.ns == "tracks")
    assert track.header.stamp.sec == 102 and track.points[1].x == pytest.approx(1.1)


def test_diagnostics_levels_and_values():
    msg = convert.diagnostics_message("ov2_node", "hw", "warn", "corrupt AU", {"fps": 29.97, "drops": 3}, Time())
    status = msg.status[0]
    assert status.level == DiagnosticStatus.WARN and status.message == "corrupt AU"
    assert {kv.key: kv.value for kv in status.values} == {"fps": "29.97", "drops": "3"}


def test_image_to_rgb_handles_encodings_and_padding():
    rgb = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    padded = np.zeros((5, 24), np.uint8)
    padded[:, :21] = rgb[..., ::-1].reshape(5, 21)
    bgr = Image(height=5, width=7, encoding="bgr8", step=24, data=padded.tobytes())
    assert np.array_equal(convert.image_to_rgb(bgr), rgb)
    mono = Image(height=5, width=7, encoding="mono8", step=7, data=rgb[..., 0].tobytes())
    assert np.array_equal(convert.image_to_rgb(mono)[..., 2], rgb[..., 0])
    with pytest.raises(UnsupportedFormatError, match="32FC1"):
        convert.image_to_rgb(Image(height=1, width=1, encoding="32FC1", step=4, data=b"\0" * 4))
    with pytest.raises(UnsupportedFormatError, match="do not hold"):
        convert.image_to_rgb(Image(height=5, width=7, encoding="rgb8", step=21, data=b"\0" * 10))


def test_jpeg_round_trip_and_garbage():
    rgb = np.full((16, 24, 3), (200, 40, 10), np.uint8)
    ok, jpg = cv2.imencode(".jpg", rgb[..., ::-1])
    back = convert.compressed_to_rgb(CompressedImage(format="jpeg", data=jpg.tobytes()))
    assert back.shape == rgb.shape and np.abs(back.astype(int) - rgb).max() < 12
    with pytest.raises(UnsupportedFormatError, match="not a decodable image"):
        convert.compressed_to_rgb(CompressedImage(format="jpeg", data=b"not a jpeg"))


def test_canvases_mosaic_layout():
    px = np.stack([np.full((2, 3, 3), i, np.uint8) for i in range(5)])
    mosaic = convert.canvases_mosaic(px, columns=4)
    assert mosaic.shape == (4, 12, 3)
    assert mosaic[0, 3, 0] == 1 and mosaic[2, 0, 0] == 4 and mosaic[2, 4, 0] == 0


def test_live_answer_equals_the_replay_bags_answer(tmp_path):
    """One layout: the node's answer JSON and the one replay writes to its results bag agree but for latency."""
    from rosbags.rosbag2 import Reader

    from ov2_ros.eval.bags import BagWriter, typestore
    from ov2_ros.eval.outputs import ResultsBag

    answer = Answer(task="track", text="<tracks>", window_frames=(2, 9), window_span=(0.0, 0.3), latency_s=1.5,
                    tracks=(TrackPoint(3, 0.1, 1, 10.0, 20.0),), points=(Point(8, 0.3, 1.5, 2.5),),
                    waypoints=(Waypoint(1.0, 2.0, 0.5),), errors=("one track dropped",))
    with BagWriter(tmp_path / "out", "sqlite3") as w:
        ResultsBag(w, "cam", lambda f: (100 + f) * 1_000_000_000 + 500).write_window(answer, "track: x", {})
    with Reader(tmp_path / "out") as reader:
        replayed = [json.loads(typestore().deserialize_cdr(raw, c.msgtype).data)
                    for c, _, raw in reader.messages() if c.topic == "/answer"]
    live = json.loads(convert.answer_to_json(answer, "track: x", STAMPS))
    assert live.pop("latency_s") == 1.5 and replayed[0].pop("latency_s") is None
    assert replayed == [live]
