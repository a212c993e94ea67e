"""Streaming H.264/HEVC decoder: one Annex-B access unit in, the frames it completes out, with MVs and luma.

Every AU is validated and gated (``ov2_ros.codec.nal``) before FFmpeg sees it, so garbage never reaches the codec and
a late joiner starts at an IDR. Each packet carries a running decode-order number as its pts; libavcodec hands that
pts back on the frame it produced, which maps frames to their own AU's stamp and size through B-frame reordering.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import av
import numpy as np
from av.sidedata.sidedata import SideDataContainer

from ov2_ros.codec.errors import BitstreamError, CodecError, DecodeError
from ov2_ros.codec.nal import (
    Codec, EntryGate, check_codec, count_pictures, is_reference_picture, split_access_units, validate_access_unit,
)
from ov2_ros.codec.types import DecodedFrame
from ov2_ros.errors import ConfigError

Threads = Literal["frame", "slice", "none"]
DEFAULT_FPS = 30.0   # time base when neither an fps hint nor usable stamps are given

# FFmpeg's AVMotionVector as PyAV exposes it (aligned struct, 40 bytes). Used for frames without MV side data, so
# every DecodedFrame.mvs has one dtype.
MV_DTYPE = np.dtype({
    "names": ["source", "w", "h", "src_x", "src_y", "dst_x", "dst_y", "flags", "motion_x", "motion_y", "motion_scale"],
    "formats": ["<i4", "u1", "u1", "<i2", "<i2", "<i2", "<i2", "<u8", "<i4", "<i4", "<u2"],
    "offsets": [0, 4, 5, 6, 8, 10, 12, 16, 24, 28, 32], "itemsize": 40, "aligned": True})
EMPTY_MVS = np.zeros(0, dtype=MV_DTYPE)
EMPTY_MVS.flags.writeable = False

_PICT_TYPES = {1: "I", 2: "P", 3: "B", 4: "S", 5: "I", 6: "P", 7: "B"}   # SI->I, SP->P, BI->B
_MAX_PICTURES_PER_MESSAGE = 64   # a batching sender sends a few; 1 MB of 4-byte "slices" would be 250k decodes
_PENDING_LIMIT = 256   # AUs whose frame never came out (errors) are forgotten after this many newer ones
_MAX_DRAIN_ERRORS = 64   # FFmpeg holds at most a DPB plus threads of pictures; more errors means a stuck context


@dataclass(frozen=True)
class DecoderStats:
    """Counters since the decoder was created."""

    aus_in: int = 0               # every AU offered to decode() (a message holding n pictures counts n)
    aus_gated: int = 0            # skipped while waiting for an entry point (IDR + parameter sets)
    aus_bad: int = 0              # rejected by validation or by FFmpeg
    frames_out: int = 0
    frames_corrupt: int = 0       # output but marked corrupt by FFmpeg (concealed damage)
    resolution_changes: int = 0


def stamp_seconds(stamp: Any) -> float | None:
    """Seconds from a stamp that holds a time: a float (seconds), a ROS ``Time`` message (sec, nanosec) or an
    rclpy ``Time`` (nanoseconds). None otherwise: ints are left alone, since they are often frame counters."""
    if isinstance(stamp, float) and math.isfinite(stamp):
        return float(stamp)
    if hasattr(stamp, "sec") and hasattr(stamp, "nanosec"):
        return stamp.sec + stamp.nanosec * 1e-9
    if isinstance(getattr(stamp, "nanoseconds", None), int):
        return stamp.nanoseconds * 1e-9
    return None


def luma_view(frame: av.VideoFrame) -> np.ndarray:
    """(height, width) uint8 view of the Y plane, without the row padding (no copy, unlike ``to_ndarray``)."""
    plane = frame.planes[0]
    rows = np.frombuffer(plane, np.uint8)[: plane.line_size * frame.height].reshape(frame.height, plane.line_size)
    return rows[:, : frame.width]


def motion_vectors(frame: av.VideoFrame) -> np.ndarray:
    """The frame's exported MVs as a structured array (copied out of the side data), empty when there are none.

    Read through a container of our own: ``frame.side_data`` caches its container on the frame, and the container
    points back at the frame, a cycle that kept every decoded picture (3 MB at 1080p) alive until a full cyclic GC
    (bench/fuzz.py: RSS +12.5% over 600 episodes without ``gc.collect()``, +2% with it)."""
    side = SideDataContainer(frame).get("MOTION_VECTORS")
    if side is None:
        return EMPTY_MVS
    mvs = side.to_ndarray()
    if mvs.dtype == MV_DTYPE and mvs.flags.c_contiguous:
        # copied as raw bytes: numpy copies a padded structured dtype field by field (0.12 ms for a 1080p frame's
        # 8,160 MVs, vs 5 us as bytes)
        return mvs.view(np.uint8).copy().view(MV_DTYPE)
    return np.array(mvs, dtype=MV_DTYPE)


class StreamDecoder:
    """Decode a live Annex-B stream one access unit at a time.

    ``threads``: FRAME threading decodes several pictures at once (output lags by ``thread_count - 1`` AUs), SLICE
    threading splits one picture (no lag, but only helps streams with several slices), "none" decodes on the calling
    thread. The default is FRAME by measurement (``bench/decoder_threads.py``, 1280x720 libx264 zerolatency clip with
    several slices per picture, 280 AUs, thread_count=2, shared 2-core machine at load ~6, medians of 9): none
    198 fps, slice 196 fps (0.99x), frame 279 fps (1.41x, 1 AU of delay); at load ~9 frame still led (1.09x).
    Validation, gating and stamp mapping take about 22 us per 720p AU (under 1% of decoding). All modes give
    identical MVs and luma.

    Tail latency of one ``decode`` call is the keyframe's own decode time in every mode: on the 1080p moving-scene
    clip (1.1 MB IDRs every 60 AUs, one slice) an IDR takes 70-85 ms of CABAC on one core, so the per-AU p99 over
    280 AUs was 69 ms (frame, the wait lands on the AU after the IDR), 68 ms (none) and 104 ms (slice: one slice,
    nothing to split), and thread_count 4 or 8 did not shorten it (load ~5-7). Only decoding off the caller's thread
    would hide it from ``decode``'s caller.

    ``fps``: if given, ``time_s = index / fps``; otherwise seconds since the first frame's stamp when that stamp is a
    time (float seconds, ROS Time), else ``index / 30``. Stamps are the source's clock, so they survive dropped or
    gated frames, which an assumed rate would not.
    """

    def __init__(self, codec: Codec = "h264", threads: Threads = "frame", thread_count: int = 2,
                 export_mvs: bool = True, fps: float | None = None):
        check_codec(codec)
        if threads not in ("frame", "slice", "none"):
            raise ConfigError(f"threads must be 'frame', 'slice' or 'none', got {threads!r}")
        if not isinstance(thread_count, int) or thread_count < 1:
            raise ConfigError(f"thread_count must be an int >= 1, got {thread_count!r}")
        if fps is not None and not fps > 0:
            raise ConfigError(f"fps must be > 0, got {fps!r}")
        self.codec: Codec = codec
        self.threads, self.thread_count, self.export_mvs, self.fps = threads, thread_count, export_mvs, fps
        # (index, time_s, key_frame) -> whether a frame's MVs are read out (copied from the side data); others get
        # none. The official tokenizer sets its sampler's ``peek``: a skipped frame's MVs are never used.
        self.mv_filter: Callable[[int, float, bool], bool] | None = None
        self.gate = EntryGate(codec)
        self.resolution: tuple[int, int] | None = None   # (width, height) of the current stream
        self._ctx = self._open_context()
        self._pending: dict[int, tuple[Any, int, bool]] = {}   # packet pts -> (stamp, bits, reference) of its AU
        self._next_pts = 0
        self._next_index = 0
        self._time_origin: float | None = None           # stamp seconds of frame 0 when timing by stamps
        self._last_time = 0.0
        self._counts = dict(aus_in=0, aus_gated=0, aus_bad=0, frames_out=0, frames_corrupt=0, resolution_changes=0)
        self._undelivered: list[DecodedFrame] = []      # completed before an error cut a call short
        self._closed = False

    # --- public ---------------------------------------------------------------------------------------------------

    @property
    def stats(self) -> DecoderStats:
        return DecoderStats(**self._counts)

    def decode(self, au: bytes, stamp: Any = None) -> list[DecodedFrame]:
        """Feed one access unit; return the frames it completed, in output order (maybe none, maybe earlier AUs').

        Bytes holding several pictures (a sender that batched AUs) are split and decoded one by one, all with this
        ``stamp``. Raises ``BitstreamError`` for bytes that are not an AU and ``DecodeError`` when FFmpeg rejects
        one; the decoder stays usable in both cases and the caller decides whether to skip. Frames completed before
        the error come out of the next call. Damage FFmpeg can conceal (a truncated or bit-flipped slice) raises
        nothing: the frame comes out with ``corrupt=True``.
        """
        self._check_open()
        out, self._undelivered = self._undelivered, []
        try:
            for part, nals in self._pictures(au):
                self._decode_picture(part, nals, stamp, out)
        except CodecError:
            self._undelivered = out
            raise
        return out

    def flush(self) -> list[DecodedFrame]:
        """Drain the frames FFmpeg still holds (reorder buffer, frame threads). The decoder stays usable."""
        self._check_open()
        out, self._undelivered = self._undelivered, []
        frames, errors = self._drain()
        out += frames
        if errors:
            self._undelivered = out
            raise DecodeError(f"{self.codec} decoder rejected {len(errors)} picture(s) while flushing ({errors[0]}); "
                              f"the other {len(out)} drained frame(s) come out of the next call")
        return out

    def close(self) -> None:
        """Release the codec context (PyAV frees it with the last reference; frames already returned stay valid)."""
        self._ctx = None
        self._closed = True

    def __enter__(self) -> StreamDecoder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- internals ------------------------------------------------------------------------------------------------

    def _open_context(self) -> av.CodecContext:
        ctx = av.CodecContext.create(self.codec, "r")
        if self.export_mvs:
            ctx.options = {"flags2": "+export_mvs"}
        if self.threads == "none":
            ctx.thread_count = 1
        else:
            ctx.thread_type = self.threads.upper()
            ctx.thread_count = self.thread_count
        return ctx

    def _pictures(self, au: bytes) -> list[tuple[bytes, tuple[bytes, ...]]]:
        """Validate ``au`` and return its pictures with their NALs: normally one, more if the sender batched AUs
        (FFmpeg alone would decode only the first)."""
        try:
            nals = validate_access_unit(au, self.codec)
            au = bytes(au)
            pictures = count_pictures(nals, self.codec, limit=_MAX_PICTURES_PER_MESSAGE)
            if pictures <= 1:
                return [(au, nals)]
            if pictures > _MAX_PICTURES_PER_MESSAGE:
                raise BitstreamError(f"one message holds more than {_MAX_PICTURES_PER_MESSAGE} pictures (at most "
                                     f"{_MAX_PICTURES_PER_MESSAGE} are split and decoded); send one access unit per "
                                     "message")
            return [(part, validate_access_unit(part, self.codec)) for part in split_access_units(au, self.codec)]
        except BitstreamError:
            self._counts["aus_in"] += 1
            self._counts["aus_bad"] += 1
            raise

    def _decode_picture(self, au: bytes, nals: tuple[bytes, ...], stamp: Any, out: list[DecodedFrame]) -> None:
        """Gate and decode; append finished frames to ``out`` as they come (none get lost).

        A new picture size needs nothing here: FFmpeg re-initialises on the new SPS in every threading mode and
        drains the old pictures first, in order (measured for H.264 with and without B-frames and for HEVC), and
        ``_to_decoded`` notes the size each frame has."""
        self._counts["aus_in"] += 1
        try:
            data = self.gate.admit(nals, au)
        except BitstreamError:
            self._counts["aus_bad"] += 1
            raise
        if data is None:
            self._counts["aus_gated"] += 1
            return
        pts = self._next_pts
        self._next_pts += 1
        self._pending[pts] = (stamp, 8 * len(au), is_reference_picture(nals, self.codec))
        packet = av.Packet(len(data))
        packet.update(data)
        packet.pts = packet.dts = pts
        try:
            out += self._wrap(self._ctx.decode(packet))
        except av.FFmpegError as exc:
            self._counts["aus_bad"] += 1
            lag = " (frame threads: the bad AU may be up to thread_count earlier)" if self.threads == "frame" else ""
            raise DecodeError(f"{self.codec} decoder error at access unit #{self._counts['aus_in'] - 1} "
                              f"({len(au)} bytes, stamp {stamp!r}){lag}: {exc}") from exc
        self._forget_stale(pts)

    def _check_open(self) -> None:
        if self._closed:
            raise DecodeError("StreamDecoder is closed")

    def _drain(self) -> tuple[list[DecodedFrame], list[av.FFmpegError]]:
        """Take every frame FFmpeg still holds, then start a fresh context (a drained one is at EOF for good).

        A bad picture met while draining ends that ``decode(None)`` call; the next call goes on draining, so the
        frames behind it are not lost. Returns the frames and the errors met (each counted as a bad AU).
        """
        frames: list[DecodedFrame] = []
        errors: list[av.FFmpegError] = []
        while len(errors) < _MAX_DRAIN_ERRORS:
            try:
                frames += self._wrap(self._ctx.decode(None))
                break
            except av.error.EOFError:
                break
            except av.FFmpegError as exc:
                errors.append(exc)
        self._counts["aus_bad"] += len(errors)
        self._ctx = self._open_context()
        self.gate.reset()               # the fresh context needs an entry point
        return frames, errors

    def _forget_stale(self, pts: int) -> None:
        if len(self._pending) > _PENDING_LIMIT:
            for k in [k for k in self._pending if k < pts - _PENDING_LIMIT]:
                del self._pending[k]

    def _wrap(self, frames) -> list[DecodedFrame]:
        return [self._to_decoded(f) for f in frames]

    def _to_decoded(self, frame: av.VideoFrame) -> DecodedFrame:
        stamp, bits, reference = (self._pending.pop(frame.pts, (None, 0, True)) if frame.pts is not None
                                  else (None, 0, True))
        index = self._next_index
        self._next_index += 1
        self._counts["frames_out"] += 1
        self._counts["frames_corrupt"] += frame.is_corrupt
        size = (frame.width, frame.height)
        if self.resolution != size:     # FFmpeg's word on the size is final
            if self.resolution is not None:
                self._counts["resolution_changes"] += 1
            self.resolution = size
        time_s, pict_type, key = self._time_of(index, stamp), _PICT_TYPES.get(int(frame.pict_type), "?"), \
            bool(frame.key_frame)
        wanted = self.export_mvs and (self.mv_filter is None or self.mv_filter(index, time_s, key or pict_type == "I"))
        return DecodedFrame(
            index=index, time_s=time_s, stamp=stamp, bits=bits, pict_type=pict_type, key_frame=key,
            width=frame.width, height=frame.height, luma=luma_view(frame),
            mvs=motion_vectors(frame) if wanted else EMPTY_MVS, frame=frame, corrupt=bool(frame.is_corrupt),
            decode_index=-1 if frame.pts is None else int(frame.pts), reference=reference)

    def _time_of(self, index: int, stamp: Any) -> float:
        if self.fps is not None:
            return index / self.fps
        seconds = stamp_seconds(stamp)
        if index == 0 and seconds is not None:
            self._time_origin = seconds
        if self._time_origin is None:
            return index / DEFAULT_FPS
        # A stamp-timed stream with a missing stamp: one nominal frame after the previous one.
        self._last_time = seconds - self._time_origin if seconds is not None else self._last_time + 1 / DEFAULT_FPS
        return self._last_time
