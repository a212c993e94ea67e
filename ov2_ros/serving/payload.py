"""Windows on the wire: canvases (JPEG, or I420 planes), patch positions, frame times and stamps, and the query.

Never frames. Each ``FrameGroup`` is encoded once, under a key that names it and digests its encoded bytes
(``index:start-end:digest``). A request lists the window's group keys and carries only the groups the replica is
not known to hold, so a slide by one group sends one group. The replica keeps each stream's recent groups
(``StreamGroups``); a key it does not hold (a restarted or evicted replica) is answered ``missing``, and the client
sends those groups again: a window is only ever answered from the exact bytes the client encoded.

Pure: numpy, OpenCV and the codec types; no Ray, no torch.
"""
from __future__ import annotations

import hashlib
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from ov2_ros.codec.packing import yuv_to_rgb
from ov2_ros.codec.types import Canvas, CodecWindow, FrameGroup
from ov2_ros.model.answer import Answer, Point, Query, Span, TrackPoint, Waypoint
from ov2_ros.serving.errors import PayloadError

VERSION = 1
Encoding = Literal["jpeg", "i420"]
ENCODINGS: tuple[str, ...] = ("jpeg", "i420")


@dataclass(frozen=True)
class WireGroup:
    """One group as sent: ``key`` and the JSON-able dict with its encoded canvases (``bytes`` values)."""

    key: str
    body: dict[str, Any]

    @property
    def nbytes(self) -> int:
        return sum(len(b) for b in self.body["canvases"]) + sum(len(b) for b in self.body["residuals"]) + \
            len(self.body["positions"])


# ------------------------------------------------------------------------------------------------ canvases
def encode_canvas(rgb: np.ndarray, encoding: Encoding, quality: int = 90) -> tuple[bytes, bytes]:
    """(image bytes, residual bytes). ``jpeg``: lossy, no residual. ``i420``: the zlib'd I420 planes plus the zlib'd
    int16 difference to the RGB they convert back to (empty when there is none), so decoding is exact: the canvases
    come from I420 already, and the residual only covers rounding and clipping of the round trip."""
    if encoding == "jpeg":
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise PayloadError(f"JPEG encoding of a {rgb.shape} canvas failed")
        return buf.tobytes(), b""
    if encoding == "i420":
        yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
        diff = rgb.astype(np.int16) - yuv_to_rgb(yuv)
        residual = zlib.compress(diff.tobytes(), 1) if diff.any() else b""
        return zlib.compress(yuv.tobytes(), 1), residual
    raise PayloadError(f"canvas encoding must be one of {ENCODINGS}, got {encoding!r}")


