"""rosbag2 input and output through the ``rosbags`` library (MCAP or sqlite3 storage), with no rclpy.

Input: one image topic, either H.264/HEVC ``sensor_msgs/CompressedImage`` or Foxglove ``foxglove_msgs/CompressedVideo``
(its type registered from the definition the bag carries; one Annex-B access unit per message, fed
to the pipeline as is), JPEG/PNG ``CompressedImage``, or raw ``sensor_msgs/Image`` (decoded to RGB here and encoded
with the bridge node's ``H264Encoder`` first). Every message's source stamp is its header stamp (the bag's log time
when the header stamp is zero); messages are read in the order they were written (not rosbags' log-time order) and
stamps must increase strictly, or the bag is refused as a clock jump.

Output: the node's output topics, serialised with the ROS 2 Kilted type store, stamped with *source* stamps.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ov2_ros.codec.errors import UnsupportedFormatError
from ov2_ros.eval.errors import BagError, ClockJumpError, TopicNotFoundError
from ov2_ros.images import encoded_to_rgb, payload_kind, raw_to_rgb

Storage = Literal["mcap", "sqlite3"]
ImageKind = Literal["h264", "hevc", "jpeg", "png", "raw"]
COMPRESSED = "sensor_msgs/msg/CompressedImage"
RAW = "sensor_msgs/msg/Image"
VIDEO = "foxglove_msgs/msg/CompressedVideo"     # Foxglove's recorder: timestamp, frame_id, data, format h264/h265
IMAGE_TYPES = (COMPRESSED, RAW, VIDEO)
# The published definition, for bags that carry none and for writing; a bag's own definition is preferred.
FOXGLOVE_VIDEO_MSG = """builtin_interfaces/Time timestamp
string frame_id
uint8[] data
string format
"""
_KNOWN_DEFINITIONS = {VIDEO: FOXGLOVE_VIDEO_MSG}
# output topic -> message type, as the live node publishes them (DESIGN.md contract 4), under the root namespace
OUTPUT_TOPICS = {"/answer": "std_msgs/msg/String", "/tracking/points": "geometry_msgs/msg/PointStamped",
                 "/waypoints": "nav_msgs/msg/Path", "/mask": "sensor_msgs/msg/Image"}


def typestore() -> Any:
    """The ROS 2 Kilted message definitions (the wheels this project runs on)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def register_types(store: Any, msgtype: str, definition: str | None = None) -> None:
    """Add ``msgtype`` (and the types its definition brings along) to ``store`` unless it knows it already:
    from ``definition`` (a bag connection's concatenated ros2msg text) or the project's copy of it."""
    from rosbags.typesys import get_types_from_msg

    if msgtype in store.fielddefs:
        return
    text = definition or _KNOWN_DEFINITIONS.get(msgtype)
    if not text:
        raise BagError(f"{msgtype} is not a ROS 2 Kilted type and the bag carries no definition of it")
    try:
        types = get_types_from_msg(text, msgtype)
    except Exception as exc:  # noqa: BLE001 - rosbags raises its own parser errors
        raise BagError(f"cannot read the bag's definition of {msgtype}: {' '.join(str(exc).split())[:200]}") from exc
    store.register({name: t for name, t in types.items() if name not in store.fielddefs})

@dataclass(frozen=True)
class BagImage:
    """One image message. ``data`` holds the AU (h264/hevc) or the compressed file (jpeg/png); ``rgb`` (H, W, 3)
    uint8 holds raw images."""

    index: int               # message index on the topic (= decoded frame index for intra/P-only streams)
    stamp_ns: int            # source stamp
    frame_id: str
    kind: ImageKind
    data: bytes = b""
    rgb: np.ndarray | None = None


# ---------------------------------------------------------------- reading

def _open_reader(path: Path) -> Any:
    from rosbags.rosbag2 import Reader, ReaderError

    if not path.exists():
        raise FileNotFoundError(f"bag {path} does not exist")
    if not (path.is_dir() and (path / "metadata.yaml").is_file()):
        raise BagError(f"{path} is not a rosbag2 bag directory (no metadata.yaml); give the folder `ros2 bag record`"
                       " made, MCAP or sqlite3")
    _check_sqlite_pages(path)
    reader = Reader(path)
    try:
        reader.open()
    except (ReaderError, KeyError, ValueError, OSError) as exc:
        # rosbags quotes YAML parser output over several lines; the CLI prints one
        raise BagError(f"cannot read bag {path}: {_storage_detail(path, exc)}") from exc
    return reader


