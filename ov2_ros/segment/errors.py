"""Errors of the segmentation layer. Each also inherits the builtin that matches the caller's mistake."""
from ov2_ros.errors import Ov2Error


class SegmentError(Ov2Error, ValueError):
    """A prompt or frame the mask tracker cannot use (outside the frame, wrong shape, frame index going back)."""


class SegmentModelError(Ov2Error, FileNotFoundError):
    """A SAM2 checkpoint that cannot be found or loaded (names the model and where it was looked for)."""
