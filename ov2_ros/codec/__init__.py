"""Codec-stream tokenization: H.264 access units in, CodecWindow out. Pure: numpy + PyAV + OpenCV, no torch, no ROS."""
from ov2_ros.codec.errors import BitstreamError, CodecError, DecodeError, ResolutionChangedError, UnsupportedFormatError
from ov2_ros.codec.packing import CanvasGrid, patchify, smart_resize
from ov2_ros.codec.tokenizer import CodecTokenizer, TokenizerStats
from ov2_ros.codec.types import AccessUnit, Canvas, CodecWindow, DecodedFrame, FrameGroup, TokenizerConfig

__all__ = [
    "AccessUnit", "BitstreamError", "Canvas", "CodecError", "CodecWindow", "DecodeError", "DecodedFrame",
    "FrameGroup", "ResolutionChangedError", "TokenizerConfig", "UnsupportedFormatError",
    "CanvasGrid", "CodecTokenizer", "TokenizerStats", "patchify", "smart_resize",
]
