"""Errors of the export/engine layer."""
from ov2_ros.errors import Ov2Error


class EngineError(Ov2Error):
    """Base class of export and engine errors."""


class ManifestError(EngineError, ValueError):
    """A manifest.json that is missing, malformed, or names files that are not there."""


class ExportError(EngineError, RuntimeError):
    """An ONNX export failed or did not match torch within tolerance."""


class BackendUnavailableError(EngineError, ImportError):
    """A runtime backend whose library does not import here (names what to install)."""
