"""Annex-B / NAL-unit layer for H.264 (and the cheap parts of HEVC): splitting, access-unit reassembly, SPS parsing,
entry-point gating and validation. Pure Python: no decoder involved, so it can judge bytes before FFmpeg sees them.

FFmpeg parses every parameter set again for decoding; the hand-written SPS parsing here is kept only for the gate:
the parameter-set ids it caches by, and a bounded read up to the cropping window (every syntax element's spec range
enforced, the level size limits included) so a corrupt or hostile SPS is refused before it is cached, prepended to
later IDRs or allowed to size FFmpeg's frame pools. VUI and everything after cropping are never read. The decoder no
longer drains and restarts on an SPS size change (FFmpeg re-initialises itself), so ``EntryGate.sps_resolution`` is
information only.

Terms: a *NAL* here is the NAL unit payload without its start code (header byte(s) first); an *access unit* (AU) is
the Annex-B bytes of one picture, start codes included, exactly as carried by one ROS message or one demuxed packet.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from ov2_ros.codec.errors import BitstreamError, UnsupportedFormatError

Codec = Literal["h264", "hevc"]
START_CODE = b"\x00\x00\x01"

# H.264 nal_unit_type values (Table 7-1)
H264_SLICE, H264_DPA, H264_IDR, H264_SEI, H264_SPS, H264_PPS, H264_AUD = 1, 2, 5, 6, 7, 8, 9
H264_VCL = frozenset({1, 2, 3, 4, 5})
# Types that open a new AU when they follow a slice of the current one (7.4.1.2.3).
H264_AU_OPENERS = frozenset({6, 7, 8, 9, 14, 15, 16, 17, 18})
H264_SLICES_WITH_HEADER = frozenset({1, 2, 5})   # start with first_mb_in_slice (partitions B/C do not)
# HEVC nal_unit_type values (Table 7-1 of H.265)
HEVC_VPS, HEVC_SPS, HEVC_PPS, HEVC_AUD, HEVC_PREFIX_SEI = 32, 33, 34, 35, 39
HEVC_IRAP = frozenset(range(16, 24))
HEVC_AU_OPENERS = frozenset({32, 33, 34, 35, 39, 41, 42, 43, 44, *range(48, 56)})

# nal_unit_type -> parameter-set kind, per codec; the gate caches these.
PARAMETER_SET_TYPES = {"h264": {H264_SPS: "sps", H264_PPS: "pps"},
                       "hevc": {HEVC_VPS: "vps", HEVC_SPS: "sps", HEVC_PPS: "pps"}}
# nal_unit_types a decoder can start at (with parameter sets), per codec
ENTRY_TYPES = {"h264": frozenset({H264_IDR}), "hevc": HEVC_IRAP}
_REQUIRED_PARAM_SETS = {"h264": ("sps", "pps"), "hevc": ("vps", "sps", "pps")}

_MAGIC = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF8", "GIF"), (b"RIFF", "RIFF/WebP"),
          (b"\x1aE\xdf\xa3", "Matroska/WebM"))
_PEEK_BYTES = 16   # enough raw bytes after a NAL header to read first_mb_in_slice even with emulation prevention
# NAL units one message may hold: one slice per macroblock of a 1080p picture is 8,160; real encoders write a few to a
# few hundred. Counted at C speed before any per-NAL Python work, so a 1 MB flood of 4-byte "slices" costs ~1 ms.
MAX_NALS_PER_AU = 16_384


# --- splitting and headers ---------------------------------------------------------------------------------------

def iter_nal_spans(data: bytes | bytearray | memoryview, start: int = 0) -> Iterator[tuple[int, int, int]]:
    """Yield ``(code_start, payload_start, payload_end)`` offsets for each NAL in Annex-B ``data``.

    Zero bytes before a ``00 00 01`` belong to that start code (a 4-byte start code or trailing_zero_8bits), so
    ``data[code_start:]`` of one NAL up to the next ``code_start`` is exactly its Annex-B form.
    """
    data = bytes(data) if isinstance(data, memoryview) else data
    i = data.find(START_CODE, start)
    while i >= 0:
        code_start = i
        while code_start > start and data[code_start - 1] == 0:
            code_start -= 1
        payload = i + 3
        nxt = data.find(START_CODE, payload)
        end = len(data) if nxt < 0 else nxt
        while end > payload and data[end - 1] == 0 and nxt >= 0:
            end -= 1
        yield code_start, payload, end
        start, i = end, nxt


def split_nal_units(data: bytes) -> list[bytes]:
    """The NAL payloads (header first, start codes and zero padding removed) of an Annex-B byte string."""
    return [bytes(data[p:e]) for _, p, e in iter_nal_spans(data)]


def join_nal_units(nals) -> bytes:
    """NAL payloads -> Annex-B bytes, each behind a 4-byte start code (the inverse of ``split_nal_units``)."""
    return b"".join(b"\x00\x00\x00\x01" + bytes(nal) for nal in nals)


def nal_type_h264(nal: bytes) -> int:
    """nal_unit_type of an H.264 NAL payload (5 low bits of the first byte)."""
    return nal[0] & 0x1F


def nal_type_hevc(nal: bytes) -> int:
    """nal_unit_type of an HEVC NAL payload (bits 1..6 of the first header byte)."""
    return (nal[0] >> 1) & 0x3F


def nal_type(nal: bytes, codec: Codec) -> int:
    return nal_type_h264(nal) if codec == "h264" else nal_type_hevc(nal)


def check_codec(codec: str) -> None:
    """Raise ``UnsupportedFormatError`` unless ``codec`` is one this layer parses."""
    if codec not in ("h264", "hevc"):
        raise UnsupportedFormatError(f"codec must be 'h264' or 'hevc', got {codec!r}")


def remove_emulation_prevention(nal: bytes) -> bytes:
    """NAL payload -> RBSP: drop each 0x03 that follows two zero bytes.

    ``bytes.replace`` scans left to right without overlap, which is exactly the rule: the zero count restarts after
    every removed 0x03.
    """
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


class BitReader:
    """MSB-first reader over RBSP bytes with the exp-Golomb codes of H.264 clause 9.1.

    Linear time: each read converts only the bytes it spans (a big-int of the whole RBSP shifted per read made a
    crafted 1 MB SPS quadratic, issue 10 item 1)."""

    def __init__(self, rbsp: bytes, what: str = "RBSP"):
        self._data = bytes(rbsp)
        self._nbits = 8 * len(self._data)
        self._pos = 0
        self._what = what

    @property
    def bits_left(self) -> int:
        return self._nbits - self._pos

    def u(self, n: int) -> int:
        if n == 0:
            return 0
        if self._pos + n > self._nbits:
            raise BitstreamError(f"{self._what} ends after {self._nbits} bits; needed {n} more at bit {self._pos}")
        first, last = self._pos >> 3, (self._pos + n + 7) >> 3
        chunk = int.from_bytes(self._data[first:last], "big")
        self._pos += n
        return (chunk >> (8 * last - self._pos)) & ((1 << n) - 1)

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise BitstreamError(f"{self._what}: exp-Golomb code longer than 32 bits at bit {self._pos}")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)

    def ue_max(self, limit: int, name: str) -> int:
        """An ue(v) syntax element with the spec's upper bound: a larger value is corrupt, not a big loop count."""
        v = self.ue()
        if v > limit:
            raise BitstreamError(f"{self._what}: {name} = {v} is out of range (at most {limit})")
        return v


