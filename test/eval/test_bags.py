"""Bag IO with real rosbags MCAP and sqlite3 files holding libx264 H.264, raw and JPEG images."""
import re

import av
import cv2
import numpy as np
import pytest

from ov2_ros.codec.synth import event_frames
from ov2_ros.eval.bags import BagWriter, access_units, bag_topics, message_count, read_images, write_image_bag
from ov2_ros.eval.errors import BagError, ClockJumpError, EvalError, TopicNotFoundError

T0 = 1_700_000_000_000_000_000          # a realistic epoch stamp in ns
DT = 33_333_333
TOPIC = "/camera/image/compressed"


def _stamps(n):
    return [T0 + i * DT for i in range(n)]


def _decode_count(aus):
    ctx = av.CodecContext.create("h264", "r")
    n = 0
    for au in aus:
        p = av.Packet(len(au))
        p.update(au)
        n += len(ctx.decode(p))
    return n + len(ctx.decode(None))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_h264_round_trip_keeps_bytes_and_stamps(tmp_path, small_clip, storage):
    bag = write_image_bag(tmp_path / "bag", _stamps(small_clip.num_frames), small_clip.aus, storage=storage)
    assert bag_topics(bag) == {TOPIC: "sensor_msgs/msg/CompressedImage"}
    assert message_count(bag, TOPIC) == small_clip.num_frames and message_count(bag, "/x") == 0
    images = list(read_images(bag, TOPIC))
    assert [i.data for i in images] == list(small_clip.aus)
    assert [i.stamp_ns for i in images] == _stamps(small_clip.num_frames)
    assert {i.kind for i in images} == {"h264"} and images[0].frame_id == "camera"
    # H.264 passes through untouched, stamps kept
    assert list(access_units(images)) == list(zip(small_clip.aus, _stamps(small_clip.num_frames)))


def test_raw_images_are_encoded_with_the_bridge_encoder(tmp_path):
    frames = [f for f, _ in event_frames(160, 120)][:24]
    bag = write_image_bag(tmp_path / "raw", _stamps(24), frames, topic="/cam/raw", kind="raw", storage="sqlite3")
    images = list(read_images(bag, "/cam/raw"))
    assert images[0].kind == "raw" and np.array_equal(images[5].rgb, frames[5])
    aus = list(access_units(images))
    assert [s for _, s in aus] == _stamps(24)                     # one AU per frame, each with its own stamp
    assert aus[0][0].startswith(b"\x00\x00\x00\x01")              # Annex-B
    assert _decode_count([a for a, _ in aus]) == 24


def test_jpeg_images_are_decoded_then_encoded(tmp_path):
    frames = [f for f, _ in event_frames(160, 120)][:10]
    jpegs = [cv2.imencode(".jpg", f[..., ::-1])[1].tobytes() for f in frames]
    bag = write_image_bag(tmp_path / "jpg", _stamps(10), jpegs, topic="/cam/jpeg", kind="jpeg")
    images = list(read_images(bag, "/cam/jpeg"))
    assert {i.kind for i in images} == {"jpeg"}
    aus = list(access_units(images))
    assert len(aus) == 10 and _decode_count([a for a, _ in aus]) == 10


def test_zero_header_stamp_falls_back_to_log_time(tmp_path, small_clip):
    with BagWriter(tmp_path / "b") as w:
        for i, au in enumerate(small_clip.aus[:3]):
            msg = w.msg("sensor_msgs/msg/CompressedImage", header=w.header(0), format="h264",
                        data=np.frombuffer(au, np.uint8))
            w.write(TOPIC, msg, T0 + i)
    assert [i.stamp_ns for i in read_images(tmp_path / "b", TOPIC)] == [T0, T0 + 1, T0 + 2]


# ---------------------------------------------------------------- bad input

def test_missing_topic_names_the_image_topics(tmp_path, small_clip):
    bag = write_image_bag(tmp_path / "b", _stamps(5), small_clip.aus[:5])
    with pytest.raises(TopicNotFoundError, match=r"no topic '/other'.*camera/image/compressed"):
        list(read_images(bag, "/other"))


def test_clock_jump_is_refused(tmp_path, small_clip):
    # log times (arrival) increase, but the camera clock stepped back at message 4
    with BagWriter(tmp_path / "b", "sqlite3") as w:
        for i, au in enumerate(small_clip.aus[:6]):
            stamp = T0 + (i if i < 4 else i - 3) * DT
            msg = w.msg("sensor_msgs/msg/CompressedImage", header=w.header(stamp), format="h264",
                        data=np.frombuffer(au, np.uint8))
            w.write(TOPIC, msg, T0 + i * DT + 5)
    with pytest.raises(ClockJumpError, match=r"message 4: stamp .* is not after .*clock jump of -0.067 s"):
        list(read_images(tmp_path / "b", TOPIC))


def test_not_a_bag_and_corrupt_metadata(tmp_path, small_clip):
    with pytest.raises(FileNotFoundError):
        bag_topics(tmp_path / "nope")
    (tmp_path / "dir").mkdir()
    with pytest.raises(BagError, match="no metadata.yaml"):
        bag_topics(tmp_path / "dir")
    bag = write_image_bag(tmp_path / "b", _stamps(3), small_clip.aus[:3])
    meta = bag / "metadata.yaml"
    text, n = re.subn(r"(\n\s*version:\s*)\d+", r"\g<1>999", meta.read_text(), count=1)
    assert n == 1
    meta.write_text(text)
    with pytest.raises(BagError, match="cannot read bag"):
        bag_topics(bag)


