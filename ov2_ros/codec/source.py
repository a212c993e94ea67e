"""Video files as packet sources: Annex-B access units with their presentation times, one by one.

A file is replayed through the same path as live camera bytes (``StreamDecoder.decode(au, stamp)``), so offline
tokenization sees exactly what a robot would send. Containers (.mp4/.mkv/.mov...) store H.264/HEVC as length-prefixed
NALs with the parameter sets in the header (avcC/hvcC); FFmpeg's ``*_mp4toannexb`` bitstream filter rewrites each
packet to Annex-B and puts the parameter sets in front of every keyframe, as a live encoder does. Raw Annex-B files
(.h264/.264/.h265/.265/.hevc) go through our own ``AnnexBParser``.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av

from ov2_ros.codec.errors import UnsupportedFormatError, VideoFileError, VideoFileNotFoundError
from ov2_ros.codec.nal import AnnexBParser, Codec

RAW_SUFFIXES: dict[str, Codec] = {".h264": "h264", ".264": "h264", ".h265": "hevc", ".265": "hevc", ".hevc": "hevc"}
_CHUNK_BYTES = 1 << 16
_FALLBACK_FPS = 25.0     # FFmpeg's own guess for a raw stream without VUI timing


@dataclass(frozen=True)
class VideoInfo:
    frames: int          # access units (= frames) in the file, counted by demuxing when the header has no count
    fps: float
    width: int
    height: int
    codec: str           # FFmpeg codec name: "h264", "hevc", or whatever else the file holds
    b_frames: bool = False   # the stream reorders frames (B-frames), from its SPS as FFmpeg reads it


def probe(path: str | Path) -> VideoInfo:
    """Size, rate, codec and frame count of the first video stream of ``path`` (no decoding)."""
    path = _existing(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        frames = stream.frames or sum(1 for p in _demux(container, stream, path) if p.size)
        ctx = stream.codec_context
        if not frames or not ctx.width or not ctx.height:
            raise VideoFileError(f"{path}: video stream has no frames ({frames} packets, {ctx.width}x{ctx.height})")
        return VideoInfo(frames=int(frames), fps=_fps(stream), width=ctx.width, height=ctx.height,
                         codec=ctx.name, b_frames=bool(ctx.has_b_frames))


def iter_access_units(path: str | Path) -> Iterator[tuple[bytes, float]]:
    """Yield ``(annexb_au, pts_seconds)`` for each packet of the first video stream, in decode order.

    pts come from the container; raw Annex-B files carry no timestamps, so theirs are ``decode_index / fps`` (with
    B-frames those are decode-order times, not presentation times). A missing file raises here, at the call; what
    is wrong inside a file raises when iteration reaches it.
    """
    path = _existing(path)
    codec = RAW_SUFFIXES.get(path.suffix.lower())
    return _raw_access_units(path, codec) if codec else _container_access_units(path)


def _container_access_units(path: Path) -> Iterator[tuple[bytes, float]]:
    with _open(path) as container:
        stream = _video_stream(container, path)
        codec = _annexb_codec(stream, path)
        # The stream (not just the codec name) gives the filter the avcC/hvcC extradata holding the parameter sets.
        bsf = av.bitstream.BitStreamFilterContext(f"{codec}_mp4toannexb", stream)
        fallback_step = 1.0 / _fps(stream)
        index = 0
        for number, packet in enumerate(_with_end(_demux(container, stream, path))):
            try:
                converted = bsf.filter(packet)
            except av.FFmpegError as exc:
                raise VideoFileError(f"{path}: video packet #{number} cannot be converted to Annex-B "
                                     f"({exc.strerror or exc})") from exc
            for out in converted:
                ts = out.pts if out.pts is not None else out.dts
                seconds = float(ts * stream.time_base) if ts is not None else index * fallback_step
                index += 1
                yield bytes(out), seconds


def _with_end(packets: Iterator[av.Packet]) -> Iterator[av.Packet | None]:
    """The stream's packets without the demuxer's empty end marker, then None to flush the filter."""
    for packet in packets:
        if packet.size:
            yield packet
    yield None


def _raw_access_units(path: Path, codec: Codec) -> Iterator[tuple[bytes, float]]:
    with _open(path, raw_format=codec) as container:
        step = 1.0 / _fps(_video_stream(container, path))
    parser = AnnexBParser(codec)
    index = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK_BYTES):
            for au in parser.feed(chunk):
                yield au, index * step
                index += 1
    for au in parser.flush():
        yield au, index * step
        index += 1
    if index == 0:
        raise VideoFileError(f"{path}: no Annex-B start code found, not a raw {codec} stream")


# --- opening and checking ------------------------------------------------------------------------------------------

def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise VideoFileNotFoundError(f"video file not found: {path}")
    if not path.is_file():
        raise VideoFileError(f"not a regular file: {path}")
    return path


def _open(path: Path, raw_format: str | None = None):
    fmt = raw_format or RAW_SUFFIXES.get(path.suffix.lower())
    try:
        return av.open(str(path), format=fmt)
    except av.FFmpegError as exc:
        raise VideoFileError(f"{path}: not a readable video file ({exc.strerror or exc})") from exc


def _video_stream(container, path: Path):
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise VideoFileError(f"{path}: no video stream (streams: {', '.join(kinds)})")
    return container.streams.video[0]


def _annexb_codec(stream, path: Path) -> Codec:
    name = stream.codec_context.name
    if name not in ("h264", "hevc"):
        raise UnsupportedFormatError(f"{path}: video codec is {name}, only h264 and hevc streams can be replayed")
    return name


def _demux(container, stream, path: Path) -> Iterator[av.Packet]:
    try:
        yield from container.demux(stream)
    except av.FFmpegError as exc:
        raise VideoFileError(f"{path}: demuxing failed ({exc.strerror or exc})") from exc


def _fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else _FALLBACK_FPS
