"""Conversions between ROS messages and the pure pipeline's values, as plain functions (testable without a node).

Stamps: the node hands the tokenizer each AU's ``std_msgs/Header`` as the opaque source stamp, so every per-frame
output can be stamped with the header of the frame it refers to (``stamps: dict[frame index, Header]``).
Pixel coordinates stay pixels (x right, y down, in the source frame), as DESIGN.md contract 4 says.
"""
from __future__ import annotations

import json
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
from ov2_ros.model.answer import Answer

VIDEO_FORMATS = ("h264", "hevc")
_FORMAT_ALIASES = {"h264": "h264", "avc": "h264", "h.264": "h264", "hevc": "hevc", "h265": "hevc", "h.265": "hevc"}
_LEVELS = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN, "error": DiagnosticStatus.ERROR,
           "stale": DiagnosticStatus.STALE}


# ---------------------------------------------------------------- inputs
def video_format(msg: CompressedImage, topic: str = "image/compressed") -> str:
    """``h264`` or ``hevc`` from a CompressedImage ``format`` field; anything else (jpeg, png) is refused by name."""
    fmt = (msg.format or "").strip().lower()
    for token in fmt.replace(";", " ").split():
        if token in _FORMAT_ALIASES:
            return _FORMAT_ALIASES[token]
    raise UnsupportedFormatError(
        f"{topic}: format {msg.format!r} is not an H.264/HEVC access unit; publish h264 (Annex-B, one AU per message)"
        f" or run h264_encoder_node to convert raw/JPEG images")


def stamp_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def copy_header(header: Header) -> Header:
    return Header(stamp=Time(sec=header.stamp.sec, nanosec=header.stamp.nanosec), frame_id=header.frame_id)


def image_to_rgb(msg: Image) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) -> RGB uint8 (H, W, 3)."""
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
    enc = msg.encoding.lower()
    if enc not in channels:
        raise UnsupportedFormatError(f"image encoding {msg.encoding!r} not supported (use one of {sorted(channels)})")
    c = channels[enc]
    buf = np.frombuffer(bytes(msg.data), np.uint8)
    if msg.step < msg.width * c or buf.size < msg.step * msg.height:
        raise UnsupportedFormatError(f"image {msg.width}x{msg.height} {enc}: step {msg.step} / {buf.size} bytes "
                                     "do not hold the picture")
    img = buf[: msg.step * msg.height].reshape(msg.height, msg.step)[:, : msg.width * c].reshape(
        msg.height, msg.width, c)
    if c == 1:
        return np.repeat(img, 3, axis=2)
    rgb = img[..., :3]
    return np.ascontiguousarray(rgb[..., ::-1] if enc.startswith("bgr") else rgb)


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """A JPEG/PNG CompressedImage -> RGB uint8 (H, W, 3)."""
    import cv2

    bgr = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise UnsupportedFormatError(f"CompressedImage with format {msg.format!r}: bytes are not a decodable image")
    return np.ascontiguousarray(bgr[..., ::-1])


def h264_message(au: bytes, header: Header) -> CompressedImage:
    return CompressedImage(header=copy_header(header), format="h264", data=au)


# ---------------------------------------------------------------- outputs
def answer_to_json(answer: Answer, query_text: str, stamps: Mapping[int, Header]) -> str:
    """The ``answer`` topic payload: task, text, parsed result, window span (seconds, frames, source stamps)."""
    d = answer.to_json_dict()
    start, end = answer.window_frames
    window = {"start_s": answer.window_span[0], "end_s": answer.window_span[1], "start_frame": start,
              "end_frame": end}
    first, last = stamps.get(start), stamps.get(end - 1) if end > start else None
    if first is not None:
        window["start_stamp"] = stamp_seconds(first.stamp)
    if last is not None:
        window["end_stamp"] = stamp_seconds(last.stamp)
    payload = {"task": answer.task, "query": query_text, "text": answer.text,
               "result": {k: d[k] for k in ("tracks", "points", "waypoints", "waypoint_frame", "spans")},
               "window": window, "errors": list(answer.errors), "latency_s": answer.latency_s}
    return json.dumps(payload, default=_jsonable)


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    return str(o)


def answer_message(answer: Answer, query_text: str, stamps: Mapping[int, Header]) -> String:
    return String(data=answer_to_json(answer, query_text, stamps))


def _header_for(frame: int, stamps: Mapping[int, Header], fallback: Header) -> Header:
    h = stamps.get(frame)
    return copy_header(h if h is not None else fallback)


def tracks_to_points(answer: Answer, stamps: Mapping[int, Header], fallback: Header) -> list[PointStamped]:
    """One PointStamped per track point and per ``point`` answer: x, y pixels, z = object id (points: -1)."""
    out = [PointStamped(header=_header_for(t.frame, stamps, fallback), point=PointMsg(x=float(t.x), y=float(t.y),
                                                                                       z=float(t.obj_id)))
           for t in answer.tracks]
    out += [PointStamped(header=_header_for(p.frame, stamps, fallback), point=PointMsg(x=float(p.x), y=float(p.y),
                                                                                        z=-1.0))
            for p in answer.points]
    return out


def waypoints_to_path(answer: Answer, stamps: Mapping[int, Header], fallback: Header) -> Path | None:
    """nav_msgs/Path in pixels (x, y) with z the normalised depth; stamped with the frame the waypoints refer to."""
    if not answer.waypoints:
        return None
    frame = answer.waypoint_frame if answer.waypoint_frame is not None else answer.window_frames[1] - 1
    header = _header_for(frame, stamps, fallback)
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
    live = {k: m for k, m in masks.items() if not getattr(m, "lost", False)}
    if not masks:
        return None, None
    shape = next(iter(masks.values())).mask.shape
    union = np.zeros(shape, np.uint8)
    ids = np.zeros(shape, np.uint8)
    for obj_id, m in sorted(live.items()):
        if not 0 <= obj_id < 255:
            raise ValueError(f"object id {obj_id} does not fit the mono8 mask/ids image (0..254)")
        on = np.asarray(m.mask, bool)
        union[on] = 255
        ids[on] = obj_id + 1
    return mono8_image(union, header), (mono8_image(ids, header) if len(masks) > 1 else None)


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
        frame = answer.waypoint_frame if answer.waypoint_frame is not None else answer.window_frames[1] - 1
        m = Marker(header=_header_for(frame, stamps, fallback), ns="waypoints", id=0, type=Marker.LINE_STRIP,
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
