"""The results bag's output topics: points, waypoints and masks stamped with their own frames' source stamps."""
import json

import numpy as np
from rosbags.rosbag2 import Reader

from ov2_ros.eval.bags import BagWriter, typestore
from ov2_ros.eval.outputs import ResultsBag, mask_union
from ov2_ros.model.answer import Answer, Point, TrackPoint, Waypoint
from ov2_ros.segment.tracker import ObjectMask

T0 = 1_700_000_000_000_000_000


def stamp_of(frame):
    return T0 + frame * 50_000_000


def _read(path):
    store = typestore()
    with Reader(path) as reader:
        return [(c.topic, t, store.deserialize_cdr(raw, c.msgtype)) for c, t, raw in reader.messages()]


def _ns(header):
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def test_every_output_topic_with_source_stamps(tmp_path):
    answer = Answer(task="track", text="the mug", window_frames=(10, 20), window_span=(0.5, 0.95),
                    tracks=(TrackPoint(12, 0.6, 1, 30.5, 40.0), TrackPoint(15, 0.75, 2, 31.0, 41.0)),
                    points=(Point(19, 0.95, 5.0, 6.0),), waypoints=(Waypoint(1.0, 2.0, 0.5), Waypoint(3.0, 4.0, 0.25)))
    m1 = np.zeros((12, 16), bool)
    m1[2:5, 3:6] = True
    m2 = np.zeros((12, 16), bool)
    m2[8:10, 8:12] = True
    objects = {1: ObjectMask(m1, 0.9, (3, 2, 6, 5), False), 2: ObjectMask(m2, 0.8, (8, 8, 12, 10), False),
               3: ObjectMask(np.ones((12, 16), bool), 0.1, None, True)}           # lost: contributes nothing
    union = mask_union(objects)
    assert union.dtype == np.uint8 and (union == 255).sum() == 9 + 8
    assert mask_union({}) is None
    with BagWriter(tmp_path / "out", "sqlite3") as w:
        ResultsBag(w, "camera", stamp_of).write_window(answer, "track: the mug", {12: union})
    msgs = _read(tmp_path / "out")
    by_topic = {}
    for topic, log_ns, msg in msgs:
        by_topic.setdefault(topic, []).append(msg)
        assert log_ns == stamp_of(19)              # the window's newest frame
    assert sorted(by_topic) == ["/answer", "/mask", "/tracking/points", "/waypoints"]
    payload = json.loads(by_topic["/answer"][0].data)
    assert payload["result"]["tracks"][0]["x"] == 30.5 and payload["window"]["start_stamp"] == stamp_of(10) / 1e9
    pts = by_topic["/tracking/points"]
    assert [(_ns(p.header), p.point.x, p.point.z) for p in pts] == [
        (stamp_of(12), 30.5, 1.0), (stamp_of(15), 31.0, 2.0), (stamp_of(19), 5.0, -1.0)]
    assert {p.header.frame_id for p in pts} == {"camera"}
    path = by_topic["/waypoints"][0]
    assert _ns(path.header) == stamp_of(19)        # no waypoint_frame: the newest frame of the window
    assert [(p.pose.position.x, p.pose.position.z) for p in path.poses] == [(1.0, 0.5), (3.0, 0.25)]
    mask = by_topic["/mask"][0]
    assert (mask.encoding, mask.height, mask.width, _ns(mask.header)) == ("mono8", 12, 16, stamp_of(12))
    assert np.array_equal(np.asarray(mask.data).reshape(12, 16), union)
