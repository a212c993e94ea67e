"""The H.264 bridge: raw or JPEG images in, decodable Annex-B H.264 out, stamps copied, headers before every IDR."""
import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from ov2_ros.codec.decoder import StreamDecoder
from ov2_ros.codec.encoder import EncoderConfig, H264Encoder
from ov2_ros.codec.nal import H264_IDR, H264_PPS, H264_SPS, nal_type_h264, split_nal_units
from ov2_ros.codec.synth import event_frames
from ov2_ros.errors import ConfigError
from ov2_ros.ros.encoder_node import H264EncoderNode

FRAMES = [f for f, _ in event_frames(64, 48)][:24]


def _types(au: bytes) -> list[int]:
    return [nal_type_h264(n) for n in split_nal_units(au)]


def _decode_all(aus: list[bytes]) -> list:
    with StreamDecoder(threads="none") as dec:
        frames = [f for au in aus for f in dec.decode(au)]
        return frames + dec.flush()


def test_encoder_one_au_per_frame_with_headers_before_each_idr():
    enc = H264Encoder(64, 48, EncoderConfig(gop=8))
    aus = [au for f in FRAMES for au in enc.encode(f)]
    assert len(aus) == len(FRAMES) and enc.flush() == []   # zerolatency: nothing held back
    for i, au in enumerate(aus):
        types = _types(au)
        if i % 8 == 0:
            assert H264_IDR in types and types.index(H264_SPS) < types.index(H264_PPS) < types.index(H264_IDR)
        else:
            assert H264_IDR not in types and H264_SPS not in types
    decoded = _decode_all(aus)
    assert len(decoded) == len(FRAMES)
    assert np.abs(decoded[5].rgb().astype(int) - FRAMES[5]).mean() < 8


def test_encoder_refuses_bad_sizes_and_settings():
    with pytest.raises(ConfigError, match="even width/height"):
        H264Encoder(63, 48)
    with pytest.raises(ConfigError, match="gop"):
        EncoderConfig(gop=0)
    with pytest.raises(ConfigError, match="expects uint8"):
        H264Encoder(64, 48).encode(np.zeros((48, 64), np.uint8))


def _raw(rgb: np.ndarray, sec: int) -> Image:
    h, w, _ = rgb.shape
    return Image(header=Header(stamp=Time(sec=sec, nanosec=7), frame_id="cam"), height=h, width=w, encoding="rgb8",
                 step=3 * w, data=rgb.tobytes())


def test_bridge_raw_to_h264_copies_stamps_and_restarts_on_resize(ros):
    node = ros.add(H264EncoderNode(parameter_overrides=[Parameter("gop", value=10)]))
    out = ros.collect(CompressedImage, "image/compressed", qos=10)
    pub = ros.publisher(Image, "image")
    ros.wait_for_subscribers(pub)
    ros.wait_until(lambda: node.count_publishers("image/compressed") >= 1, what="bridge publisher")
    for i, f in enumerate(FRAMES[:12]):
        pub.publish(_raw(f, 100 + i))
        ros.wait_until(lambda: len(out) == i + 1, 10, f"AU {i}")
    big = cv2.resize(FRAMES[12], (96, 64))
    pub.publish(_raw(big, 500))
    pub.publish(Image(header=Header(frame_id="cam"), height=2, width=2, encoding="32FC1", step=8, data=b"\0" * 16))
    ros.wait_until(lambda: len(out) == 13 and node.errors == 1, 10, "resized AU and one refused frame")
    assert [m.header.stamp.sec for m in out] == list(range(100, 112)) + [500]
    assert all(m.format == "h264" and m.header.frame_id == "cam" for m in out)
    assert H264_IDR in _types(bytes(out[10].data)) and H264_SPS in _types(bytes(out[12].data))
    decoded = _decode_all([bytes(m.data) for m in out])
    assert [(f.width, f.height) for f in decoded] == [(64, 48)] * 12 + [(96, 64)]


def test_bridge_jpeg_input(ros):
    ros.add(H264EncoderNode(parameter_overrides=[Parameter("input", value="jpeg")]))
    out = ros.collect(CompressedImage, "image/compressed", qos=10)
    pub = ros.publisher(CompressedImage, "image/jpeg")
    ros.wait_for_subscribers(pub)
    for i in range(3):
        ok, jpg = cv2.imencode(".jpg", FRAMES[i][..., ::-1])
        pub.publish(CompressedImage(header=Header(stamp=Time(sec=i)), format="jpeg", data=jpg.tobytes()))
    ros.wait_until(lambda: len(out) == 3, 10, "3 AUs from JPEG")
    assert len(_decode_all([bytes(m.data) for m in out])) == 3
