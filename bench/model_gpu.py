"""LLaVA-OV-2 runtime benchmark: ov2_ros's runtime vs the released HF code, same weights, same process.

    python bench/model_gpu.py --release-code .gpu/release                  # CUDA, 8B-size config, random weights
    python bench/model_gpu.py --device cpu --tiny --release-code ...       # smoke mode (CPU, tiny model)
    python bench/model_gpu.py --sections quant                             # int8/int4 weight-only only

``--release-code`` is a directory holding the released ``llavaonevision2/`` package (``transformers_impl/`` of
github.com/EvolvingLMMs-Lab/LLaVA-OneVision-2). It is never committed here: ``bench/gpu_prepare.sh`` copies it
from a fetched mirror into ``.gpu/release`` (git-ignored), which the device run carries. Without it the baseline
columns are empty.

Sections (``--sections``, comma-separated):
- ``base``: medians over ``--repeats`` rounds, ours and the release alternating round by round:
  ViT over one window (32 canvases of 280x504 = 23,040 patches); prefill of the whole prompt (~5,900 tokens);
  decode ms/token; whole query (ViT + prefill + ``--new-tokens``); window slide (one new group) with the per-group
  vision cache; peak CUDA memory. Ours: batched-window SDPA ViT, SDPA prefill, static-cache greedy decode in the
  runtime's decode mode (``graph``: the step replayed from a CUDA graph; also timed ``eager``). Baseline: the
  release's vision tower and its ``language_model`` stepped as ``generate`` steps it (``DynamicCache``, one eager
  step per token); its top-level ``forward`` does not run under transformers 5.24 (its output class rejects
  ``cache``), so its components are called directly. Weights are shared (no second copy).
  The decode floor is the language model's weight bytes over the memory bandwidth: the issue's figure (all LM
  weights, 16.4 GB for the 8B) over the datasheet bandwidth, and the bytes one step really reads (LM weights less
  the embedding table, plus the KV cache at that length) over the copy bandwidth measured in this run.
- ``quant``: int8 and int4 weight-only copies (``ov2_ros.model.quantize``, torchao) of the same weights: weight
  bytes vs bf16, ms/token (decode mode ``graph``; int8 also ``compile`` with ``--int8-modes graph,compile``), greedy-token
  agreement with bf16 over several prompts and the prefill logit error.

The JSON (``--out``, under ``--results-dir``, default ``bench/results``) records the device name, torch and CUDA
versions and the dtype. CPU smoke mode (``--device cpu --tiny``) runs every section at tiny sizes; int4 needs
CUDA and is reported as skipped there.
"""
from __future__ import annotations

import argparse
import copy
import importlib
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Table, moving_scene_frames, ratio, summary_ms, write_results  # noqa: E402
from ov2_ros.codec.types import CodecWindow  # noqa: E402
from ov2_ros.model.answer import Query  # noqa: E402
from ov2_ros.model.configuration import LlavaOnevision2Config  # noqa: E402
from ov2_ros.model.loading import load_tokenizer, models_dir  # noqa: E402
from ov2_ros.model.modeling import LlavaOnevision2ForConditionalGeneration  # noqa: E402
from ov2_ros.model.processor import vision_inputs, window_from_frames  # noqa: E402
from ov2_ros.model.runtime import VlmRuntime  # noqa: E402

# datasheet memory bandwidth (bytes/s) by device-name fragment: the floors use these
BANDWIDTH = {"H200": 4.8e12, "H100": 3.35e12, "A100": 2.04e12, "4090": 1.008e12, "Orin": 204.8e9}


