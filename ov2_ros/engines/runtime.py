"""``VlmRuntime`` over exported parts: the same ``prepare``/``generate``/``answer``/``close`` interface as the torch
runtime, with the vision tower, embedding and KV-cache decoder run by onnxruntime or TensorRT.

The torch model is not loaded: tokenizer from the checkpoint name, everything else from ``manifest.json``.
Greedy decoding follows ``VlmRuntime.generate`` step for step (prefill once, then one token at position n + i),
so on the same weights the generated tokens are the same.
"""
from __future__ import annotations

import pathlib
import time
from types import SimpleNamespace
from typing import Protocol

import numpy as np
import torch

from ov2_ros.engines.errors import EngineError
from ov2_ros.engines.manifest import Manifest, read_manifest
from ov2_ros.model.processor import ModelInputs
from ov2_ros.model.runtime import Generation, VlmRuntime
from ov2_ros.model.vision_cache import VisionCache

VLM_PARTS = ("vlm_vision", "vlm_embed", "vlm_decoder")


class PartRunner(Protocol):
    def __call__(self, part: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


class OrtRunner:
    """Parts run by onnxruntime (CPU by default; pass CUDA/TensorRT execution providers where installed)."""

    def __init__(self, export_dir: pathlib.Path, manifest: Manifest, providers=("CPUExecutionProvider",),
                 threads: int | None = None):
        from ov2_ros.engines.onnx_io import ort_session

        self._sessions = {p.name: ort_session(export_dir / p.file, providers, threads) for p in manifest.parts
                          if p.name in VLM_PARTS}

    def __call__(self, part: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._sessions[part].run(None, feeds)


class TrtRunner:
    """Parts run by TensorRT engines (``ov2-ros build-engines``); numpy in and out through CUDA tensors."""

    def __init__(self, engines: dict[str, pathlib.Path]):
        from ov2_ros.engines.tensorrt_backend import TrtPart

        self._parts = {name: TrtPart(path) for name, path in engines.items() if name in VLM_PARTS}

    def __call__(self, part: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        engine = self._parts[part]
        outs = engine(**{k: torch.from_numpy(np.ascontiguousarray(v)).cuda() for k, v in feeds.items()})
        torch.cuda.synchronize()
        return [outs[name].float().cpu().numpy() if outs[name].is_floating_point() else outs[name].cpu().numpy()
                for name in engine.outputs]


class _VisionParts:
    """What ``VisionCache.encode`` asks of a model, served by the ``vlm_vision`` part (one 4-canvas window)."""

    def __init__(self, runner: PartRunner, facts: dict):
        self._run = runner
        self.grid = [facts["frame_windows_size"], facts["canvas_hw"][0] // 14, facts["canvas_hw"][1] // 14]
        self.config = SimpleNamespace(vision_config=SimpleNamespace(frame_windows_size=facts["frame_windows_size"]))
        self.model = self

    def parameters(self):
        yield torch.empty(0)                  # device probe: outputs are CPU tensors

    def get_video_features(self, pixel_values, grid_thw, patch_positions) -> torch.Tensor:
        if grid_thw.tolist() != [self.grid]:
            raise EngineError(f"the vision part was exported for windows of (t, h, w) = {self.grid} patches, got "
                              f"{grid_thw.tolist()[0]}; export again with --canvas for this canvas size")
        out = self._run("vlm_vision", {"pixel_values": pixel_values.float().numpy(),
                                       "patch_positions": patch_positions.numpy().astype(np.int64)})
        return torch.from_numpy(out[0])


class EngineVlmRuntime(VlmRuntime):
    def __init__(self, manifest: Manifest, runner: PartRunner, tokenizer, max_new_tokens: int = 128,
                 vision_cache_windows: int = 16):
        facts = manifest.extra.get("vlm")
        missing = [p for p in VLM_PARTS if p not in {q.name for q in manifest.parts}]
        if facts is None or missing:
            raise EngineError(f"the export lacks VLM parts {missing or list(VLM_PARTS)}; "
                              "run `ov2-ros export --parts vision,decoder`")
        self.manifest = manifest
        self.runner = runner
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.device = torch.device("cpu")
        self.vision_cache = VisionCache(vision_cache_windows)
        self.model = _VisionParts(runner, facts)
        # the codec prompt's placeholders are <|image_pad|>, the release's image path (ov2_ros.model.processor)
        if "image_token_id" not in facts:
            raise EngineError("the export predates image-path prompts (no image_token_id); re-run `ov2-ros export`")
        self.vision_token_id = facts["image_token_id"]
        layers, heads, head_dim = facts["kv_layers_heads_dim"]
        self._empty_past = {f"past_{kind}_{i}": np.zeros((1, heads, 0, head_dim), np.float32)
                            for i in range(layers) for kind in ("key", "value")}
        self.stop_ids = set(facts["eos_token_ids"])
        if tokenizer.eos_token_id is not None:
            self.stop_ids.add(int(tokenizer.eos_token_id))
        self._cache = None

    def vision_tokens(self, inputs: ModelInputs, use_cache: bool = True) -> torch.Tensor:
        if use_cache:
            return self.vision_cache.encode(self.model, inputs.window)
        return VisionCache(1).encode(self.model, inputs.window)

    def _decoder(self, embeds: np.ndarray, start: int, past: dict[str, np.ndarray]):
        """One decoder call -> (greedy token, present KV as the next call's past)."""
        feeds = {"inputs_embeds": embeds, "position_ids": np.arange(start, start + embeds.shape[1])[None], **past}
        logits, *present = self.runner("vlm_decoder", feeds)
        return int(np.argmax(logits[0])), dict(zip(past, present))

    def generate(self, inputs: ModelInputs, max_new_tokens: int | None = None,
                 use_vision_cache: bool = True, stop_at_eos: bool = True) -> Generation:
        max_new = max_new_tokens or self.max_new_tokens
        t0 = time.perf_counter()
        vision = self.vision_tokens(inputs, use_vision_cache).numpy()
        t1 = time.perf_counter()
        ids = inputs.input_ids.numpy()
        embeds = self.runner("vlm_embed", {"input_ids": ids})[0]
        slots = ids[0] == self.vision_token_id
        if int(slots.sum()) != vision.shape[0]:
            raise EngineError(f"prompt has {int(slots.sum())} video tokens but the window made {vision.shape[0]}")
        embeds[0, slots] = vision
        n = ids.shape[1]
        token, past = self._decoder(embeds, 0, self._empty_past)
        t2 = time.perf_counter()
        out: list[int] = []
        for i in range(max_new):
            if stop_at_eos and token in self.stop_ids:
                break
            out.append(token)
            if i + 1 == max_new:
                break
            step = self.runner("vlm_embed", {"input_ids": np.array([[token]], np.int64)})[0]
            token, past = self._decoder(step, n + i, past)
        t3 = time.perf_counter()
        text = self.tokenizer.decode(out, skip_special_tokens=True)
        return Generation(tuple(out), text, t1 - t0, t2 - t1, t3 - t2, n)

    def close(self) -> None:
        self.vision_cache.clear()
        self.runner = None
        self.model = None


BACKENDS = ("torch", "onnxruntime", "tensorrt", "ray")


def select_backend(name: str, model: str = "tiny-random", device: str = "cpu", export_dir=None,
                   max_new_tokens: int = 128, precision: str = "fp16", ray_address: str = "http://127.0.0.1:8000",
                   ray_app: str = "ov2", ray_timeout_s: float = 30.0, **torch_kwargs) -> VlmRuntime:
    """A runtime with ``answer(window, query)`` on the chosen backend.

    ``torch``: ``ov2_ros.model.load_runtime``. ``onnxruntime``/``tensorrt``: the parts in ``export_dir``
    (``ov2-ros export --parts vision,decoder``); tensorrt also builds or reuses cached engines there and fails at
    once, naming what to install, where TensorRT does not import. ``ray``: the Ray Serve application ``ray_app``
    at ``ray_address`` (``ov2-ros serve``; ``ov2_ros.serving.ServedRuntime``), which loads no model here and
    connects on the first answer; the served model is the server's.
    """
    from ov2_ros.errors import ConfigError
    from ov2_ros.model.loading import load_tokenizer

    if name not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    if name == "ray":
        from ov2_ros.serving.client import ServedRuntime

        return ServedRuntime(ray_address, ray_app, timeout_s=ray_timeout_s)
    if name == "torch":
        from ov2_ros.model.runtime import load_runtime

        return load_runtime(model, device=device, max_new_tokens=max_new_tokens, **torch_kwargs)
    if name == "tensorrt":
        from ov2_ros.engines.tensorrt_backend import import_tensorrt

        import_tensorrt()                     # before anything slow: the clear "install X" error first
    if export_dir is None:
        raise ConfigError(f"the {name} backend needs export_dir: a folder from `ov2-ros export --model {model}`")
    root = pathlib.Path(export_dir)
    manifest = read_manifest(root)
    if manifest.model != model:
        raise ConfigError(f"{root} was exported from {manifest.model!r}, not {model!r}")
    if name == "onnxruntime":
        runner = OrtRunner(root, manifest)
    else:
        from ov2_ros.engines.tensorrt_backend import build_engines

        runner = TrtRunner(build_engines(root, precision))
    return EngineVlmRuntime(manifest, runner, load_tokenizer(model), max_new_tokens=max_new_tokens)