# --- slice headers and parameter sets ----------------------------------------------------------------------------

def first_mb_in_slice(nal: bytes) -> int:
    """first_mb_in_slice of an H.264 slice NAL (types 1, 2, 5): 0 means the slice opens a new picture."""
    return BitReader(remove_emulation_prevention(nal[1:1 + _PEEK_BYTES]), "slice header").ue()


def is_entry_point(nals, codec: Codec) -> bool:
    """Whether NAL payloads include a picture a decoder can start at: an IDR (H.264) or any IRAP (HEVC)."""
    entry = ENTRY_TYPES[codec]
    return any(nal_type(n, codec) in entry for n in nals if n)


def is_vcl(kind: int, codec: Codec) -> bool:
    """Whether a nal_unit_type carries slice data."""
    return kind in H264_VCL if codec == "h264" else kind < 32


def is_reference_picture(nals, codec: Codec) -> bool:
    """Whether the picture of an AU may be referenced by later ones: H.264 nal_ref_idc != 0 on its slices; HEVC a
    slice type that is not a sub-layer non-reference one (even types below 16: TRAIL_N, TSA_N, ..., RASL_N). An AU
    without slices counts as a reference (nothing to say otherwise)."""
    for n in nals:
        if not n:
            continue
        kind = nal_type(n, codec)
        if is_vcl(kind, codec):
            return bool(n[0] >> 5) if codec == "h264" else not (kind < 16 and kind % 2 == 0)
    return True