class RemappedTokenizer:
    """The tiny byte-level tokenizer with its special tokens moved to the 8B config's ids (no Qwen tokenizer
    offline): prompts keep the released structure, and the vision placeholders carry the 8B config's ids."""

    def __init__(self, tokenizer, config: LlavaOnevision2Config, tiny: LlavaOnevision2Config):
        self.tok = tokenizer
        pairs = [(tiny.video_token_id, config.video_token_id), (tiny.image_token_id, config.image_token_id),
                 (tiny.vision_start_token_id, config.vision_start_token_id),
                 (tiny.vision_end_token_id, config.vision_end_token_id), (tiny.eos_token_id, config.eos_token_id)]
        self.forward = dict(pairs)
        self.backward = {b: a for a, b in pairs}
        self.eos_token_id = config.eos_token_id

    def apply_chat_template(self, *args, **kwargs):
        return self.tok.apply_chat_template(*args, **kwargs)

    def __call__(self, text, **kwargs):
        out = self.tok(text, **kwargs)
        return {"input_ids": [self.forward.get(i, i) for i in out["input_ids"]]}

    def decode(self, ids, **kwargs):
        return self.tok.decode([self.backward.get(i, i) for i in ids if self.backward.get(i, i) < len(self.tok)],
                               **kwargs)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - t0)
    return out


def peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def device_info(device: torch.device) -> dict:
    info = {"device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, memory_gib=props.total_memory / 2**30, capability=[props.major, props.minor],
                    multiprocessors=props.multi_processor_count)
    return info


