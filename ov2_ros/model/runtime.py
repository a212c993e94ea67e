"""``VlmRuntime``: window + query -> parsed ``Answer``; the interface the ROS node and evaluation call.

One query = vision tokens (per-window cache, see ``vision_cache.py``) -> prompt embeddings -> greedy generation
with a transformers ``StaticCache`` (prefill once, then one token per step at fixed shapes). On CUDA the decode
step can be wrapped in ``torch.compile(mode="reduce-overhead")`` (CUDA graphs; static shapes make that possible)
and attention uses SDPA (flash kernels for bf16/fp16). Those CUDA paths are present but cannot run in the CPU-only
development environment; ``bench/model_gpu.py`` measures them on a GPU.
"""
from __future__ import annotations

import gc
import inspect
import time
from dataclasses import dataclass, replace

import torch
from transformers.cache_utils import StaticCache

from ov2_ros.codec.types import CodecWindow
from ov2_ros.model.answer import Answer, Query
from ov2_ros.model.errors import ModelError
from ov2_ros.model.loading import TINY, load_model, load_tokenizer
from ov2_ros.model.parsers import parse_answer
from ov2_ros.model.processor import ModelInputs, prepare_inputs
from ov2_ros.model.prompts import instruction
from ov2_ros.model.vision_cache import VisionCache


# KV-cache length granularity (tokens): coarse with a compiled decode step, so CUDA graphs are captured once for
# prompts of similar length; fine otherwise, since every padded slot costs attention work in prefill and decode.
CACHE_BLOCK, CACHE_BLOCK_COMPILED = 64, 512


