"""Errors of the codec layer. Each also inherits ``ValueError`` where the input is at fault."""
from ov2_ros.errors import Ov2Error


class CodecError(Ov2Error):
    """Base class of codec-layer errors."""


class BitstreamError(CodecError, ValueError):
    """Bytes that are not a usable Annex-B H.264/HEVC access unit (corrupt, truncated, random, wrong format)."""


class UnsupportedFormatError(CodecError, ValueError):
    """A payload format or codec the tokenizer does not handle (e.g. ``jpeg`` on the H.264 topic)."""


class DecodeError(CodecError, RuntimeError):
    """The decoder rejected an access unit. The stream state is kept; later AUs may decode."""


class ResolutionChangedError(CodecError):
    """The stream changed resolution: the current groups were closed and tokenization restarted."""


class VideoFileError(CodecError, ValueError):
    """A video file that cannot serve as a packet source: unreadable, not a container, or no H.264/HEVC stream."""


class VideoFileNotFoundError(VideoFileError, FileNotFoundError):
    """The video file does not exist."""
