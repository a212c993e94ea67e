"""Deployment: ONNX export with a manifest, a TensorRT engine cache, and runtime backend selection.

Heavy imports (torch, onnxruntime, tensorrt) stay inside the modules that need them.
"""
from ov2_ros.engines.errors import BackendUnavailableError, EngineError, ExportError, ManifestError
from ov2_ros.engines.manifest import Manifest, PartSpec, Profile, TensorSpec, read_manifest, write_manifest

__all__ = ["BackendUnavailableError", "EngineError", "ExportError", "Manifest", "ManifestError", "PartSpec",
           "Profile", "TensorSpec", "read_manifest", "write_manifest"]
