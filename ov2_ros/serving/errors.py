"""Errors of the serving layer (Ray Serve deployment and its client)."""
from ov2_ros.errors import Ov2Error


class ServingError(Ov2Error):
    """Base class of serving errors."""


class PayloadError(ServingError, ValueError):
    """A request or reply that does not decode: wrong version, truncated blob, digest mismatch."""


class ServerUnavailableError(ServingError, ConnectionError):
    """The deployment did not answer: down, restarting, unreachable, or past the request timeout."""


class ServerError(ServingError, RuntimeError):
    """The deployment answered with an error (its message is passed on)."""