def count_pictures(nals, codec: Codec, limit: int | None = None) -> int:
    """How many pictures ``nals`` start (first slices). One access unit holds exactly one. With ``limit``, counting
    stops once the count exceeds it (the caller only needs to know that)."""
    count = 0
    for n in nals:
        count += is_vcl(nal_type(n, codec), codec) and starts_new_picture(n, codec)
        if limit is not None and count > limit:
            break
    return count


def starts_new_picture(nal: bytes, codec: Codec) -> bool:
    """Whether a VCL NAL is the first slice of a picture (H.264: first_mb_in_slice == 0; HEVC: first_slice flag)."""
    if codec == "h264":
        return nal_type_h264(nal) in H264_SLICES_WITH_HEADER and first_mb_in_slice(nal) == 0
    return len(nal) > 2 and bool(nal[2] & 0x80)


def _skip_scaling_list(r: BitReader, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt:
            delta = r.se()
            if not -128 <= delta <= 127:
                raise BitstreamError(f"H.264 SPS: delta_scale = {delta} is out of range (-128..127)")
            nxt = (last + delta + 256) % 256
        last = nxt or last


_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})
# Picture-size bounds from the highest levels (H.264 Table A-1 level 6.2: MaxFS 139,264 MBs, and each side at most
# sqrt(8 * MaxFS) MBs; H.265 Table A.8 level 6.2: MaxLumaPs 35,651,584, each side at most sqrt(8 * MaxLumaPs)). A
# larger SPS is corrupt or hostile: it would make FFmpeg allocate gigabytes of reference frames.
H264_MAX_FRAME_MBS, H264_MAX_SIDE_MBS = 139_264, 1_055
HEVC_MAX_LUMA_PS, HEVC_MAX_SIDE = 35_651_584, 16_888