def copy_bandwidth(device: torch.device, gib: float = 2.0) -> float | None:
    """Device-to-device copy bandwidth (bytes read + written per second), median of 10 after 3 warm-ups."""
    if device.type != "cuda":
        return None
    src = torch.randn(int(gib * 2**30) // 4, device=device)
    dst = torch.empty_like(src)
    samples = []
    for i in range(13):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        stop.record()
        stop.synchronize()
        if i >= 3:
            samples.append(start.elapsed_time(stop) / 1e3)
    samples.sort()
    del src, dst
    torch.cuda.empty_cache()
    return 2 * gib * 2**30 / samples[len(samples) // 2]


def make_windows(groups: int, canvases_per_group: int, tiny: bool,
                 codec: bool = False) -> tuple[CodecWindow, CodecWindow]:
    """Two windows of ``groups`` groups, the second slid by one group, from the moving-scene clip (960x540, or
    160x120 in tiny mode). ``codec``: the streaming codec tokenizer's windows over the H.264 clip (canvases of
    selected blocks, many same-frame runs); otherwise uniform whole-frame canvases (one run per canvas)."""
    w, h = (160, 120) if tiny else (960, 540)
    if codec:
        from ov2_ros.codec.synth import encode_frames
        from ov2_ros.codec.tokenizer import CodecTokenizer
        from ov2_ros.codec.types import TokenizerConfig

        tok = CodecTokenizer(TokenizerConfig(canvases_per_group=canvases_per_group,
                                             window_canvases=groups * canvases_per_group), fps=30.0)
        windows = []
        for au in encode_frames(moving_scene_frames(w, h, num_frames=280)):
            if tok.push(au) and len(tok.window().groups) == groups:
                windows.append(tok.window())
        if len(windows) < 2:
            raise SystemExit(f"the clip closed too few groups for two {groups}-group windows")
        return windows[-2], windows[-1]
    n = (groups + 1) * canvases_per_group
    frames = list(moving_scene_frames(w, h, num_frames=n))
    full = window_from_frames(frames, list(range(n)), fps=30.0, canvases_per_group=canvases_per_group)
    first = CodecWindow(full.groups[:groups], full.canvas_size, full.source_size, full.fps, full.patch_size)
    slid = CodecWindow(full.groups[1:], full.canvas_size, full.source_size, full.fps, full.patch_size)
    return first, slid


def build_model(config: LlavaOnevision2Config, device: torch.device, dtype: torch.dtype, attn: str):
    config._attn_implementation = attn
    config.vision_config._attn_implementation = attn
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)       # materialise 8B weights directly in bf16 (no fp32 copy on the GPU)
    try:
        with torch.device(device):
            model = LlavaOnevision2ForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def release_model(path: Path, ours, config_dict: dict, attn: str):
    """The released classes with our weights and buffers assigned (shared storage)."""
    sys.path.insert(0, str(path))
    rel = importlib.import_module("llavaonevision2")
    cfg = rel.LlavaOnevision2Config(**{k: v for k, v in config_dict.items() if k not in ("architectures", "model_type")})
    cfg._attn_implementation = attn
    cfg.vision_config._attn_implementation = attn
    with torch.device("meta"):
        ref = rel.LlavaOnevision2ForConditionalGeneration(cfg)
    missing, _ = ref.load_state_dict(ours.state_dict(), strict=False, assign=True)
    if missing:
        raise SystemExit(f"release model has keys ours lacks: {missing[:5]}")
    # non-persistent buffers (RoPE inverse frequencies) are not in a state dict: share ours by name
    for name, buf in ours.named_buffers():
        owner, _, attr = name.rpartition(".")
        if hasattr(ref.get_submodule(owner), attr):
            setattr(ref.get_submodule(owner), attr, buf)
    return ref.eval()


def placeholder_id(config, ids: torch.Tensor) -> int:
    """The vision placeholder the prompt uses: ``<|video_pad|>`` where present, else ``<|image_pad|>`` (the
    release's codec prompts alias video into the image path), as ``LlavaOnevision2Model.embed`` decides."""
    return config.video_token_id if bool((ids == config.video_token_id).any()) else config.image_token_id


class Baseline:
    """The release's vision tower + its language model stepped like ``generate`` (DynamicCache)."""

    def __init__(self, ref, device: torch.device):
        self.ref, self.device = ref, device

    @torch.inference_mode()
    def vit(self, inputs):
        v = inputs.vision
        return torch.cat(self.ref.model.get_video_features(v.pixel_values_videos.to(self.device),
                                                           v.video_grid_thw.to(self.device),
                                                           patch_positions=v.patch_positions.to(self.device)))

    @torch.inference_mode()
    def prefill(self, inputs, vision):
        from transformers.cache_utils import DynamicCache

        model = self.ref.model
        ids = inputs.input_ids.to(self.device)
        embeds = model.get_input_embeddings()(ids)
        slots = (ids == placeholder_id(self.ref.config, ids))[..., None]
        embeds = embeds.masked_scatter(slots, vision.to(embeds.dtype))
        cache = DynamicCache(config=self.ref.config.text_config)
        hidden = model.language_model(inputs_embeds=embeds, cache=cache, use_cache=True).last_hidden_state
        return self.ref.lm_head(hidden[:, -1:]), cache

    @torch.inference_mode()
    def decode(self, logits, cache, steps: int):
        lm = self.ref.model.language_model
        for _ in range(steps):
            token = logits[:, -1].argmax(-1, keepdim=True)
            hidden = lm(inputs_embeds=lm.embed_tokens(token), cache=cache, use_cache=True).last_hidden_state
            logits = self.ref.lm_head(hidden)
        return logits

    def query(self, inputs, steps: int):
        logits, cache = self.prefill(inputs, self.vit(inputs))
        return self.decode(logits, cache, steps - 1)


def decode_bytes(model, prompt_tokens: int) -> dict[str, int]:
    """Bytes of weights in the language model (all, as the issue counts them) and read by one decode step (all
    but the embedding table, of which one row is read, plus the KV cache at ``prompt_tokens``)."""
    from ov2_ros.model.quantize import weight_bytes

    lm = model.model.language_model
    text = model.config.text_config
    everything = weight_bytes(lm) + weight_bytes(model.lm_head)
    kv = 2 * text.num_hidden_layers * text.num_key_value_heads * text.head_dim * prompt_tokens * \
        torch.empty(0, dtype=lm.norm.weight.dtype).element_size()
    return {"lm_weights": everything, "step_reads": everything - weight_bytes(lm.embed_tokens) + kv, "kv": kv}


def section_base(args, device, model, runtime, inputs, slid_inputs, config_dict, attn, results) -> None:
    def gen(i, cache, rt=runtime, steps=args.new_tokens):
        return rt.generate(i, steps, use_vision_cache=cache, stop_at_eos=False)

    eager_rt = VlmRuntime(model, runtime.tokenizer, args.new_tokens, decode="eager")
    same: list[bool] = []                      # our decode mode's greedy tokens == the eager step's

    def ours_round() -> dict[str, float]:
        out = {"vit": timed(lambda: runtime.vision_tokens(inputs, use_cache=False), device, 1, warmup=0)[0]}
        g = gen(inputs, False)
        out.update(prefill=g.prefill_s, decode_per_token=g.decode_s / max(1, len(g.token_ids) - 1),
                   query=g.vit_s + g.prefill_s + g.decode_s)
        e = gen(inputs, False, eager_rt, args.eager_tokens)
        out["decode_per_token_eager"] = e.decode_s / max(1, len(e.token_ids) - 1)
        same.append(e.token_ids == g.token_ids[:len(e.token_ids)])
        runtime.vision_cache.clear()
        runtime.vision_tokens(inputs)                    # the previous window's groups are cached
        out["slide_vit"] = timed(lambda: runtime.vision_tokens(slid_inputs), device, 1, warmup=0)[0]
        runtime.vision_cache.clear()
        runtime.vision_tokens(inputs)
        g = gen(slid_inputs, True)
        out["slide_query"] = g.vit_s + g.prefill_s + g.decode_s
        return out

    ref = None
    if args.release_code:
        results["release_code"] = str(args.release_code)
        try:
            ref = Baseline(release_model(args.release_code, model, config_dict, attn), device)
            with torch.inference_mode():
                ours_logits = model(**{k: v.to(device) if torch.is_tensor(v) else v
                                       for k, v in inputs.as_kwargs().items()}, logits_to_keep=1).logits
                ref_logits, _ = ref.prefill(inputs, ref.vit(inputs))
            results["max_abs_logit_diff_vs_release"] = float((ours_logits.float() - ref_logits.float()).abs().max())
        except Exception as exc:  # the release's code under another torch/transformers: measure ours anyway
            ref = None
            results["release_error"] = f"{type(exc).__name__}: {exc}"[:500]
            print(f"release baseline unavailable: {results['release_error']}")

    def base_round() -> dict[str, float]:
        out = {"vit": timed(lambda: ref.vit(inputs), device, 1, warmup=0)[0]}
        vision = ref.vit(inputs)
        out["prefill"] = timed(lambda: ref.prefill(inputs, vision), device, 1, warmup=0)[0]
        logits, cache = ref.prefill(inputs, vision)
        out["decode_per_token"] = timed(lambda: ref.decode(logits, cache, args.new_tokens - 1), device, 1,
                                        warmup=0)[0] / max(1, args.new_tokens - 1)
        out["query"] = timed(lambda: ref.query(inputs, args.new_tokens), device, 1, warmup=0)[0]
        # the release has no vision cache: a slid window costs a full ViT and a full query
        out["slide_vit"], out["slide_query"] = out["vit"], out["query"]
        return out

    # alternate the two sides every round, so load drift on a shared machine hits both alike
    samples: dict[str, list[dict[str, float]]] = {"ours": [], "release": []}
    peaks: dict[str, float | None] = {"ours": None, "release": None}
    for r in range(args.repeats + 1):                   # round 0 warms up (allocations, kernel selection, capture)
        for side, fn in (("ours", ours_round), ("release", base_round if ref else None)):
            if fn is None:
                continue
            peak_reset(device)
            sample = fn()
            peaks[side] = max(filter(None, (peaks[side], peak_gib(device))), default=None)
            if r:
                samples[side].append(sample)

    def summarise(side: str) -> dict:
        if not samples[side]:
            return {}
        out = {k: summary_ms([s[k] for s in samples[side]]) for k in samples[side][0]}
        out["peak_gib"] = peaks[side]
        return out

    ours, base = summarise("ours"), summarise("release")
    g = gen(inputs, False)
    results.update(ours=ours, release=base or None, decode_mode=g.decode_mode, decode_fallback=g.decode_fallback,
                   tokens_equal_eager_step=all(same))
    sizes = decode_bytes(model, results["prompt_tokens"])
    spec = next((bw for key, bw in BANDWIDTH.items() if key in results.get("name", "")), None)
    measured = results.get("copy_bandwidth")
    floor = {"lm_weight_bytes": sizes["lm_weights"], "step_read_bytes": sizes["step_reads"],
             "kv_bytes": sizes["kv"], "datasheet_bandwidth": spec,
             "issue_floor_ms": sizes["lm_weights"] / spec * 1e3 if spec else None,
             "step_floor_ms_at_copy_bw": sizes["step_reads"] / measured * 1e3 if measured else None}
    per_token = ours["decode_per_token"]["median_ms"]
    floor["decode_over_issue_floor"] = ratio(per_token, floor["issue_floor_ms"]) if spec else None
    floor["decode_over_step_floor"] = ratio(per_token, floor["step_floor_ms_at_copy_bw"]) if measured else None
    results["floor"] = floor
    results["slide_vit_fraction_of_full"] = ratio(ours["slide_vit"]["median_ms"], ours["vit"]["median_ms"])

    table = Table(f"LLaVA-OV-2 runtime on {results.get('name', device)} ({results['mode']}, {attn}): "
                  f"{results['canvases']} canvases, {results['patches']} patches, {results['prompt_tokens']} prompt "
                  f"tokens, {args.new_tokens} new tokens", ["step", "ours ms", "release ms", "ours / release"])
    for key, label in (("vit", "ViT, one window"), ("prefill", "prefill"),
                       ("decode_per_token", f"decode / token ({g.decode_mode})"),
                       ("decode_per_token_eager", "decode / token (eager step)"),
                       ("query", "whole query"), ("slide_vit", "slide: ViT with cache"),
                       ("slide_query", "slide: whole query with cache")):
        o = ours[key]["median_ms"]
        b = base[key]["median_ms"] if base and key in base else None
        table.add(label, o, b, ratio(o, b))
    print(table)
    if g.decode_fallback:
        print(f"decode fell back: {g.decode_fallback}")
    print(f"greedy tokens of the {g.decode_mode} step == the eager step's: {all(same)}")
    print(f"slide ViT / full-window ViT: {results['slide_vit_fraction_of_full']:.3f} (goal <= 0.125)")
    if spec:
        print(f"decode floor {floor['issue_floor_ms']:.2f} ms/token (LM {sizes['lm_weights'] / 1e9:.2f} GB at "
              f"{spec / 1e12:.2f} TB/s): ours {floor['decode_over_issue_floor']:.2f}x (goal <= 1.25x)")
    if measured:
        print(f"bytes one step reads {sizes['step_reads'] / 1e9:.2f} GB at the measured copy bandwidth "
              f"{measured / 1e12:.2f} TB/s: {floor['step_floor_ms_at_copy_bw']:.2f} ms; ours "
              f"{floor['decode_over_step_floor']:.2f}x")
    if device.type == "cuda":
        print(f"peak GiB: ours {ours['peak_gib']:.2f}, release {base.get('peak_gib') if base else None}")
    if "max_abs_logit_diff_vs_release" in results:
        print(f"max |logit diff| vs release on the same prompt: {results['max_abs_logit_diff_vs_release']:.3g}")


def agreement(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, int]:
    """(tokens before the first disagreement, positions that agree)."""
    prefix = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return prefix, sum(x == y for x, y in zip(a, b))


def section_quant(args, device, model, runtime, prompts, results) -> None:
    """int8 / int4 copies of ``model``: bytes, ms/token, greedy agreement with ``model`` and prefill logit error."""
    from ov2_ros.model.quantize import QuantizationError, quantize_weights, weight_bytes

    steps = args.agree_tokens
    reference = [runtime.generate(p, steps, use_vision_cache=False, stop_at_eos=False) for p in prompts]
    with torch.inference_mode():
        ref_logits = [model(**{k: v.to(device) for k, v in p.as_kwargs().items()}, logits_to_keep=1).logits[0, -1]
                      for p in prompts]
    out: dict = {"bf16_weight_bytes": weight_bytes(model), "agree_tokens": steps, "prompts": len(prompts)}
    table = Table(f"weight-only quantization on {results.get('name', device)}",
                  ["precision", "decode", "weights GB", "vs unquantized", "ms/token", "greedy prefix", "agree",
                   "logit err"])
    base_ms = results.get("ours", {}).get("decode_per_token", {}).get("median_ms")
    table.add(str(next(model.parameters()).dtype).split(".")[-1], runtime.decode_mode,
              out["bf16_weight_bytes"] / 1e9, 1.0, base_ms, "-", "-", "-")
    modes = {"int8": args.int8_modes.split(","), "int4": ["graph"]}
    for precision in args.precisions.split(","):
        entry: dict = {}
        out[precision] = entry
        qmodel = copy.deepcopy(model)
        try:
            report = quantize_weights(qmodel, precision)
        except Exception as exc:  # QuantizationError, or a torchao that does not fit this torch
            entry["skipped"] = str(exc) if isinstance(exc, QuantizationError) else f"{type(exc).__name__}: {exc}"
            print(f"{precision}: skipped: {entry['skipped']}")
            del qmodel
            continue
        entry.update(weight_bytes=report.bytes_after, ratio_vs_bf16=report.ratio, modules=report.modules)
        peak_reset(device)
        for mode in modes[precision]:
            if device.type != "cuda" and mode != "graph":
                continue
            rt = VlmRuntime(qmodel, runtime.tokenizer, args.new_tokens, decode=mode if device.type == "cuda"
                            else "eager")
            gens = [rt.generate(p, steps, use_vision_cache=False, stop_at_eos=False) for p in prompts]
            timing = [rt.generate(prompts[0], args.new_tokens, use_vision_cache=False, stop_at_eos=False)
                      for _ in range(args.repeats)]
            per_token = summary_ms([g.decode_s / max(1, len(g.token_ids) - 1) for g in timing])
            pairs = [agreement(r.token_ids, g.token_ids) for r, g in zip(reference, gens)]
            entry[mode] = {"decode_per_token": per_token, "decode_mode": timing[0].decode_mode,
                           "decode_fallback": timing[0].decode_fallback,
                           "greedy_prefix_mean": sum(p for p, _ in pairs) / len(pairs),
                           "greedy_agree_fraction": sum(a for _, a in pairs) / (steps * len(pairs))}
            del rt
        with torch.inference_mode():
            errs = []
            for p, ref in zip(prompts, ref_logits):
                got = qmodel(**{k: v.to(device) for k, v in p.as_kwargs().items()}, logits_to_keep=1).logits[0, -1]
                errs.append(float((got.float() - ref.float()).abs().max() / ref.float().abs().max()))
                entry.setdefault("prefill_top1_agree", 0)
                entry["prefill_top1_agree"] += int(got.argmax() == ref.argmax())
        entry["prefill_logit_rel_err_max"] = max(errs)
        entry["peak_gib"] = peak_gib(device)
        for mode in modes[precision]:
            if mode in entry:
                m = entry[mode]
                table.add(precision, m["decode_mode"], entry["weight_bytes"] / 1e9, entry["ratio_vs_bf16"],
                          m["decode_per_token"]["median_ms"], m["greedy_prefix_mean"], m["greedy_agree_fraction"],
                          entry["prefill_logit_rel_err_max"])
        del qmodel
        if device.type == "cuda":
            torch.cuda.empty_cache()
    results["quant"] = out
    print(table)
    print("goals: int8 weights <= 0.55 of bf16, int4 <= 0.35; greedy prefix = tokens before the first "
          "disagreement with bf16 (random weights: near-ties split early)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny-random sizes (CPU smoke mode)")
    ap.add_argument("--release-code", type=Path, help="dir containing the released llavaonevision2/ package")
    ap.add_argument("--sections", default="base,quant", help="base, quant (comma-separated)")
    ap.add_argument("--groups", type=int, default=8, help="groups per window (4 canvases each)")
    ap.add_argument("--window", choices=("uniform", "codec"), default="uniform",
                    help="uniform whole-frame canvases (~5,900-token prompt) or real codec-tokenizer windows")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--agree-tokens", type=int, default=32, help="greedy tokens compared per prompt (quant)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--attn", default=None, help="attention for both sides (default: sdpa on CUDA, eager on CPU)")
    ap.add_argument("--decode", default=None, help="our decode mode: graph (CUDA default), compile, eager")
    ap.add_argument("--precisions", default="int8,int4", help="quant section: which weight-only precisions")
    ap.add_argument("--int8-modes", default="graph",
                    help="decode modes timed for int8: graph (eager dequantisation per call, captured), compile "
                         "(inductor fuses it into the matmul; minutes of compile)")
    ap.add_argument("--eager-tokens", type=int, default=32, help="new tokens of the eager-step reference timing")
    ap.add_argument("--out", default=None, help="result name (default model_gpu, or model_gpu_cpu_smoke)")
    ap.add_argument("--results-dir", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1,
                    help="CPU torch threads (1: on a shared 2-core box, OpenMP spinning makes 2 threads 50x slower)")
    args = ap.parse_args(argv)
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here; run with --device cpu --tiny for the smoke mode")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    attn = args.attn or ("sdpa" if device.type == "cuda" else "eager")
    cfg_dir = models_dir() / ("tiny-random" if args.tiny else "llava-onevision-2-8b-instruct")
    config_dict = json.loads((cfg_dir / "config.json").read_text())
    config = LlavaOnevision2Config.from_pretrained(cfg_dir)
    tiny_cfg = LlavaOnevision2Config.from_pretrained(models_dir() / "tiny-random")
    tokenizer = load_tokenizer("tiny-random")
    if not args.tiny:
        tokenizer = RemappedTokenizer(tokenizer, config, tiny_cfg)

    results: dict = {"mode": "cpu-smoke" if args.tiny else "8b-random", **device_info(device), "dtype": str(dtype),
                     "torch_threads": torch.get_num_threads(), "window": args.window, "attn": attn,
                     "new_tokens": args.new_tokens, "sections": sorted(sections)}
    results["copy_bandwidth"] = copy_bandwidth(device)
    torch.manual_seed(0)
    model = build_model(config, device, dtype, attn)
    runtime = VlmRuntime(model, tokenizer, args.new_tokens, decode=args.decode)
    window, slid = make_windows(args.groups, 4, args.tiny, args.window == "codec")
    query = Query("ask", "Describe what happens in the video.")
    inputs, slid_inputs = runtime.prepare(window, query), runtime.prepare(slid, query)
    results.update(canvases=len(window.canvases), patches=int(inputs.vision.pixel_values_videos.shape[0]),
                   prompt_tokens=int(inputs.input_ids.shape[1]))
    # CPU preprocessing both sides share (prompt + full-window patchify); the cached path patchifies new groups only
    results["prepare"] = summary_ms(timed(lambda: vision_inputs(window) and runtime.prepare(window, query), device,
                                          args.repeats))
    print(f"CPU preprocessing (prompt + patchify of the whole window): {results['prepare']['median_ms']:.1f} ms")
    if "base" in sections:
        section_base(args, device, model, runtime, inputs, slid_inputs, config_dict, attn, results)
    if "quant" in sections:
        prompts = [inputs, slid_inputs, runtime.prepare(window, Query("track", "the moving object")),
                   runtime.prepare(slid, Query("point", "the largest object"))]
        section_quant(args, device, model, runtime, prompts, results)
    name = args.out or ("model_gpu_cpu_smoke" if args.tiny else "model_gpu")
    path = write_results(name, results, args.results_dir)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
