"""TensorRT engines from the exported ONNX parts, through the TensorRT Python API (TensorRT 10).

TensorRT cannot be installed in this project's development/CI environment, so the build and run code below is
exercised only on machines that have it (Jetson with JetPack 6, or a desktop GPU with NVIDIA's TensorRT wheels);
everything it consumes (manifest, profiles, cache keys) is tested here.
"""
from __future__ import annotations

import pathlib
import platform
from collections.abc import Callable

from ov2_ros.engines.engine_cache import EngineCache, Target, engine_key
from ov2_ros.engines.errors import BackendUnavailableError, EngineError
from ov2_ros.engines.manifest import PartSpec, read_manifest

WORKSPACE_BYTES = 4 << 30


def is_jetson() -> bool:
    if pathlib.Path("/etc/nv_tegra_release").exists():
        return True
    model = pathlib.Path("/proc/device-tree/model")
    return platform.machine() == "aarch64" and model.exists() and "jetson" in model.read_text(errors="ignore").lower()


def install_hint() -> str:
    if is_jetson():
        return ("on Jetson, TensorRT comes with JetPack 6: `sudo apt install nvidia-jetpack` (python3-libnvinfer), "
                "then create the venv with --system-site-packages so `import tensorrt` sees it")
    return ("on a desktop GPU, install NVIDIA's TensorRT wheels matching your CUDA: "
            "`pip install tensorrt-cu12` (served from pypi.nvidia.com)")


def import_tensorrt():
    """The ``tensorrt`` module, or BackendUnavailableError naming what to install on this machine."""
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailableError(f"the tensorrt backend needs TensorRT, which does not import here ({exc}); "
                                      f"{install_hint()}") from exc
    return tensorrt


def current_target(trt) -> Target:
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailableError("TensorRT engines need a CUDA GPU, and torch sees none")
    return Target(tensorrt_version=trt.__version__, gpu_name=torch.cuda.get_device_name(0),
                  compute_capability=tuple(torch.cuda.get_device_capability(0)))


def build_serialized(trt, onnx_path: pathlib.Path, part: PartSpec, precision: str) -> bytes:
    """Parse the ONNX, apply precision flags and the manifest's shape profiles, return the serialized engine.

    int8 and fp8 take effect on Q/DQ-quantized ONNX (e.g. from NVIDIA ModelOpt); on a plain float ONNX TensorRT
    keeps those layers at higher precision.
    """
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    flags = {"fp16": ["FP16"], "bf16": ["BF16"], "int8": ["INT8", "FP16"], "fp8": ["FP8", "FP16"]}.get(precision, [])
    for flag in flags:
        if not hasattr(trt.BuilderFlag, flag):
            raise EngineError(f"TensorRT {trt.__version__} has no {flag} builder flag (precision {precision})")
        config.set_flag(getattr(trt.BuilderFlag, flag))
    for prof in part.profiles:
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in prof.shapes.items():
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"TensorRT failed to build {part.name} at {precision} (see the TensorRT log above)")
    return bytes(serialized)


def build_engines(export_dir: str | pathlib.Path, precision: str = "fp16", cache_dir: str | pathlib.Path | None = None,
                  log: Callable[[str], None] = print) -> dict[str, pathlib.Path]:
    """Build (or reuse) one engine per manifest part; engines for another TRT/GPU/precision/ONNX are rebuilt."""
    root = pathlib.Path(export_dir)
    manifest = read_manifest(root)         # fails clearly before TensorRT is even needed
    trt = import_tensorrt()
    target = current_target(trt)
    cache = EngineCache(cache_dir or root / "engines")
    built: dict[str, pathlib.Path] = {}
    for part in manifest.parts:
        key = engine_key(root, part, precision, target)
        hit = cache.lookup(key)
        if hit is not None:
            log(f"{part.name}: cached {hit.name}")
            built[part.name] = hit
            continue
        stale = cache.stale(key)
        log(f"{part.name}: building {precision} engine" + (f" (replacing {len(stale)} stale)" if stale else ""))
        built[part.name] = cache.store(key, build_serialized(trt, root / part.file, part, precision))
    return built


class TrtPart:
    """Run one engine with torch CUDA tensors (TensorRT 10 named-tensor API)."""

    def __init__(self, engine_path: str | pathlib.Path):
        import torch

        trt = import_tensorrt()
        self._torch = torch
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self._runtime.deserialize_cuda_engine(pathlib.Path(engine_path).read_bytes())
        if self.engine is None:
            raise EngineError(f"{engine_path}: TensorRT could not deserialize it (built for another version/GPU?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]

    def _select_profile(self, shapes: dict[str, tuple[int, ...]]) -> None:
        """Use the first optimisation profile whose ranges hold these shapes (prefill vs decode)."""
        for index in range(self.engine.num_optimization_profiles):
            fits = True
            for name, shape in shapes.items():
                lo, _, hi = self.engine.get_tensor_profile_shape(name, index)
                fits &= len(lo) == len(shape) and all(a <= d <= b for a, d, b in zip(lo, shape, hi))
            if fits:
                if self.context.active_optimization_profile != index:
                    self.context.set_optimization_profile_async(index, self._torch.cuda.current_stream().cuda_stream)
                return
        raise EngineError(f"no optimisation profile of this engine holds input shapes {shapes}")

    def __call__(self, **inputs) -> dict:
        torch = self._torch
        if self.engine.num_optimization_profiles > 1:
            self._select_profile({n: tuple(inputs[n].shape) for n in self.inputs})
        for name in self.inputs:
            t = inputs[name].contiguous()
            self.context.set_input_shape(name, tuple(t.shape))
            self.context.set_tensor_address(name, t.data_ptr())
            inputs[name] = t
        outs = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = _torch_dtype(torch, self.engine.get_tensor_dtype(name))
            outs[name] = torch.empty(shape, dtype=dtype, device="cuda")
            self.context.set_tensor_address(name, outs[name].data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise EngineError("TensorRT execution failed")
        return outs


def _torch_dtype(torch, trt_dtype):
    name = str(trt_dtype).rsplit(".", 1)[-1].lower()
    return {"float": torch.float32, "half": torch.float16, "bf16": torch.bfloat16, "int32": torch.int32,
            "int64": torch.int64, "bool": torch.bool, "int8": torch.int8}[name]