def parse_sps_resolution(sps_nal: bytes) -> tuple[int, int]:
    """(width, height) in pixels after frame cropping, read from an H.264 SPS NAL payload (7.3.2.1.1).

    Reads up to the cropping window (VUI is left to FFmpeg) and enforces the ranges of 7.4.2.1.1 on every element it
    reads, so a corrupt SPS is refused here instead of steering loops or FFmpeg's allocations."""
    if not sps_nal or nal_type_h264(sps_nal) != H264_SPS:
        got = f"type {nal_type_h264(sps_nal)}" if sps_nal else "an empty NAL"
        raise BitstreamError(f"expected an H.264 SPS NAL (type 7), got {got}")
    r = BitReader(remove_emulation_prevention(sps_nal[1:]), "H.264 SPS")
    profile_idc = r.u(8)
    r.u(16)                                  # constraint flags, level_idc
    r.ue_max(31, "seq_parameter_set_id")
    chroma_format_idc, separate_planes = 1, 0
    if profile_idc in _HIGH_PROFILES:
        chroma_format_idc = r.ue_max(3, "chroma_format_idc")
        if chroma_format_idc == 3:
            separate_planes = r.u(1)
        r.ue_max(6, "bit_depth_luma_minus8")
        r.ue_max(6, "bit_depth_chroma_minus8")
        r.u(1)                               # qpprime_y_zero_transform_bypass_flag
        if r.u(1):                           # seq_scaling_matrix_present_flag
            for i in range(12 if chroma_format_idc == 3 else 8):
                if r.u(1):
                    _skip_scaling_list(r, 16 if i < 6 else 64)
    r.ue_max(12, "log2_max_frame_num_minus4")
    poc_type = r.ue_max(2, "pic_order_cnt_type")
    if poc_type == 0:
        r.ue_max(12, "log2_max_pic_order_cnt_lsb_minus4")
    elif poc_type == 1:
        r.u(1)
        r.se()
        r.se()
        for _ in range(r.ue_max(255, "num_ref_frames_in_pic_order_cnt_cycle")):
            r.se()
    r.ue_max(16, "max_num_ref_frames")
    r.u(1)                                   # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue_max(H264_MAX_SIDE_MBS - 1, "pic_width_in_mbs_minus1") + 1
    height_map_units = r.ue_max(H264_MAX_SIDE_MBS - 1, "pic_height_in_map_units_minus1") + 1
    frame_mbs_only = r.u(1)
    height_mbs = height_map_units * (2 - frame_mbs_only)
    if width_mbs * height_mbs > H264_MAX_FRAME_MBS or height_mbs > H264_MAX_SIDE_MBS:
        raise BitstreamError(f"H.264 SPS: {width_mbs}x{height_mbs} macroblocks is larger than any level allows "
                             f"(at most {H264_MAX_FRAME_MBS} MBs, {H264_MAX_SIDE_MBS} per side)")
    if not frame_mbs_only:
        r.u(1)                               # mb_adaptive_frame_field_flag
    r.u(1)                                   # direct_8x8_inference_flag
    width, height = 16 * width_mbs, 16 * height_mbs
    if r.u(1):                               # frame_cropping_flag
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        sub_w, sub_h = _chroma_subsampling(0 if separate_planes else chroma_format_idc)
        width -= sub_w * (left + right)
        height -= sub_h * (2 - frame_mbs_only) * (top + bottom)
    return _checked_size(width, height, "H.264")


def parse_hevc_sps_resolution(sps_nal: bytes) -> tuple[int, int]:
    """(width, height) in pixels inside the conformance window, read from an HEVC SPS NAL payload (7.3.2.2), with
    the ranges of 7.4.3.2 enforced on what it reads."""
    if len(sps_nal) < 3 or nal_type_hevc(sps_nal) != HEVC_SPS:
        raise BitstreamError("expected an HEVC SPS NAL (type 33)")
    r = BitReader(remove_emulation_prevention(sps_nal[2:]), "HEVC SPS")
    r.u(4)                                   # sps_video_parameter_set_id
    sub_layers = r.u(3)                      # sps_max_sub_layers_minus1
    if sub_layers > 6:
        raise BitstreamError(f"HEVC SPS: sps_max_sub_layers_minus1 = {sub_layers} is out of range (at most 6)")
    r.u(1)                                   # sps_temporal_id_nesting_flag
    r.u(88)                                  # general profile: space, tier, idc, compatibility and constraint flags
    r.u(8)                                   # general_level_idc
    present = [(r.u(1), r.u(1)) for _ in range(sub_layers)]   # sub-layer profile / level present flags
    if sub_layers:
        r.u(2 * (8 - sub_layers))            # reserved_zero_2bits up to 8 sub-layers
    for profile, level in present:
        r.u(88 * profile + 8 * level)
    r.ue_max(15, "sps_seq_parameter_set_id")
    chroma_format_idc = r.ue_max(3, "chroma_format_idc")
    separate_planes = r.u(1) if chroma_format_idc == 3 else 0
    width = r.ue_max(HEVC_MAX_SIDE, "pic_width_in_luma_samples")
    height = r.ue_max(HEVC_MAX_SIDE, "pic_height_in_luma_samples")
    if width * height > HEVC_MAX_LUMA_PS:
        raise BitstreamError(f"HEVC SPS: {width}x{height} luma samples is larger than any level allows "
                             f"(at most {HEVC_MAX_LUMA_PS})")
    if r.u(1):                               # conformance_window_flag
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        sub_w, sub_h = _chroma_subsampling(0 if separate_planes else chroma_format_idc)
        width -= sub_w * (left + right)
        height -= sub_h * (top + bottom)
    return _checked_size(width, height, "HEVC")


