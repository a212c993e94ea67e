"""``VlmRuntime``: window + query -> parsed ``Answer``; the interface the ROS node, evaluation and serving call.

One query = vision tokens (per-group cache, see ``vision_cache.py``) -> prompt embeddings -> greedy generation
over a transformers ``StaticCache`` (prefill once, then one token per step at fixed shapes, ``decoding.py``).
``answer_batch`` runs B windows (other streams, other queries) together: one ViT call over every group the cache misses,
each prompt prefilled into its row of one batched static cache (left-padded), one batched decode in which each
sequence stops at its own EOS; its tokens equal per-window generation. Prefill stays per prompt because it is
compute-bound (batching saves no work) and a padded batch would lose the causal flash path; decode, bound by
reading the weights once per step, is where batching pays.

Decode modes (``decode=``): ``graph`` (default on CUDA) captures the one-token step in a CUDA graph and replays
it, ``compile`` wraps it in ``torch.compile(mode="reduce-overhead")``, ``eager`` (default on CPU) calls it. A
capture or compile that fails falls back to eager; ``Answer.extra["decode_mode"]`` says what ran and
``extra["decode_fallback"]`` why. Attention is SDPA on CUDA (flash kernels for the bf16 ViT windows and the
unpadded prefill), eager (the reference) on CPU. ``bench/model_gpu.py`` measures the CUDA paths.
"""
from __future__ import annotations

import gc
import inspect
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from transformers.cache_utils import DynamicCache, StaticCache

from ov2_ros.codec.types import CodecWindow
from ov2_ros.model.answer import Answer, Query
from ov2_ros.model.decoding import DecodeState, make_runner
from ov2_ros.model.errors import ModelError
from ov2_ros.model.loading import TINY, load_model, load_tokenizer
from ov2_ros.model.parsers import parse_answer
from ov2_ros.model.processor import ModelInputs, prepare_inputs
from ov2_ros.model.prompts import instruction
from ov2_ros.model.vision_cache import VisionCache, encode_fused


# KV-cache length granularity (tokens): coarse with a captured or compiled decode step, so one graph serves prompts
# of similar length; fine otherwise, since every padded slot costs attention work in prefill and decode.
CACHE_BLOCK, CACHE_BLOCK_COMPILED = 64, 512
# (batch, cache length) decoders kept: each holds its KV cache (and graph); a serving replica sees a few batch sizes
DECODERS_KEPT = 3


@dataclass(frozen=True)
class Generation:
    """Greedy output: ``token_ids`` (new tokens only, eos excluded), decoded ``text`` and stage seconds (of the
    whole batch when batched), the decode mode that ran and why it fell back, if it did."""

    token_ids: tuple[int, ...]
    text: str
    vit_s: float
    prefill_s: float
    decode_s: float
    prompt_tokens: int
    batch_size: int = 1
    decode_mode: str = "eager"
    decode_fallback: str | None = None