@dataclass(frozen=True)
class Generation:
    """Greedy output: ``token_ids`` (new tokens only, eos excluded), decoded ``text`` and stage seconds."""

    token_ids: tuple[int, ...]
    text: str
    vit_s: float
    prefill_s: float
    decode_s: float
    prompt_tokens: int


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class VlmRuntime:
    def __init__(self, model, tokenizer, max_new_tokens: int = 128, vision_cache_windows: int = 16,
                 compile_decode: bool = False):
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.device = next(model.parameters()).device
        self.vision_cache = VisionCache(vision_cache_windows)
        eos = model.config.eos_token_id
        self.stop_ids = {int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None}
        if tokenizer.eos_token_id is not None:
            self.stop_ids.add(int(tokenizer.eos_token_id))
        self._cache: StaticCache | None = None
        self._cache_len = 0
        self._step = self._decode_step
        self.compiled_decode = compile_decode
        if compile_decode:
            # CUDA graphs on a GPU; on CPU this only fuses kernels (minutes of compile for little gain: for checks)
            mode = "reduce-overhead" if self.device.type == "cuda" else "default"
            self._step = torch.compile(self._decode_step, mode=mode, fullgraph=False)

    # -- stages ---------------------------------------------------------------------------------------------------
    def prepare(self, window: CodecWindow, query: Query) -> ModelInputs:
        return prepare_inputs(window, instruction(query), self.tokenizer)

    @torch.inference_mode()
    def vision_tokens(self, inputs: ModelInputs, use_cache: bool = True) -> torch.Tensor:
        """(tokens, D) merged vision tokens of the window, per-window cached when ``use_cache``."""
        if use_cache:
            return self.vision_cache.encode(self.model, inputs.window)
        v = inputs.vision
        return self.model.model.get_video_features(v.pixel_values_videos.to(self.device),
                                                   v.video_grid_thw.to(self.device), v.patch_positions.to(self.device))

    def _decode_step(self, token: torch.Tensor, position: torch.Tensor, cache: StaticCache) -> torch.Tensor:
        lm = self.model.model.language_model
        hidden = lm(inputs_embeds=lm.embed_tokens(token), position_ids=position, cache=cache,
                    use_cache=True).last_hidden_state
        return self.model.lm_head(hidden[:, -1]).argmax(-1, keepdim=True)

    @torch.inference_mode()
    def generate(self, window_or_inputs: CodecWindow | ModelInputs, inputs: ModelInputs | None = None,
                 max_new_tokens: int | None = None, use_vision_cache: bool = True,
                 stop_at_eos: bool = True) -> Generation:
        """Greedy decoding with a static KV cache sized prompt + ``max_new_tokens``.

        Called as ``generate(inputs, ...)`` or, as first published, ``generate(window, inputs, ...)``.
        ``stop_at_eos=False`` always decodes ``max_new_tokens`` (benchmarks with random weights)."""
        if isinstance(window_or_inputs, ModelInputs):
            if inputs is not None:      # generate(inputs, max_new_tokens) given positionally
                max_new_tokens, inputs = inputs, window_or_inputs  # type: ignore[assignment]
            else:
                inputs = window_or_inputs
        elif inputs is None or inputs.window is not window_or_inputs:
            raise ModelError("generate(window, inputs): inputs must be prepared from that window")
        max_new = max_new_tokens or self.max_new_tokens
        t0 = time.perf_counter()
        vision = self.vision_tokens(inputs, use_vision_cache)
        _sync(self.device)
        t1 = time.perf_counter()
        ids = inputs.input_ids.to(self.device)
        embeds = self.model.model.embed(ids, video_embeds=vision)
        n = ids.shape[1]
        cache = self._static_cache(n + max_new)
        lm = self.model.model.language_model
        hidden = lm(inputs_embeds=embeds, position_ids=torch.arange(n, device=self.device)[None], cache=cache,
                    use_cache=True).last_hidden_state
        token = self.model.lm_head(hidden[:, -1]).argmax(-1, keepdim=True)
        _sync(self.device)
        t2 = time.perf_counter()
        out: list[int] = []
        for i in range(max_new):
            tok = int(token)
            if stop_at_eos and tok in self.stop_ids:
                break
            out.append(tok)
            if i + 1 == max_new:
                break
            token = self._step(token, torch.tensor([[n + i]], device=self.device), cache)
        _sync(self.device)
        t3 = time.perf_counter()
        text = self.tokenizer.decode(out, skip_special_tokens=True)
        return Generation(tuple(out), text, t1 - t0, t2 - t1, t3 - t2, n)

    def _static_cache(self, length: int) -> StaticCache:
        """One KV cache reused across queries (no reallocation), its length rounded up to a block of tokens."""
        block = CACHE_BLOCK_COMPILED if self.compiled_decode else CACHE_BLOCK
        size = -(-length // block) * block
        if self._cache is None or self._cache_len != size:
            self._cache = None                                  # free the old one before allocating
            self._cache = StaticCache(config=self.model.config.text_config, max_cache_len=size)
            self._cache_len = size
        else:
            self._cache.reset()
        return self._cache

    def _generate_for(self, window: CodecWindow, inputs: ModelInputs) -> Generation:
        # Subclasses (test doubles, the engine backends) override generate in either published form; call theirs
        # in the form it declares.
        if "window" in inspect.signature(self.generate).parameters:
            return self.generate(window, inputs)
        return self.generate(inputs)

    # -- the interface the node and evaluation use ------------------------------------------------------------------
    def answer(self, window: CodecWindow, query: Query) -> Answer:
        """Run ``query`` on ``window``; the parsed answer with latency, window span and stage timings."""
        t0 = time.perf_counter()
        inputs = self.prepare(window, query)
        gen = self._generate_for(window, inputs)
        times = window.frame_times
        parsed = parse_answer(query.task, gen.text, times, window.source_size)
        stats = self.vision_cache.stats
        span = (min(times.values()), max(times.values())) if times else (0.0, 0.0)
        return replace(parsed, latency_s=time.perf_counter() - t0, window_span=span,
                       window_frames=(window.start_frame, window.end_frame),
                       extra={"prompt_tokens": gen.prompt_tokens, "new_tokens": len(gen.token_ids),
                              "vit_s": gen.vit_s, "prefill_s": gen.prefill_s, "decode_s": gen.decode_s,
                              "vision_cache_hits": stats.hits, "vision_cache_misses": stats.misses})

    def close(self) -> None:
        """Drop the model and cached tensors; frees GPU memory."""
        self.vision_cache.clear()
        self._cache = None
        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def load_runtime(model: str = TINY, device: str = "cpu", dtype: torch.dtype | None = None,
                 max_new_tokens: int = 128, backend: str = "torch", attn_implementation: str | None = None,
                 compile_decode: bool = False, vision_cache_windows: int = 16) -> VlmRuntime:
    """A ready runtime. ``attn_implementation`` defaults to eager on CPU (the reference) and SDPA on CUDA."""
    if backend != "torch":
        raise ModelError(f"ov2_ros.model.load_runtime runs the torch backend only, not {backend!r}; exported "
                         "onnxruntime/tensorrt parts load with ov2_ros.engines.runtime.select_backend")
    attn = attn_implementation or ("sdpa" if torch.device(device).type == "cuda" else "eager")
    net = load_model(model, device=device, dtype=dtype, attn_implementation=attn)
    return VlmRuntime(net, load_tokenizer(model), max_new_tokens, vision_cache_windows, compile_decode)
