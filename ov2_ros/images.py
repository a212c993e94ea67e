"""Camera payloads as plain values, shared by the ROS bridge (rclpy messages) and bag replay (rosbags messages):
the kind a CompressedImage ``format`` names, raw ``sensor_msgs/Image`` bytes -> RGB, JPEG/PNG bytes -> RGB.

Pure: numpy (and OpenCV for JPEG/PNG). Problems raise ``UnsupportedFormatError`` (a ValueError) naming ``where``.
"""
from __future__ import annotations

from typing import Literal

import numpy as np

from ov2_ros.codec.errors import UnsupportedFormatError

PayloadKind = Literal["h264", "hevc", "jpeg", "png"]
_KINDS: dict[str, PayloadKind] = {"h264": "h264", "avc": "h264", "h.264": "h264", "hevc": "hevc", "h265": "hevc",
                                  "h.265": "hevc", "jpeg": "jpeg", "jpg": "jpeg", "png": "png"}
RAW_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}


def payload_kind(fmt: str) -> PayloadKind | None:
    """The payload a CompressedImage ``format`` names (``h264``, ``H.265``, ``rgb8; jpeg compressed bgr8``, ...);
    None when it names none of h264, hevc, jpeg, png."""
    for token in (fmt or "").strip().lower().replace(";", " ").split():
        if token in _KINDS:
            return _KINDS[token]
    return None


def raw_to_rgb(encoding: str, width: int, height: int, step: int, data, where: str = "image") -> np.ndarray:
    """A raw image's bytes (rgb8, bgr8, rgba8, bgra8, mono8; rows ``step`` bytes apart) -> RGB uint8 (H, W, 3)."""
    enc = encoding.lower()
    if enc not in RAW_CHANNELS:
        raise UnsupportedFormatError(f"{where}: image encoding {encoding!r} not supported (use one of "
                                     f"{sorted(RAW_CHANNELS)})")
    c = RAW_CHANNELS[enc]
    buf = np.frombuffer(data, np.uint8)          # bytes, array.array (rclpy) or a uint8 ndarray (rosbags)
    if step < width * c or buf.size < step * height:
        raise UnsupportedFormatError(f"{where}: {width}x{height} {enc} with step {step}: {buf.size} bytes do not hold "
                                     "the picture")
    img = buf[: step * height].reshape(height, step)[:, : width * c].reshape(height, width, c)
    if c == 1:
        return np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img[..., 2::-1] if enc.startswith("bgr") else img[..., :3])


def encoded_to_rgb(data: bytes, where: str = "image") -> np.ndarray:
    """JPEG/PNG file bytes -> RGB uint8 (H, W, 3)."""
    import cv2

    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise UnsupportedFormatError(f"{where}: bytes are not a decodable image (JPEG/PNG)")
    return np.ascontiguousarray(bgr[..., ::-1])