@dataclass
class _Decoder:
    """The KV cache, step buffers and step runner of one (batch, cache length)."""

    cache: StaticCache
    state: DecodeState | None = None
    run: Callable[[], None] | None = None
    mode: str = "eager"
    fallback: str | None = None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class VlmRuntime:
    def __init__(self, model, tokenizer, max_new_tokens: int = 128, vision_cache_windows: int = 16,
                 compile_decode: bool = False, decode: str | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.device = next(model.parameters()).device
        self.vision_cache = VisionCache(vision_cache_windows)
        eos = model.config.eos_token_id
        self.stop_ids = {int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None}
        if tokenizer.eos_token_id is not None:
            self.stop_ids.add(int(tokenizer.eos_token_id))
        self.decode_mode = decode or ("compile" if compile_decode else
                                      "graph" if self.device.type == "cuda" else "eager")
        self.compiled_decode = self.decode_mode != "eager"
        self._decoders: OrderedDict[tuple[int, int], _Decoder] = OrderedDict()

    # -- stages ---------------------------------------------------------------------------------------------------
    def prepare(self, window: CodecWindow, query: Query) -> ModelInputs:
        return prepare_inputs(window, instruction(query), self.tokenizer)

    @torch.inference_mode()
    def vision_tokens(self, inputs: ModelInputs, use_cache: bool = True) -> torch.Tensor:
        """(tokens, D) merged vision tokens of the window, per-window cached when ``use_cache``."""
        if use_cache:
            return self.vision_cache.encode(self.model, inputs.window)
        return encode_fused(self.model, [inputs.vision])[0]

    def _vision_batch(self, batch: list[ModelInputs], use_cache: bool) -> list[torch.Tensor]:
        if not use_cache:
            return encode_fused(self.model, [x.vision for x in batch])
        # each stream's groups must outlive the next batch's slide: hold at least two batches' worth
        groups = sum(-(-len(x.window.canvases) // self.model.config.vision_config.frame_windows_size) for x in batch)
        self.vision_cache.capacity = max(self.vision_cache.capacity, 2 * groups)
        return self.vision_cache.encode_batch(self.model, [x.window for x in batch])

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
        return self.generate_batch([inputs], max_new_tokens, use_vision_cache, stop_at_eos)[0]

    @torch.inference_mode()
    def generate_batch(self, batch: list[ModelInputs], max_new_tokens: int | None = None,
                       use_vision_cache: bool = True, stop_at_eos: bool = True) -> list[Generation]:
        """Greedy decoding of B prompts together: each prompt prefilled into its row of one batched static cache
        (left-padded to the longest), then one batched step per token until every sequence has met its EOS (or
        ``max_new_tokens``). Tokens equal ``generate`` on each prompt alone."""
        if not batch:
            return []
        max_new = max_new_tokens or self.max_new_tokens
        t0 = time.perf_counter()
        vision = self._vision_batch(batch, use_vision_cache)
        _sync(self.device)
        t1 = time.perf_counter()
        lengths = [int(x.input_ids.shape[1]) for x in batch]
        width = max(lengths)
        dec = self._decoder(len(batch), width + max_new)
        mask = torch.zeros((len(batch), width), dtype=torch.int64)
        first = []
        for row, (x, tokens, n) in enumerate(zip(batch, vision, lengths)):
            first.append(self._prefill(x, tokens, dec.cache, row, len(batch), width - n))
            mask[row, width - n:] = 1
        for layer in dec.cache.layers:
            layer.cumulative_length.fill_(width)            # every row's next token goes to slot ``width``
        first = torch.cat(first)
        self._start(dec, first, torch.tensor(lengths, device=self.device)[:, None], mask.to(self.device),
                    self.model.model.language_model.norm.weight.dtype)      # the hidden states' dtype
        tokens = first.tolist()
        _sync(self.device)
        t2 = time.perf_counter()
        outs: list[list[int]] = [[] for _ in batch]
        live = [True] * len(batch)
        for _ in range(max_new):
            for row, (tok,) in enumerate(tokens):
                if not live[row]:
                    continue
                if stop_at_eos and tok in self.stop_ids:
                    live[row] = False
                    continue
                outs[row].append(tok)
                live[row] = len(outs[row]) < max_new
            if not any(live):
                break
            dec.run()
            tokens = dec.state.token.tolist()           # the one host read per step: the new tokens
        _sync(self.device)
        t3 = time.perf_counter()
        return [Generation(tuple(out), self.tokenizer.decode(out, skip_special_tokens=True), t1 - t0, t2 - t1,
                           t3 - t2, n, len(batch), dec.mode, dec.fallback) for out, n in zip(outs, lengths)]

    def _prefill(self, inputs: ModelInputs, vision: torch.Tensor, cache: StaticCache, row: int, rows: int,
                 offset: int) -> torch.Tensor:
        """Prefill one prompt alone (causal, unpadded: the flash path; prefill is compute-bound, so batching it
        saves nothing, and a padded batch would attend over the padding) and place its keys/values in ``row`` of
        the ``rows``-row batch cache from slot ``offset`` (left padding). Returns its first greedy token (1, 1)."""
        ids = inputs.input_ids.to(self.device)
        embeds = self.model.model.embed(ids, video_embeds=vision)
        lm = self.model.model.language_model
        scratch = DynamicCache(config=self.model.config.text_config)
        hidden = lm(inputs_embeds=embeds, position_ids=torch.arange(ids.shape[1], device=self.device)[None],
                    cache=scratch, use_cache=True).last_hidden_state
        n = ids.shape[1]
        for layer, part in zip(cache.layers, scratch.layers):
            if not layer.is_initialized:                  # allocated once per decoder, at its batch size
                layer.lazy_initialization(part.keys.expand(rows, -1, -1, -1), part.values.expand(rows, -1, -1, -1))
            layer.keys[row, :, offset:offset + n] = part.keys[0]
            layer.values[row, :, offset:offset + n] = part.values[0]
        return self.model.lm_head(hidden[:, -1]).argmax(-1, keepdim=True)

    def _decoder(self, batch: int, length: int) -> _Decoder:
        """The decoder of (batch, length rounded up to a cache block), reused across queries: its cache is reset
        in place, so a captured graph stays valid."""
        block = CACHE_BLOCK_COMPILED if self.compiled_decode else CACHE_BLOCK
        key = (batch, -(-length // block) * block)
        dec = self._decoders.get(key)
        if dec is not None:
            self._decoders.move_to_end(key)
            dec.cache.reset()
            return dec
        while len(self._decoders) >= DECODERS_KEPT:       # free the oldest before allocating
            self._decoders.popitem(last=False)
        dec = self._decoders[key] = _Decoder(StaticCache(config=self.model.config.text_config,
                                                         max_cache_len=key[1]))
        return dec

    def _start(self, dec: _Decoder, first: torch.Tensor, position: torch.Tensor, mask: torch.Tensor,
               dtype: torch.dtype) -> None:
        """Load the step buffers after a prefill; on first use (the cache now allocated) build the step runner."""
        if dec.state is None:
            dec.state = DecodeState.allocate(first.shape[0], dec.cache.layers[0].max_cache_len, dec.cache, dtype,
                                             self.device)
            dec.state.load(first, position, mask)
            dec.run, dec.mode, dec.fallback = make_runner(self.model, dec.state, self.decode_mode)
        else:
            dec.state.load(first, position, mask)

    def _generate_for(self, window: CodecWindow, inputs: ModelInputs) -> Generation:
        # Subclasses (test doubles, the engine backends) override generate in either published form; call theirs
        # in the form it declares.
        if "window" in inspect.signature(self.generate).parameters:
            return self.generate(window, inputs)
        return self.generate(inputs)

    # -- the interface the node, evaluation and serving use -----------------------------------------------------
    def answer(self, window: CodecWindow, query: Query) -> Answer:
        """Run ``query`` on ``window``; the parsed answer with latency, window span and stage timings."""
        t0 = time.perf_counter()
        inputs = self.prepare(window, query)
        gen = self._generate_for(window, inputs)
        return self._answer_of(window, query, gen, time.perf_counter() - t0)

    def answer_batch(self, items: list[tuple[CodecWindow, Query]]) -> list[Answer]:
        """``answer`` for B (window, query) pairs in one batch (``generate_batch``), in order; each answer's
        ``latency_s`` is the batch's. Backends that override ``generate`` only answer one by one."""
        if type(self).generate is not VlmRuntime.generate and type(self).generate_batch is VlmRuntime.generate_batch:
            return [self.answer(window, query) for window, query in items]
        t0 = time.perf_counter()
        batch = [self.prepare(window, query) for window, query in items]
        gens = self.generate_batch(batch)
        latency = time.perf_counter() - t0
        return [self._answer_of(window, query, gen, latency) for (window, query), gen in zip(items, gens)]

    def _answer_of(self, window: CodecWindow, query: Query, gen: Generation, latency: float) -> Answer:
        times = window.frame_times
        parsed = parse_answer(query.task, gen.text, times, window.source_size)
        stats = self.vision_cache.stats
        span = (min(times.values()), max(times.values())) if times else (0.0, 0.0)
        return replace(parsed, latency_s=latency, window_span=span,
                       window_frames=(window.start_frame, window.end_frame),
                       extra={"prompt_tokens": gen.prompt_tokens, "new_tokens": len(gen.token_ids),
                              "vit_s": gen.vit_s, "prefill_s": gen.prefill_s, "decode_s": gen.decode_s,
                              "batch_size": gen.batch_size, "decode_mode": gen.decode_mode,
                              "decode_fallback": gen.decode_fallback,
                              "vision_cache_hits": stats.hits, "vision_cache_misses": stats.misses})

    def close(self) -> None:
        """Drop the model and cached tensors; frees GPU memory."""
        self.vision_cache.clear()
        self._decoders.clear()
        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def load_runtime(model: str = TINY, device: str = "cpu", dtype: torch.dtype | None = None,
                 max_new_tokens: int = 128, backend: str = "torch", attn_implementation: str | None = None,
                 compile_decode: bool = False, vision_cache_windows: int = 16, decode: str | None = None,
                 quantize: str | None = None) -> VlmRuntime:
    """A ready runtime. ``attn_implementation`` defaults to eager on CPU (the reference) and SDPA on CUDA;
    ``decode``: ``eager`` / ``graph`` / ``compile`` (see the module docstring; int8 on CUDA defaults to ``compile``);
    ``quantize``: ``int8`` or ``int4`` weight-only (``ov2_ros.model.quantize``), or None for the checkpoint's dtype."""
    if backend != "torch":
        raise ModelError(f"ov2_ros.model.load_runtime runs the torch backend only, not {backend!r}; exported "
                         "onnxruntime/tensorrt parts load with ov2_ros.engines.runtime.select_backend")
    attn = attn_implementation or ("sdpa" if torch.device(device).type == "cuda" else "eager")
    net = load_model(model, device=device, dtype=dtype, attn_implementation=attn)
    if quantize:
        from ov2_ros.model.quantize import quantize_weights
        quantize_weights(net, quantize)
        if quantize == "int8" and torch.device(device).type == "cuda":
            decode = decode or "compile"       # only compiled kernels fuse int8 dequantisation into the matmul
    return VlmRuntime(net, load_tokenizer(model), max_new_tokens, vision_cache_windows, compile_decode, decode)