def test_truncated_storage_file_is_a_bag_error(tmp_path, small_clip):
    bag = write_image_bag(tmp_path / "b", _stamps(8), small_clip.aus[:8])
    mcap = next(bag.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: 200])
    with pytest.raises(EvalError):
        list(read_images(bag, TOPIC))


def test_unsupported_format_and_wrong_type(tmp_path, small_clip):
    bag = write_image_bag(tmp_path / "b", _stamps(2), small_clip.aus[:2], kind="theora")   # type: ignore[arg-type]
    with pytest.raises(BagError, match="format 'theora'"):
        list(read_images(bag, TOPIC))
    with BagWriter(tmp_path / "s") as w:
        w.write("/chatter", w.msg("std_msgs/msg/String", data="hi"), T0)
    with pytest.raises(BagError, match="std_msgs/msg/String"):
        list(read_images(tmp_path / "s", "/chatter"))
    with pytest.raises(BagError, match="already exists"):
        BagWriter(tmp_path / "s")


def _bag(path, storage, aus, stamps, log_times):
    with BagWriter(path, storage) as w:
        for au, stamp, log_ns in zip(aus, stamps, log_times, strict=True):
            w.write(TOPIC, w.msg("sensor_msgs/msg/CompressedImage", header=w.header(stamp), format="h264",
                                 data=np.frombuffer(au, np.uint8)), log_ns)
    return path


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_recorder_clock_step_back_is_refused_not_replayed_scrambled(tmp_path, clip_factory, storage):
    """Issue 10 item 5: log times that step back made rosbags yield two GOPs interleaved, which replayed with exit 0."""
    aus = clip_factory(160, 120, gop=30).aus[:90]
    stepped = [T0 + (i if i < 45 else i - 60) * DT for i in range(90)]       # the clock steps back 2 s at message 45
    with pytest.raises(ClockJumpError, match=r"message 45: .*clock jump of -1.967 s"):
        list(read_images(_bag(tmp_path / "jump", storage, aus, stepped, stepped), TOPIC))
    swapped = _stamps(90)
    swapped[0], swapped[1] = swapped[1], swapped[0]                           # the first two stamps swapped
    with pytest.raises(ClockJumpError, match="message 1: "):
        list(read_images(_bag(tmp_path / "swap", storage, aus, swapped, swapped), TOPIC))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_messages_come_in_write_order_when_only_the_recorder_clock_stepped(tmp_path, clip_factory, storage):
    aus = clip_factory(160, 120, gop=30).aus[:90]
    log_times = [T0 + (i if i < 45 else i - 60) * DT for i in range(90)]
    images = list(read_images(_bag(tmp_path / "b", storage, aus, _stamps(90), log_times), TOPIC))
    assert [i.data for i in images] == list(aus) and [i.stamp_ns for i in images] == _stamps(90)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_foxglove_compressed_video_is_read_with_the_definition_the_bag_carries(tmp_path, small_clip, hevc_aus,
                                                                                 storage):
    from rosbags.rosbag2 import Reader

    bag = write_image_bag(tmp_path / "fox", _stamps(small_clip.num_frames), small_clip.aus, storage=storage,
                          foxglove=True, topic="/cam/video")
    with Reader(bag) as reader:                      # what a Foxglove bag holds: the type and its definition
        conn = reader.connections[0]
        assert conn.msgtype == "foxglove_msgs/msg/CompressedVideo" and "uint8[] data" in conn.msgdef.data
    assert bag_topics(bag) == {"/cam/video": "foxglove_msgs/msg/CompressedVideo"}
    images = list(read_images(bag, "/cam/video"))
    assert [i.data for i in images] == list(small_clip.aus) and {i.kind for i in images} == {"h264"}
    assert [i.stamp_ns for i in images] == _stamps(small_clip.num_frames) and images[0].frame_id == "camera"
    h265 = write_image_bag(tmp_path / "fox265", _stamps(len(hevc_aus)), hevc_aus, kind="hevc", foxglove=True)
    assert {i.kind for i in read_images(h265, TOPIC)} == {"hevc"}


def test_foxglove_video_in_another_codec_is_refused(tmp_path, small_clip):
    with BagWriter(tmp_path / "vp9") as w:
        for i, au in enumerate(small_clip.aus[:3]):
            w.write(TOPIC, w.msg("foxglove_msgs/msg/CompressedVideo", timestamp=w.header(T0 + i * DT).stamp,
                                 frame_id="cam", format="vp9", data=np.frombuffer(au, np.uint8)), T0 + i * DT)
    with pytest.raises(BagError, match="format 'vp9'"):
        list(read_images(tmp_path / "vp9", TOPIC))


@pytest.mark.parametrize("cut", [1, 100])
def test_sqlite_bag_cut_short_is_refused_even_when_sqlite_reads_it(tmp_path, small_clip, cut):
    bag = write_image_bag(tmp_path / "b", _stamps(90), small_clip.aus[:90], storage="sqlite3")
    db = next(bag.glob("*.db3"))
    db.write_bytes(db.read_bytes()[:-cut])
    with pytest.raises(BagError, match=rf"storage file cut short \(b.db3 is {db.stat().st_size} bytes, not a whole "
                                       r"number of its \d+-byte pages\)"):
        list(read_images(bag, TOPIC))
