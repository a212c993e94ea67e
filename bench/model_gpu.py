"""LLaVA-OV-2 model runtime benchmark: ov2_ros's runtime vs the released HF code, same weights, same run.

    python bench/model_gpu.py --release-code /path/to/transformers_impl          # CUDA, 8B-size, random weights
    python bench/model_gpu.py --device cpu --tiny --release-code ...             # smoke mode (CPU, tiny model)

``--release-code`` is a directory holding the released ``llavaonevision2/`` package (from
github.com/EvolvingLMMs-Lab/LLaVA-OneVision-2, ``transformers_impl/``); it is loaded from that path and never
committed here. Without it the baseline columns are empty.

Measured (medians over ``--repeats``), each for ours and the baseline:
- ViT over one window (32 canvases of 280x504 = 23,040 patches by default);
- prefill of the whole prompt (~5,900 tokens), decode ms/token, whole query (ViT + prefill + ``--new-tokens``);
- window slide: the next window (one new group) with the per-group vision cache, ViT and whole query;
- peak CUDA memory per section.
Ours: per-window batched ViT, SDPA, transformers ``StaticCache`` greedy decode, optionally ``torch.compile``d
decode (``--compile``, CUDA graphs). Baseline: the release's vision tower (``get_video_features``) and its
``language_model`` driven the way ``generate`` drives it (``DynamicCache``, one eager step per token); the
release's top-level ``forward`` does not run under transformers 5.24 (its output class rejects ``cache``), so its
components are called directly. Weights are shared (no second copy in memory).

GPU numbers are pending a GPU session: the development machines have no CUDA device. Only the ``--device cpu
--tiny`` smoke mode has been run there; its JSON says so in ``mode``.
"""
from __future__ import annotations

import argparse
import importlib
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


class RemappedTokenizer:
    """The tiny byte-level tokenizer with its special tokens moved to the 8B config's ids (no Qwen tokenizer
    offline): prompts keep the released structure, and the vision placeholders carry ``video_token_id``."""

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
        embeds = embeds.masked_scatter((ids == self.ref.config.video_token_id)[..., None], vision.to(embeds.dtype))
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny-random sizes (CPU smoke mode)")
    ap.add_argument("--release-code", type=Path, help="dir containing the released llavaonevision2/ package")
    ap.add_argument("--groups", type=int, default=8, help="groups per window (4 canvases each)")
    ap.add_argument("--window", choices=("uniform", "codec"), default="uniform",
                    help="uniform whole-frame canvases (~5,900-token prompt) or real codec-tokenizer windows")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--attn", default=None, help="attention for both sides (default: sdpa on CUDA, eager on CPU)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the decode step (CUDA graphs)")
    ap.add_argument("--out", default="model_gpu", help="result name under bench/results/")
    ap.add_argument("--threads", type=int, default=1,
                    help="CPU torch threads (1: on a shared 2-core box, OpenMP spinning makes 2 threads 50x slower)")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here; run with --device cpu --tiny for the smoke mode")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    attn = args.attn or ("sdpa" if device.type == "cuda" else "eager")
    cfg_dir = models_dir() / ("tiny-random" if args.tiny else "llava-onevision-2-8b-instruct")
    import json
    config_dict = json.loads((cfg_dir / "config.json").read_text())
    config = LlavaOnevision2Config.from_pretrained(cfg_dir)
    tiny_cfg = LlavaOnevision2Config.from_pretrained(models_dir() / "tiny-random")
    tokenizer = load_tokenizer("tiny-random")
    if not args.tiny:
        tokenizer = RemappedTokenizer(tokenizer, config, tiny_cfg)

    torch.manual_seed(0)
    model = build_model(config, device, dtype, attn)
    runtime = VlmRuntime(model, tokenizer, args.new_tokens, compile_decode=args.compile)
    window, slid = make_windows(args.groups, 4, args.tiny, args.window == "codec")
    query = Query("ask", "Describe what happens in the video.")
    inputs, slid_inputs = runtime.prepare(window, query), runtime.prepare(slid, query)
    n_patches = int(inputs.vision.pixel_values_videos.shape[0])
    n_prompt = int(inputs.input_ids.shape[1])

    def gen(i, cache):
        return runtime.generate(i.window, i, args.new_tokens, use_vision_cache=cache, stop_at_eos=False)

    results: dict = {"mode": "cpu-smoke" if args.tiny else "8b-random", "device": str(device), "dtype": str(dtype),
                     "torch_threads": torch.get_num_threads(), "window": args.window,
                     "attn": attn, "compile_decode": args.compile, "canvases": len(window.canvases),
                     "patches": n_patches, "prompt_tokens": n_prompt, "new_tokens": args.new_tokens}
    # CPU preprocessing both sides share (prompt + full-window patchify); the cached path patchifies new groups only
    results["prepare"] = summary_ms(timed(lambda: vision_inputs(window) and runtime.prepare(window, query), device,
                                          args.repeats))

    def ours_round() -> dict[str, float]:
        out = {"vit": timed(lambda: runtime.vision_tokens(inputs, use_cache=False), device, 1, warmup=0)[0]}
        g = gen(inputs, False)
        out.update(prefill=g.prefill_s, decode_per_token=g.decode_s / max(1, len(g.token_ids) - 1),
                   query=g.vit_s + g.prefill_s + g.decode_s)
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
        ref = Baseline(release_model(args.release_code, model, config_dict, attn), device)
        with torch.inference_mode():
            ours_logits = model(**{k: v.to(device) if torch.is_tensor(v) else v
                                   for k, v in inputs.as_kwargs().items()}, logits_to_keep=1).logits
            ref_logits, _ = ref.prefill(inputs, ref.vit(inputs))
        results["max_abs_logit_diff_vs_release"] = float((ours_logits.float() - ref_logits.float()).abs().max())

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

    # alternate the two sides every round, so load drifts on a shared machine hit both alike
    samples: dict[str, list[dict[str, float]]] = {"ours": [], "release": []}
    peaks: dict[str, float | None] = {"ours": None, "release": None}
    for r in range(args.repeats + 1):                   # round 0 warms up (allocations, kernel selection)
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
    results["ours"] = ours
    results["release"] = base or None

    table = Table(f"LLaVA-OV-2 runtime on {device} ({results['mode']}, {attn}): {len(window.canvases)} canvases, "
                  f"{n_patches} patches, {n_prompt} prompt tokens, {args.new_tokens} new tokens",
                  ["step", "ours ms", "release ms", "ours / release"])
    for key, label in (("vit", "ViT, one window"), ("prefill", "prefill"), ("decode_per_token", "decode / token"),
                       ("query", "whole query"), ("slide_vit", "slide: ViT with cache"),
                       ("slide_query", "slide: whole query with cache")):
        o = ours[key]["median_ms"]
        b = base[key]["median_ms"] if base else None
        table.add(label, o, b, ratio(o, b))
    results["slide_vit_fraction_of_full"] = ratio(ours["slide_vit"]["median_ms"], ours["vit"]["median_ms"])
    print(table)
    print(f"CPU preprocessing (prompt + patchify of the whole window): {results['prepare']['median_ms']:.1f} ms")
    print(f"slide ViT / full-window ViT: {results['slide_vit_fraction_of_full']:.3f} (goal <= 0.125)")
    if device.type == "cuda":
        print(f"peak GiB: ours {ours['peak_gib']:.2f}, release {base.get('peak_gib') if base else None}")
    if "max_abs_logit_diff_vs_release" in results:
        print(f"max |logit diff| vs release on the same prompt: {results['max_abs_logit_diff_vs_release']:.3g}")
    path = write_results(args.out, results)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
