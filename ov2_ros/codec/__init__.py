"""Codec-stream tokenization: H.264 access units in, CodecWindow out. Pure: numpy + PyAV + OpenCV, no torch, no ROS."""
from ov2_ros.codec.errors import BitstreamError, CodecError, DecodeError, ResolutionChangedError, UnsupportedFormatError
from ov2_ros.codec.packing import CanvasGrid, patchify, smart_resize
from ov2_ros.codec.tokenizer import CodecTokenizer, TokenizeResult, TokenizerStats, tokenize_file
from ov2_ros.codec.types import AccessUnit, Canvas, CodecWindow, DecodedFrame, FrameGroup, TokenizerConfig

__all__ = [
    "AccessUnit", "BitstreamError", "Canvas", "CodecError", "CodecWindow", "DecodeError", "DecodedFrame",
    "FrameGroup", "ResolutionChangedError", "TokenizerConfig", "UnsupportedFormatError",
    "CanvasGrid", "CodecTokenizer", "TokenizeResult", "TokenizerStats", "patchify", "smart_resize", "tokenize_file",
]