def _check_sqlite_pages(path: Path) -> None:
    """A .db3 file is whole pages; anything else was cut short (SQLite may still read the rows before the cut, so
    the replay would run on a silently shorter recording)."""
    for f in sorted(path.glob("*.db3")):
        with f.open("rb") as fh:
            head = fh.read(18)
        if len(head) < 18 or not head.startswith(b"SQLite format 3\x00"):
            continue                      # rosbags names what is wrong with it
        page = int.from_bytes(head[16:18], "big") or 65536   # 1 means 65,536
        size = f.stat().st_size
        if size % page:
            raise BagError(f"cannot read bag {path}: storage file cut short ({f.name} is {size} bytes, not a whole "
                           f"number of its {page}-byte pages)")


def _storage_detail(path: Path, exc: BaseException) -> str:
    """rosbags' message, plus the storage files' sizes when a file (not metadata.yaml) is at fault: rosbags says
    "seems to be empty" or "end magic is invalid" for a recording that was merely cut short."""
    detail = " ".join(str(exc).split())
    if "metadata" in detail.lower() or "version" in detail.lower():
        return detail
    files = [f for f in sorted(path.iterdir()) if f.suffix in (".mcap", ".db3", ".zstd")]
    sizes = ", ".join(f"{f.name} {f.stat().st_size} bytes" for f in files) or "no storage file"
    return f"storage file cut short or corrupt ({sizes}; rosbags: {detail})"


def bag_topics(path: str | Path) -> dict[str, str]:
    """Topic -> message type of every connection in the bag."""
    reader = _open_reader(Path(path))
    try:
        return {c.topic: c.msgtype for c in reader.connections}
    finally:
        reader.close()


def message_count(path: str | Path, topic: str) -> int:
    """Messages on ``topic`` according to the bag's index (for progress bars)."""
    reader = _open_reader(Path(path))
    try:
        return sum(c.msgcount for c in reader.connections if c.topic == topic)
    finally:
        reader.close()


def _stamp_ns(stamp: Any, log_ns: int) -> int:
    ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    return ns if ns else int(log_ns)


def compressed_kind(fmt: str, where: str) -> ImageKind:
    """The payload kind named by a CompressedImage ``format`` (``h264``, ``rgb8; jpeg compressed bgr8``, ...)."""
    kind = payload_kind(fmt)
    if kind is None:
        raise BagError(f"{where}: CompressedImage format {fmt!r} is none of h264, hevc, jpeg, png")
    return kind


def _messages_in_write_order(reader: Any, conns: list[Any]) -> Iterator[tuple[int, bytes]]:
    """(log time ns, raw CDR) of ``conns`` in the order the recorder wrote them.

    ``Reader.messages`` sorts by log time, which hides a recorder clock that stepped back: two GOPs would come out
    interleaved and decode scrambled (issue 10 item 5). The camera's own order is the write order: MCAP records in
    file order (rosbags' ``messages_scan``), sqlite3 rows by id. The header-stamp check then sees any jump."""
    from rosbags.rosbag2 import ReaderError

    try:
        yield from _write_order_rows(reader, conns)
    except (ReaderError, OSError, ValueError) as exc:
        raise BagError(f"cannot read bag {reader.path}: {_storage_detail(Path(reader.path), exc)}") from exc


def _write_order_rows(reader: Any, conns: list[Any]) -> Iterator[tuple[int, bytes]]:
    directory = reader.storage
    for storage in directory.storages:
        wanted = {x.id for x in storage.connections if any(x.topic == c.topic and x.msgtype == c.msgtype
                                                           for c in conns)}
        if not wanted:
            continue
        if hasattr(storage, "messages_scan"):         # MCAP
            rows = ((t, d) for _c, t, d in storage.messages_scan([x for x in storage.connections if x.id in wanted]))
        else:                                          # sqlite3
            marks = ",".join("?" * len(wanted))
            rows = storage.dbconn.execute(f"SELECT timestamp, data FROM messages WHERE topic_id IN ({marks}) "
                                          "ORDER BY id", tuple(wanted))
        if directory.metadata.compression_mode == "message":
            from rosbags.rosbag2.reader import zstd

            rows = ((t, zstd.decompress(d)) for t, d in rows)
        yield from rows


