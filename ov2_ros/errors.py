"""The package's error base. Each subpackage derives its own errors from it.

As in PyAV, a specific error also inherits the matching builtin (``ValueError``, ``FileNotFoundError``...), so callers
can catch either. Messages say what failed and where.
"""


class Ov2Error(Exception):
    """Base class of every error ov2_ros raises on purpose."""


class ConfigError(Ov2Error, ValueError):
    """A configuration value is out of range or inconsistent."""
