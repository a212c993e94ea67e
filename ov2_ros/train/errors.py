"""Training errors: every one is an ``Ov2Error`` with the matching builtin, so the CLI prints one line."""
from __future__ import annotations

from ov2_ros.errors import Ov2Error


class TrainError(Ov2Error):
    """Base of training errors."""


class TrainDataError(TrainError, ValueError):
    """Annotations or clips that cannot become training examples (no video named, empty clip, no window)."""


class CheckpointWriteError(TrainError, OSError):
    """A checkpoint or model folder could not be written (disk full, read-only); nothing half-written is left."""