def read_images(path: str | Path, topic: str) -> Iterator[BagImage]:
    """The image messages of ``topic`` in log order. Raises TopicNotFoundError, BagError (undecodable message, mixed
    formats) or ClockJumpError (source stamps not strictly increasing)."""
    path = Path(path)
    reader = _open_reader(path)
    try:
        conns = [c for c in reader.connections if c.topic == topic]
        if not conns:
            images = sorted(c.topic for c in reader.connections if c.msgtype in IMAGE_TYPES)
            raise TopicNotFoundError(f"bag {path} has no topic {topic!r}; image topics in it: {images or 'none'}")
        msgtype = conns[0].msgtype
        if msgtype not in IMAGE_TYPES:
            raise BagError(f"bag {path}: topic {topic} carries {msgtype}, not one of {', '.join(IMAGE_TYPES)}")
        expected = sum(c.msgcount for c in conns)
        store = typestore()
        msgdef = getattr(conns[0], "msgdef", None)
        register_types(store, msgtype, getattr(msgdef, "data", None) or None)
        prev_ns, first_kind, index = None, None, -1
        for index, (log_ns, raw) in enumerate(_messages_in_write_order(reader, conns)):
            where = f"bag {path}, topic {topic}, message {index}"
            try:
                msg = store.deserialize_cdr(raw, msgtype)
            except Exception as exc:  # noqa: BLE001 - rosbags raises assorted errors on bad CDR
                raise BagError(f"{where}: cannot deserialise {msgtype}: {exc}") from exc
            stamp_msg, frame_id = (msg.timestamp, msg.frame_id) if msgtype == VIDEO else (msg.header.stamp,
                                                                                          msg.header.frame_id)
            stamp = _stamp_ns(stamp_msg, log_ns)
            if prev_ns is not None and stamp <= prev_ns:
                raise ClockJumpError(f"{where}: stamp {stamp} ns is not after the previous {prev_ns} ns "
                                     f"(clock jump of {(stamp - prev_ns) / 1e9:+.3f} s)")
            prev_ns = stamp
            if msgtype == RAW:
                try:
                    rgb = raw_to_rgb(msg.encoding, msg.width, msg.height, msg.step, msg.data, where)
                except UnsupportedFormatError as exc:
                    raise BagError(str(exc)) from exc
                yield BagImage(index, stamp, frame_id, "raw", rgb=rgb)
                continue
            kind = compressed_kind(msg.format, where)
            if first_kind is not None and kind != first_kind:
                raise BagError(f"{where}: format changes from {first_kind} to {kind} mid-topic")
            first_kind = kind
            if msgtype == VIDEO and kind not in ("h264", "hevc"):
                raise BagError(f"{where}: CompressedVideo format {msg.format!r} is not h264 or h265")
            yield BagImage(index, stamp, frame_id, kind, data=bytes(np.asarray(msg.data, np.uint8)))
        if index + 1 < expected:
            raise BagError(f"bag {path}, topic {topic}: {index + 1} messages read, but the bag's index lists "
                           f"{expected} (a storage file cut short?)")
    finally:
        reader.close()


def image_rgb(image: BagImage) -> np.ndarray:
    """RGB uint8 (H, W, 3) of a raw or JPEG/PNG image."""
    if image.rgb is not None:
        return image.rgb
    try:
        return encoded_to_rgb(image.data, f"message {image.index} ({image.kind})")
    except UnsupportedFormatError as exc:
        raise BagError(str(exc)) from exc


