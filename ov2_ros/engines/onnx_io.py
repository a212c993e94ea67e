"""Export one torch module to ONNX and check it against torch in onnxruntime.

Uses the TorchScript-based exporter (``dynamo=False``): the dynamo exporter needs onnxscript, which this stack does
not ship, and the TorchScript path covers the SAM2 and decoder graphs here.
"""
from __future__ import annotations

import pathlib
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ov2_ros.engines.errors import ExportError
from ov2_ros.engines.manifest import PartSpec, Profile, TensorSpec

DEFAULT_OPSET = 17


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.detach().cpu().numpy().dtype) if t.dtype != torch.bfloat16 else "bfloat16"


def _spec(name: str, t: torch.Tensor, dynamic: Mapping[int, str]) -> TensorSpec:
    return TensorSpec(name=name, shape=tuple(dynamic.get(i, int(d)) for i, d in enumerate(t.shape)),
                      dtype=_dtype_name(t))


def ort_session(path: str | pathlib.Path, providers: Sequence[str] = ("CPUExecutionProvider",),
                threads: int | None = None):
    """An onnxruntime session; ``threads`` caps intra-op threads (0/None: onnxruntime's default, one per core)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=list(providers))


def torch_outputs(module: torch.nn.Module, inputs: Mapping[str, torch.Tensor]) -> list[np.ndarray]:
    with torch.inference_mode():
        out = module(*inputs.values())
    out = out if isinstance(out, (tuple, list)) else (out,)
    return [o.detach().float().cpu().numpy() for o in out]


def max_abs_diff(session, module: torch.nn.Module, inputs: Mapping[str, torch.Tensor]) -> float:
    """Largest |onnxruntime - torch| over all outputs for one input set."""
    ours = session.run(None, {k: v.detach().cpu().numpy() for k, v in inputs.items()})
    ref = torch_outputs(module, inputs)
    return max(float(np.max(np.abs(a.astype(np.float32) - b))) if a.size else 0.0 for a, b in zip(ours, ref))


def export_part(name: str, module: torch.nn.Module, inputs: Mapping[str, torch.Tensor], output_names: Sequence[str],
                out_dir: str | pathlib.Path, dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
                profiles: Sequence[Profile] = (), check_inputs: Sequence[Mapping[str, torch.Tensor]] = (),
                tolerance: float = 1e-4, opset: int = DEFAULT_OPSET) -> PartSpec:
    """Write ``out_dir/name.onnx``, verify it on ``inputs`` and each of ``check_inputs`` (other shapes along the
    dynamic axes), and return its manifest entry. Raises ExportError when the diff exceeds ``tolerance``."""
    dynamic_axes = {k: dict(v) for k, v in (dynamic_axes or {}).items()}
    path = pathlib.Path(out_dir) / f"{name}.onnx"
    module = module.eval()
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")   # tracer warnings about Python control flow frozen at export shapes
            torch.onnx.export(module, tuple(inputs.values()), str(path), input_names=list(inputs),
                              output_names=list(output_names), dynamic_axes=dynamic_axes or None,
                              opset_version=opset, dynamo=False)
    except Exception as exc:  # the exporter raises many types; keep the cause
        raise ExportError(f"ONNX export of {name} to {path} failed: {type(exc).__name__}: {exc}") from exc
    session = ort_session(path)
    diff = max(max_abs_diff(session, module, x) for x in (inputs, *check_inputs))
    if not diff <= tolerance:
        raise ExportError(f"{name}: onnxruntime differs from torch by {diff:.3g} (> {tolerance:g}) in {path}")
    outputs = session.run(None, {k: v.detach().cpu().numpy() for k, v in inputs.items()})
    return PartSpec(
        name=name, file=path.name,
        inputs=tuple(_spec(k, v, dynamic_axes.get(k, {})) for k, v in inputs.items()),
        outputs=tuple(TensorSpec(n, tuple(dynamic_axes.get(n, {}).get(i, int(d)) for i, d in enumerate(o.shape)),
                                 str(o.dtype)) for n, o in zip(output_names, outputs)),
        profiles=tuple(profiles), max_abs_diff=diff, tolerance=tolerance)
