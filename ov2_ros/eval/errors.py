"""Errors of the evaluation layer (bags, annotations, results). Each also inherits the matching builtin."""
from ov2_ros.errors import Ov2Error


class EvalError(Ov2Error):
    """Base class of evaluation-layer errors."""


class BagError(EvalError, ValueError):
    """A bag that cannot be read or written (not a rosbag2 directory, corrupt, unknown storage)."""


class TopicNotFoundError(EvalError, LookupError):
    """The requested topic is not in the bag (the message lists the image topics that are)."""


class ClockJumpError(EvalError, ValueError):
    """Source stamps on the image topic are not strictly increasing."""


class AnnotationError(EvalError, ValueError):
    """``annotations.json`` does not follow the schema in README.md, section Evaluation."""


class ResultsError(EvalError, ValueError):
    """A ``results.json`` that replay did not write, or of an unknown version."""