def decode_canvas(data: bytes, residual: bytes, encoding: str, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 RGB of one encoded canvas of ``size`` (H, W)."""
    h, w = size
    if encoding == "jpeg":
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None or bgr.shape[:2] != (h, w):
            raise PayloadError(f"JPEG canvas does not decode to {h}x{w}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if encoding == "i420":
        try:
            yuv = np.frombuffer(zlib.decompress(data), np.uint8).reshape(h * 3 // 2, w)
            rgb = yuv_to_rgb(yuv)
            if residual:
                diff = np.frombuffer(zlib.decompress(residual), np.int16).reshape(h, w, 3)
                rgb = (rgb.astype(np.int16) + diff).astype(np.uint8)
        except (zlib.error, ValueError) as exc:
            raise PayloadError(f"I420 canvas does not decode to {h}x{w}: {exc}") from exc
        return rgb
    raise PayloadError(f"canvas encoding must be one of {ENCODINGS}, got {encoding!r}")


# ------------------------------------------------------------------------------------------------ groups
def stamp_wire(stamp: Any) -> Any:
    """A source stamp as a JSON value: std_msgs/Header or builtin_interfaces/Time -> int nanoseconds."""
    t = getattr(stamp, "stamp", stamp)
    if hasattr(t, "sec") and hasattr(t, "nanosec"):
        return int(t.sec) * 1_000_000_000 + int(t.nanosec)
    if stamp is None or isinstance(stamp, (bool, int, float, str)):
        return stamp
    if isinstance(stamp, np.generic):
        return stamp.item()
    return str(stamp)


def encode_group(group: FrameGroup, encoding: Encoding = "jpeg", quality: int = 90) -> WireGroup:
    images = [encode_canvas(c.pixels, encoding, quality) for c in group.canvases]
    positions = np.concatenate([c.positions for c in group.canvases]).astype(np.int32)
    pos_blob = zlib.compress(positions.tobytes(), 1)
    digest = hashlib.blake2b(digest_size=8)
    for data, residual in images:
        digest.update(data)
        digest.update(residual)
    digest.update(pos_blob)
    key = f"{group.index}:{group.start_frame}-{group.end_frame}:{digest.hexdigest()}"
    body = {"key": key, "index": group.index, "start": group.start_frame, "end": group.end_frame,
            "encoding": encoding, "kinds": "".join(c.kind for c in group.canvases),
            "patches": [c.num_patches for c in group.canvases], "canvases": [d for d, _ in images],
            "residuals": [r for _, r in images], "positions": pos_blob,
            "times": [[int(f), float(t)] for f, t in group.frame_times.items()],
            "stamps": [[int(f), stamp_wire(s)] for f, s in group.frame_stamps.items()]}
    return WireGroup(key, body)


def decode_group(body: dict[str, Any], canvas_size: tuple[int, int]) -> FrameGroup:
    """The ``FrameGroup`` a ``WireGroup.body`` was made from (pixels exact for i420; the bits are not sent)."""
    try:
        key, encoding = body["key"], body["encoding"]
        digest = hashlib.blake2b(digest_size=8)
        for data, residual in zip(body["canvases"], body["residuals"]):
            digest.update(data)
            digest.update(residual)
        digest.update(body["positions"])
        if not key.endswith(":" + digest.hexdigest()):
            raise PayloadError(f"group {key}: its bytes do not match its digest (corrupted in transit)")
        positions = np.frombuffer(zlib.decompress(body["positions"]), np.int32).reshape(-1, 3)
        bounds = np.cumsum([0, *body["patches"]])
        canvases = tuple(Canvas(kind, decode_canvas(data, residual, encoding, canvas_size),
                                positions[bounds[i]:bounds[i + 1]], int(body["index"]))
                         for i, (kind, data, residual) in enumerate(zip(body["kinds"], body["canvases"],
                                                                        body["residuals"])))
        start, end = int(body["start"]), int(body["end"])
        return FrameGroup(index=int(body["index"]), start_frame=start, end_frame=end,
                          frame_bits=np.zeros(end - start, np.int64), threshold=0.0, canvases=canvases,
                          frame_times={int(f): float(t) for f, t in body["times"]},
                          frame_stamps={int(f): s for f, s in body["stamps"]})
    except (KeyError, TypeError, ValueError, zlib.error) as exc:
        if isinstance(exc, PayloadError):
            raise
        raise PayloadError(f"group {body.get('key', '?') if isinstance(body, dict) else '?'} does not decode: "
                           f"{type(exc).__name__}: {exc}") from exc


# ------------------------------------------------------------------------------------------------ requests
def window_meta(window: CodecWindow, keys: list[str]) -> dict[str, Any]:
    return {"keys": keys, "canvas_size": list(window.canvas_size), "source_size": list(window.source_size),
            "fps": float(window.fps), "patch_size": int(window.patch_size)}


def request(stream: str, window: CodecWindow, keys: list[str], query: Query, groups: list[WireGroup],
            request_id: int = 0) -> dict[str, Any]:
    return {"v": VERSION, "stream": stream, "id": request_id, "query": {"task": query.task, "text": query.text},
            "window": window_meta(window, keys), "groups": [g.body for g in groups]}


def check_request(req: Any) -> None:
    if not isinstance(req, dict) or req.get("v") != VERSION:
        got = req.get("v") if isinstance(req, dict) else type(req).__name__
        raise PayloadError(f"request version {got!r}, this server speaks {VERSION}")
    for name in ("stream", "query", "window", "groups"):
        if name not in req:
            raise PayloadError(f"request lacks {name!r}")


class StreamGroups:
    """One stream's recent decoded groups on a replica, keyed by ``WireGroup.key``; bounded to ``capacity``."""

    def __init__(self, capacity: int = 64):
        self.capacity = capacity
        self._groups: OrderedDict[str, FrameGroup] = OrderedDict()

    def __len__(self) -> int:
        return len(self._groups)

    def window(self, req: dict[str, Any]) -> tuple[CodecWindow | None, list[str]]:
        """(the request's window, []) when every key resolves, else (None, the missing keys). The new groups are
        decoded and kept; afterwards only the groups of this window (the next slide's base) are retained."""
        meta = req["window"]
        size = (int(meta["canvas_size"][0]), int(meta["canvas_size"][1]))
        for body in req["groups"]:
            if body["key"] not in self._groups:
                self._groups[body["key"]] = decode_group(body, size)
        missing = [k for k in meta["keys"] if k not in self._groups]
        if missing:
            return None, missing
        groups = tuple(self._groups[k] for k in meta["keys"])
        keep = set(meta["keys"])
        for k in [k for k in self._groups if k not in keep]:
            del self._groups[k]
        while len(self._groups) > self.capacity:
            self._groups.popitem(last=False)
        return CodecWindow(groups=groups, canvas_size=size, source_size=tuple(meta["source_size"]),
                           fps=float(meta["fps"]), patch_size=int(meta["patch_size"])), []


# ------------------------------------------------------------------------------------------------ replies
def answer_from_dict(d: dict[str, Any]) -> Answer:
    """The ``Answer`` whose ``to_json_dict()`` is ``d`` (the reply carries the local backend's Answer JSON)."""
    try:
        return Answer(task=d["task"], text=d["text"], tracks=tuple(TrackPoint(**t) for t in d["tracks"]),
                      points=tuple(Point(**p) for p in d["points"]),
                      waypoints=tuple(Waypoint(**w) for w in d["waypoints"]), waypoint_frame=d["waypoint_frame"],
                      spans=tuple(Span(**s) for s in d["spans"]), errors=tuple(d["errors"]),
                      window_span=tuple(d["window_span"]), window_frames=tuple(d["window_frames"]),
                      latency_s=float(d["latency_s"]), extra=dict(d["extra"]))
    except (KeyError, TypeError) as exc:
        raise PayloadError(f"reply answer does not match the Answer JSON layout: {exc}") from exc


def query_from_dict(d: dict[str, Any]) -> Query:
    return Query(task=d["task"], text=d["text"])