def sps_resolution(sps_nal: bytes, codec: Codec) -> tuple[int, int]:
    return parse_sps_resolution(sps_nal) if codec == "h264" else parse_hevc_sps_resolution(sps_nal)


def _chroma_subsampling(chroma_array_type: int) -> tuple[int, int]:
    """(SubWidthC, SubHeightC), the crop units of 4:0:0 / separate planes (0), 4:2:0 (1), 4:2:2 (2), 4:4:4 (3)."""
    return (2 if chroma_array_type in (1, 2) else 1), (2 if chroma_array_type == 1 else 1)


def _checked_size(width: int, height: int, codec_name: str) -> tuple[int, int]:
    if width <= 0 or height <= 0:
        raise BitstreamError(f"{codec_name} SPS gives a non-positive picture size {width}x{height}")
    return width, height


def _h264_parameter_set_id(nal: bytes) -> int:
    """seq_parameter_set_id of an SPS or pic_parameter_set_id of a PPS: keys of the gate's cache."""
    rbsp = remove_emulation_prevention(nal[1:1 + _PEEK_BYTES])
    r = BitReader(rbsp, "H.264 parameter set")
    if nal_type_h264(nal) == H264_SPS:
        r.u(24)
        return r.ue_max(31, "seq_parameter_set_id")
    return r.ue_max(255, "pic_parameter_set_id")


# --- access-unit reassembly --------------------------------------------------------------------------------------