def access_units(images: Iterable[BagImage], fps: float = 30.0, gop: int = 30) -> Iterator[tuple[bytes, int]]:
    """(Annex-B AU, source stamp ns) pairs: H.264/HEVC messages pass through untouched; raw/JPEG/PNG images are
    encoded by the bridge node's ``H264Encoder`` (same settings as live), each AU keeping its frame's stamp."""
    from ov2_ros.codec.encoder import EncoderConfig, H264Encoder

    encoder, first_size, pending = None, None, []
    for image in images:
        if image.kind in ("h264", "hevc"):
            yield image.data, image.stamp_ns
            continue
        rgb = image_rgb(image)
        if encoder is None:
            first_size = rgb.shape[:2]
            # yuv420p needs even sizes: odd images lose their last row/column
            encoder = H264Encoder(rgb.shape[1] // 2 * 2, rgb.shape[0] // 2 * 2, EncoderConfig(fps=fps, gop=gop))
        elif rgb.shape[:2] != first_size:
            raise BagError(f"message {image.index}: image size {rgb.shape[1]}x{rgb.shape[0]} differs from the first "
                           f"{first_size[1]}x{first_size[0]}")
        pending.append(image.stamp_ns)
        for au in encoder.encode(np.ascontiguousarray(rgb[: encoder.height, : encoder.width])):
            yield au, pending.pop(0)
    if encoder is not None:
        for au in encoder.flush():
            yield au, pending.pop(0)


# ---------------------------------------------------------------- writing

def _header(store: Any, stamp_ns: int, frame_id: str) -> Any:
    t = store.types
    return t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=int(stamp_ns // 1_000_000_000),
                                                                            nanosec=int(stamp_ns % 1_000_000_000)),
                                    frame_id=frame_id)


class BagWriter:
    """A rosbag2 writer over the Kilted type store: ``with BagWriter(path, "mcap") as w: w.write(topic, ...)``."""

    def __init__(self, path: str | Path, storage: Storage = "mcap") -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise BagError(f"storage must be mcap or sqlite3, got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"bag {self.path} already exists; give a new path")
        self.store = typestore()
        register_types(self.store, VIDEO)
        self._writer = Writer(self.path, version=9, storage_plugin=plugins[storage])
        self._conns: dict[str, Any] = {}

    def __enter__(self) -> BagWriter:
        self._writer.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self._writer.close()

    def header(self, stamp_ns: int, frame_id: str = "") -> Any:
        return _header(self.store, stamp_ns, frame_id)

    def msg(self, msgtype: str, **fields: Any) -> Any:
        return self.store.types[msgtype](**fields)

    def write(self, topic: str, msg: Any, log_ns: int) -> None:
        msgtype = msg.__msgtype__
        conn = self._conns.get(topic)
        if conn is None:
            conn = self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=self.store)
        self._writer.write(conn, int(log_ns), self.store.serialize_cdr(msg, msgtype))


def write_image_bag(path: str | Path, stamps_ns: Iterable[int], payloads: Iterable[bytes | np.ndarray],
                    topic: str = "/camera/image/compressed", kind: ImageKind = "h264", storage: Storage = "mcap",
                    frame_id: str = "camera", foxglove: bool = False) -> Path:
    """A camera bag as a robot would record it: AUs (h264/hevc), encoded files (jpeg/png) or RGB arrays (raw,
    written as rgb8 ``sensor_msgs/Image``); log time = header stamp. ``foxglove``: AUs as
    ``foxglove_msgs/CompressedVideo`` (format h264/h265), as Foxglove's recorder writes them."""
    with BagWriter(path, storage) as w:
        for stamp, payload in zip(stamps_ns, payloads, strict=True):
            header = w.header(stamp, frame_id)
            if foxglove:
                msg = w.msg(VIDEO, timestamp=header.stamp, frame_id=frame_id, format="h265" if kind == "hevc" else kind,
                            data=np.frombuffer(bytes(payload), np.uint8))
            elif kind == "raw":
                rgb = np.ascontiguousarray(payload, np.uint8)
                msg = w.msg(RAW, header=header, height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8",
                            is_bigendian=0, step=rgb.shape[1] * 3, data=rgb.reshape(-1))
            else:
                msg = w.msg(COMPRESSED, header=header, format=kind, data=np.frombuffer(bytes(payload), np.uint8))
            w.write(topic, msg, stamp)
    return Path(path)
