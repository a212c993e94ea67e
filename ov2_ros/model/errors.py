"""Errors of the model layer. Each also inherits the matching builtin, so callers may catch either."""
from ov2_ros.errors import Ov2Error


class ModelError(Ov2Error):
    """Base class of model-layer errors."""


class CheckpointNotFoundError(ModelError, FileNotFoundError):
    """A model directory, config or weight file is missing."""


class CheckpointKeyError(ModelError, ValueError):
    """The weights do not match the architecture (missing, unexpected or mis-shaped keys)."""


class CorruptCheckpointError(ModelError, ValueError):
    """A weight file exists but cannot be read."""


class WrongModelTypeError(ModelError, ValueError):
    """config.json names a model type this package does not implement."""


class ProcessorError(ModelError, ValueError):
    """Inputs cannot be turned into model inputs (bad shapes, empty window, token count mismatch)."""
