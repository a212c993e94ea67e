"""Conversions between ROS messages and the pure pipeline's values, as plain functions (testable without a node).

Stamps: the node hands the tokenizer each AU's ``std_msgs/Header`` as the opaque source stamp, so every per-frame
output can be stamped with the header of the frame it refers to (``stamps: dict[frame index, Header]``).
Pixel coordinates stay pixels (x right, y down, in the source frame), as DESIGN.md contract 4 says.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point as PointMsg
from geometry_msgs.msg import PointStamped, PoseStamped
from nav_msgs.msg import Path
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import ColorRGBA, Header, String
from visualization_msgs.msg import Marker, MarkerArray

from ov2_ros.codec.errors import UnsupportedFormatError
from ov2_ros.images import encoded_to_rgb, payload_kind, raw_to_rgb
from ov2_ros.model.answer import Answer
from ov2_ros.results import answer_json, located_points, mask_union, waypoint_frame

VIDEO_FORMATS = ("h264", "hevc")
_LEVELS = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN, "error": DiagnosticStatus.ERROR,
           "stale": DiagnosticStatus.STALE}


# ---------------------------------------------------------------- inputs
def video_format(msg: CompressedImage, topic: str = "image/compressed") -> str:
    """``h264`` or ``hevc`` from a CompressedImage ``format`` field; anything else (jpeg, png) is refused by name."""
    kind = payload_kind(msg.format)
    if kind in VIDEO_FORMATS:
        return kind
    raise UnsupportedFormatError(
        f"{topic}: format {msg.format!r} is not an H.264/HEVC access unit; publish h264 (Annex-B, one AU per message)"
        f" or run h264_encoder_node to convert raw/JPEG images")


def stamp_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def copy_header(header: Header) -> Header:
    return Header(stamp=Time(sec=header.stamp.sec, nanosec=header.stamp.nanosec), frame_id=header.frame_id)


def image_to_rgb(msg: Image) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) -> RGB uint8 (H, W, 3)."""
    return raw_to_rgb(msg.encoding, msg.width, msg.height, msg.step, bytes(msg.data), "sensor_msgs/Image")


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """A JPEG/PNG CompressedImage -> RGB uint8 (H, W, 3)."""
    return encoded_to_rgb(bytes(msg.data), f"CompressedImage with format {msg.format!r}")


def h264_message(au: bytes, header: Header) -> CompressedImage:
    return CompressedImage(header=copy_header(header), format="h264", data=au)


# ---------------------------------------------------------------- outputs
def answer_to_json(answer: Answer, query_text: str, stamps: Mapping[int, Header]) -> str:
    """The ``answer`` topic payload (``ov2_ros.results.answer_json``) with the frames' header stamps."""
    def stamp_s(frame: int) -> float | None:
        header = stamps.get(frame)
        return None if header is None else stamp_seconds(header.stamp)

    return answer_json(answer, query_text, stamp_s, answer.latency_s)


def answer_message(answer: Answer, query_text: str, stamps: Mapping[int, Header]) -> String:
    return String(data=answer_to_json(answer, query_text, stamps))


def _header_for(frame: int, stamps: Mapping[int, Header], fallback: Header) -> Header:
    h = stamps.get(frame)
    return copy_header(h if h is not None else fallback)


def tracks_to_points(answer: Answer, stamps: Mapping[int, Header], fallback: Header) -> list[PointStamped]:
    """One PointStamped per track point and per ``point`` answer: x, y pixels, z = object id (points: -1)."""
    return [PointStamped(header=_header_for(frame, stamps, fallback), point=PointMsg(x=x, y=y, z=z))
            for frame, x, y, z in located_points(answer)]


def waypoints_to_path(answer: Answer, stamps: Mapping[int, Header], fallback: Header) -> Path | None:
    """nav_msgs/Path in pixels (x, y) with z the depth in metres (the model's [x, y, d]); stamped with the frame the
    waypoints refer to."""
    if not answer.waypoints:
        return None
    header = _header_for(waypoint_frame(answer), stamps, fallback)
    path = Path(header=header)
    for w in answer.waypoints:
        pose = PoseStamped(header=copy_header(header))
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = float(w.x), float(w.y), float(w.z)
        pose.pose.orientation.w = 1.0
        path.poses.append(pose)
    return path


def mono8_image(array: np.ndarray, header: Header) -> Image:
    a = np.ascontiguousarray(array, dtype=np.uint8)
    h, w = a.shape
    return Image(header=copy_header(header), height=h, width=w, encoding="mono8", is_bigendian=0, step=w,
                 data=a.tobytes())


def rgb_image(array: np.ndarray, header: Header) -> Image:
    a = np.ascontiguousarray(array, dtype=np.uint8)
    h, w, _ = a.shape
    return Image(header=copy_header(header), height=h, width=w, encoding="rgb8", is_bigendian=0, step=3 * w,
                 data=a.tobytes())


