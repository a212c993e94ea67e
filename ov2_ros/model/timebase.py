"""A window's time origin: the model's times count from it, so they stay bounded on an endless stream (no torch).

The origin is the start of the ``TIME_EPOCH_S`` epoch the window's earliest frame falls in. The prompt's
``<t seconds>`` tags are ``time - origin`` and the patch positions' ``t`` is that in frames, so both stay within
[0, epoch + window span), inside the training clips' 0 to about 15 minutes, however long the stream has run.
Why epochs rather than each window's own start: see ``ov2_ros.model.processor`` (the vision cache).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ov2_ros.model.errors import ProcessorError

TIME_EPOCH_S = 600.0   # origins are multiples of this: t stays under it plus a window's span (< 15 min)


def time_origin(frame_times: dict[int, float]) -> float:
    """The origin of a window with these frame times (seconds since stream start)."""
    if not frame_times:
        raise ProcessorError("the window has no frame times, so it has no time origin")
    return math.floor(min(frame_times.values()) / TIME_EPOCH_S) * TIME_EPOCH_S


@dataclass(frozen=True)
class TimeBase:
    """A window's origin (seconds) and frame rate: model time is ``time - origin_s``, ``model_t`` that in frames."""

    origin_s: float
    fps: float

    def model_t(self, time_s: float) -> int:
        return int(round((time_s - self.origin_s) * self.fps))
