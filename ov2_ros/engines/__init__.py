"""Deployment: ONNX export with a manifest, a TensorRT engine cache, and runtime backend selection.

Heavy imports (torch, onnxruntime, tensorrt) stay inside the modules that need them:
``ov2_ros.engines.export.export_model`` (ONNX + manifest), ``ov2_ros.engines.tensorrt_backend.build_engines``,
``ov2_ros.engines.runtime.select_backend`` (torch / onnxruntime / tensorrt runtimes with one interface).
"""
from ov2_ros.engines.errors import BackendUnavailableError, EngineError, ExportError, ManifestError
from ov2_ros.engines.manifest import Manifest, PartSpec, Profile, TensorSpec, read_manifest, write_manifest

__all__ = ["BackendUnavailableError", "EngineError", "ExportError", "Manifest", "ManifestError", "PartSpec",
           "Profile", "TensorSpec", "read_manifest", "write_manifest"]