class AnnexBParser:
    """Reassembles an Annex-B byte stream fed in arbitrary chunks into access units.

    An AU ends where the next one begins: at an AUD, SPS, PPS or SEI (HEVC: VPS/SPS/PPS/AUD/prefix SEI) that follows a
    slice of the current AU, or at the first slice of a new picture. Each AU is returned with its start codes, so
    ``b"".join(aus) == stream`` for a stream that starts with a start code. Bytes before the first start code are
    dropped and counted in ``skipped_bytes``. A NAL is classified as soon as ``_PEEK_BYTES`` of it are buffered, so an
    AU is released when the first NAL of the next one starts (inherent to Annex-B: it has no lengths).
    """

    def __init__(self, codec: Codec = "h264"):
        check_codec(codec)
        self.codec: Codec = codec
        self.skipped_bytes = 0
        self._reset()

    def _reset(self) -> None:
        self._buf = bytearray()
        self._scan = 0                 # where the next start-code search begins
        self._au_start: int | None = None
        self._au_has_vcl = False
        self._payload = 0              # payload offset of the newest NAL: zero bytes before it are its own
        self._pending: int | None = None   # code_start of the newest NAL while it is not classified yet

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add bytes; return the AUs completed by them (possibly none)."""
        self._buf += chunk
        out: list[bytes] = []
        while (i := self._buf.find(START_CODE, self._scan)) >= 0:
            if self._pending is not None:       # this start code ends the pending NAL: classify what it has
                self._classify(bytes(self._buf[self._payload:min(i, self._payload + _PEEK_BYTES)]), out)
            code_start = i
            while code_start > self._payload and self._buf[code_start - 1] == 0:
                code_start -= 1
            if self._au_start is None:
                self.skipped_bytes += code_start
                self._au_start = code_start
            self._pending, self._payload = code_start, i + 3
            self._scan = i + 3
        self._scan = max(self._scan, len(self._buf) - 2)
        if self._pending is not None and len(self._buf) - self._payload >= _PEEK_BYTES:
            self._classify(bytes(self._buf[self._payload:self._payload + _PEEK_BYTES]), out)
        self._trim()
        return out

    def flush(self) -> list[bytes]:
        """End of stream: return the last AU (if any) and reset."""
        out: list[bytes] = []
        if self._pending is not None:
            self._classify(bytes(self._buf[self._payload:self._payload + _PEEK_BYTES]), out)
        if self._au_start is not None:
            out.append(bytes(self._buf[self._au_start:]))
        else:
            self.skipped_bytes += len(self._buf)
        self._reset()
        return out

    def _classify(self, head: bytes, out: list[bytes]) -> None:
        """Decide whether the pending NAL opens a new AU; if so, emit the current AU first."""
        code_start, self._pending = self._pending, None
        if not head:
            return
        kind = nal_type(head, self.codec)
        vcl = is_vcl(kind, self.codec)
        openers = H264_AU_OPENERS if self.codec == "h264" else HEVC_AU_OPENERS
        try:
            opens = kind in openers or (vcl and starts_new_picture(head, self.codec))
        except BitstreamError:
            opens = False                       # unreadable slice header: keep it with the current AU
        if self._au_has_vcl and opens:
            out.append(bytes(self._buf[self._au_start:code_start]))
            self._au_start = code_start
            self._au_has_vcl = False
        self._au_has_vcl |= vcl

    def _trim(self) -> None:
        """Drop emitted (or, before the first start code, skipped) bytes so the buffer starts at the current AU."""
        if self._au_start is None:              # no start code yet: keep only a possible partial one
            cut = max(0, len(self._buf) - 3)
            self.skipped_bytes += cut
        else:
            cut = self._au_start
            self._au_start = 0
        if cut <= 0:
            return
        del self._buf[:cut]
        self._scan = max(0, self._scan - cut)
        self._payload = max(0, self._payload - cut)
        if self._pending is not None:
            self._pending -= cut


def split_access_units(stream: bytes, codec: Codec = "h264") -> list[bytes]:
    """Split a whole Annex-B elementary stream (or a message holding several pictures) into access units."""
    parser = AnnexBParser(codec)
    return parser.feed(stream) + parser.flush()


# --- validation ---------------------------------------------------------------------------------------------------

def _codec_name(codec: Codec) -> str:
    return "H.264" if codec == "h264" else "HEVC"


def validate_access_unit(data: bytes, codec: Codec = "h264") -> tuple[bytes, ...]:
    """Check that ``data`` is a plausible Annex-B AU and return its NAL payloads.

    Catches what a decoder would choke on or silently drop: empty input, other image formats, missing start code,
    empty NALs, a set forbidden_zero_bit and header values the standard rules out (random bytes trip these).
    Raises ``BitstreamError`` naming the problem and the byte offset.
    """
    check_codec(codec)
    name = _codec_name(codec)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"access unit must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise BitstreamError(f"empty access unit (0 bytes), expected Annex-B {name}")
    for magic, fmt in _MAGIC:
        if data.startswith(magic):
            raise BitstreamError(f"access unit looks like {fmt}, expected Annex-B {name}")
    if data[4:8] == b"ftyp":
        raise BitstreamError(f"access unit looks like an MP4/MOV file, expected Annex-B {name}")
    lead = len(data) - len(data.lstrip(b"\x00"))
    if lead < 2 or data[lead:lead + 1] != b"\x01":
        raise BitstreamError(
            f"no Annex-B start code at the start of the {len(data)}-byte access unit "
            f"(first bytes {data[:8].hex(' ')}), expected Annex-B {name}")
    starts = data.count(START_CODE)
    if starts > MAX_NALS_PER_AU:
        raise BitstreamError(f"{starts} NAL units in one {len(data)}-byte message (an access unit holds at most "
                             f"{MAX_NALS_PER_AU}), expected Annex-B {name}")
    nals = []
    header_len = 1 if codec == "h264" else 2
    for k, (_, payload, end) in enumerate(iter_nal_spans(data)):
        nal = data[payload:end]
        where = f"NAL #{k} at byte {payload}"
        if len(nal) < header_len:
            raise BitstreamError(f"{where}: empty or truncated NAL header in {name} access unit")
        if nal[0] & 0x80:
            raise BitstreamError(f"{where}: forbidden_zero_bit is set (not {name}, or corrupt)")
        if codec == "h264":
            kind, ref_idc = nal_type_h264(nal), nal[0] >> 5
            if kind == 0 or kind >= 24 or (kind in (H264_IDR, H264_SPS, H264_PPS) and ref_idc == 0):
                raise BitstreamError(
                    f"{where}: invalid H.264 NAL header 0x{nal[0]:02x} (type {kind}, ref_idc {ref_idc})")
        elif nal[1] & 0x07 == 0:
            raise BitstreamError(f"{where}: HEVC nuh_temporal_id_plus1 is 0 (corrupt NAL header)")
        nals.append(nal)
    return tuple(nals)


# --- entry-point gating --------------------------------------------------------------------------------------------

class EntryGate:
    """Decides when decoding may start, and keeps the parameter sets a late joiner needs.

    A decoder may start at an AU with an IDR (HEVC: any IRAP) once the parameter sets are known, in-band or from an
    earlier AU. Until then AUs are skipped and counted, so a subscriber that joins mid-GOP waits for the next IDR
    instead of feeding FFmpeg references it never saw. An IDR that arrives without in-band parameter sets gets the
    cached ones prepended, so a fresh decoder context can open on it.
    """

    def __init__(self, codec: Codec = "h264"):
        check_codec(codec)
        self.codec: Codec = codec
        self.open = False
        self.skipped = 0
        self.sps_resolution: tuple[int, int] | None = None   # (width, height) from the newest SPS seen
        self._param_sets: dict[tuple[str, int], bytes] = {}   # (kind, id) -> NAL payload

    def reset(self) -> None:
        """Close the gate (e.g. after a decoder restart); cached parameter sets stay."""
        self.open = False

    @property
    def missing_parameter_sets(self) -> tuple[str, ...]:
        """Parameter-set kinds never seen yet ("sps", "pps", HEVC "vps"): what a closed gate waits for besides an
        entry picture. For diagnostics: a sender without in-band headers shows up here."""
        cached = {kind for kind, _ in self._param_sets}
        return tuple(k for k in _REQUIRED_PARAM_SETS[self.codec] if k not in cached)

    def admit(self, nals: tuple[bytes, ...] | list[bytes], au: bytes) -> bytes | None:
        """Return the bytes to decode for this AU (maybe with cached headers in front), or None to skip it.

        Raises ``BitstreamError`` for an unreadable parameter set (nothing of it is cached then)."""
        in_band = self._remember(nals)
        if not is_entry_point(nals, self.codec):
            if self.open:
                return au
            self.skipped += 1
            return None
        missing = [k for k in _REQUIRED_PARAM_SETS[self.codec] if k not in in_band]
        if missing:
            if not set(missing) <= {kind for kind, _ in self._param_sets}:
                if self.open:
                    return au                   # the running decoder may still hold them; FFmpeg decides
                self.skipped += 1
                return None
            # in VPS, SPS, PPS order, since each refers to the one before
            cached = [nal for k in missing for (kind, _), nal in self._param_sets.items() if kind == k]
            au = join_nal_units(cached) + au
        self.open = True
        return au

    def _remember(self, nals) -> set[str]:
        """Cache the parameter sets among ``nals``; return the kinds present in-band."""
        kinds = PARAMETER_SET_TYPES[self.codec]
        seen = set()
        for nal in nals:
            kind = kinds.get(nal_type(nal, self.codec))
            if kind is None:
                continue
            seen.add(kind)
            key = (kind, _h264_parameter_set_id(nal) if self.codec == "h264" else 0)
            if kind == "sps":                   # parse first: an unreadable SPS is not cached
                self.sps_resolution = sps_resolution(nal, self.codec)
            self._param_sets[key] = nal
        return seen