def masks_to_images(masks: Mapping[int, Any], header: Header) -> tuple[Image | None, Image | None]:
    """Object masks of one frame -> (union mono8 0/255, object-id mono8 or None when there is one object).

    ``masks``: obj_id -> object with ``.mask`` (H, W) bool and ``.lost``. Lost objects contribute nothing. The id
    image holds ``obj_id + 1`` (0 = background), so ids 0..254 fit mono8; others are refused.
    """
    union = mask_union(masks)
    if union is None:
        return None, None
    live = {k: m for k, m in sorted(masks.items()) if not getattr(m, "lost", False)}
    for obj_id in live:
        if not 0 <= obj_id < 255:
            raise ValueError(f"object id {obj_id} does not fit the mono8 mask/ids image (0..254)")
    if len(masks) == 1:
        return mono8_image(union, header), None
    ids = np.zeros(union.shape, np.uint8)
    for obj_id, m in live.items():
        ids[np.asarray(m.mask, bool)] = obj_id + 1
    return mono8_image(union, header), mono8_image(ids, header)


_PALETTE = [(0.9, 0.2, 0.2), (0.2, 0.8, 0.2), (0.2, 0.4, 0.9), (0.9, 0.8, 0.1), (0.8, 0.2, 0.8), (0.1, 0.8, 0.8)]


def _color(i: int) -> ColorRGBA:
    r, g, b = _PALETTE[i % len(_PALETTE)]
    return ColorRGBA(r=r, g=g, b=b, a=1.0)


def answer_markers(answer: Answer, stamps: Mapping[int, Header], fallback: Header,
                   pixel_scale: float = 0.001) -> MarkerArray:
    """RViz markers on the image plane: pixels * ``pixel_scale`` metres. One sphere list per tracked object (its
    newest frame's stamp), a line strip for waypoints, and a DELETEALL first so old markers vanish."""
    out = MarkerArray(markers=[Marker(header=copy_header(fallback), action=Marker.DELETEALL)])
    by_obj: dict[int, list] = {}
    for t in answer.tracks:
        by_obj.setdefault(t.obj_id, []).append(t)
    for obj_id, pts in sorted(by_obj.items()):
        m = Marker(header=_header_for(max(p.frame for p in pts), stamps, fallback), ns="tracks", id=obj_id,
                   type=Marker.SPHERE_LIST, action=Marker.ADD, color=_color(obj_id))
        m.scale.x = m.scale.y = m.scale.z = 8 * pixel_scale
        m.pose.orientation.w = 1.0
        m.points = [PointMsg(x=p.x * pixel_scale, y=p.y * pixel_scale, z=0.0) for p in pts]
        m.text = pts[0].label
        out.markers.append(m)
    if answer.points:
        m = Marker(header=_header_for(answer.points[-1].frame, stamps, fallback), ns="points", id=0,
                   type=Marker.SPHERE_LIST, action=Marker.ADD, color=_color(3))
        m.scale.x = m.scale.y = m.scale.z = 8 * pixel_scale
        m.pose.orientation.w = 1.0
        m.points = [PointMsg(x=p.x * pixel_scale, y=p.y * pixel_scale, z=0.0) for p in answer.points]
        out.markers.append(m)
    if answer.waypoints:
        m = Marker(header=_header_for(waypoint_frame(answer), stamps, fallback), ns="waypoints", id=0, type=Marker.LINE_STRIP,
                   action=Marker.ADD, color=_color(1))
        m.scale.x = 3 * pixel_scale
        m.pose.orientation.w = 1.0
        m.points = [PointMsg(x=w.x * pixel_scale, y=w.y * pixel_scale, z=float(w.z)) for w in answer.waypoints]
        out.markers.append(m)
    return out


def diagnostics_message(name: str, hardware_id: str, level: str, message: str, values: Mapping[str, Any],
                        stamp: Time) -> DiagnosticArray:
    """One DiagnosticStatus. ``level`` is ok/warn/error/stale; values are stringified (floats to 4 significant)."""
    kv = [KeyValue(key=k, value=(f"{v:.4g}" if isinstance(v, float) else str(v))) for k, v in values.items()]
    status = DiagnosticStatus(level=_LEVELS[level], name=name, hardware_id=hardware_id, message=message[:512],
                              values=kv)
    return DiagnosticArray(header=Header(stamp=stamp), status=[status])


def canvases_mosaic(pixels: np.ndarray, columns: int = 4) -> np.ndarray:
    """(N, H, W, 3) canvases -> one (rows*H, columns*W, 3) image, row-major, black where a row is short."""
    n, h, w, _ = pixels.shape
    rows = -(-n // columns)
    out = np.zeros((rows * h, columns * w, 3), np.uint8)
    for i in range(n):
        r, c = divmod(i, columns)
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = pixels[i]
    return out
