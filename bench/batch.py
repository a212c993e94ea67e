"""Batched generation: B streams answered together (``VlmRuntime.answer_batch``) vs one by one (``answer``).

    python bench/batch.py                                  # CPU, tiny-random, 4 streams (bench/results/batch_cpu.json)
    python bench/batch.py --device cuda --size 8b --out batch_gpu      # the 8B-size config, random weights

Each of ``--streams`` streams is its own moving-scene clip (another seed), cut into uniform windows of
``--groups`` groups that slide by one group per step, as the node's window does. Per slide, every stream asks
its query on its newest window; the sequential side answers them one by one, the batched side in one
``answer_batch`` call. Both sides are ``VlmRuntime``s over the same weights, each with its own per-group vision
cache (so each slide encodes only the new group of every stream), and they alternate slide by slide so load drift
on a shared machine hits both alike. The first slide (every group new) warms up and is not timed. Answers must be
equal on both sides (``answers_equal``). Goal (issue 12): windows/s at B = 4 >= 1.6x sequential on CPU tiny,
>= 3x on a GPU. Both sides use SDPA attention by default (``--attn eager`` for the CPU reference kernel, whose
quadratic prefill then dominates both sides). Prefill runs per prompt on both sides (it is compute-bound);
batching pays in the decode steps, so the ratio grows with ``--new-tokens``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Table, load_average, moving_scene_frames, ratio, summary_ms, write_results  # noqa: E402
from ov2_ros.codec.types import CodecWindow  # noqa: E402
from ov2_ros.model.answer import Query  # noqa: E402
from ov2_ros.model.processor import window_from_frames  # noqa: E402
from ov2_ros.model.runtime import VlmRuntime  # noqa: E402


def stream_windows(seed: int, groups: int, slides: int, size: tuple[int, int]) -> list[CodecWindow]:
    """``slides`` windows of ``groups`` 4-canvas groups of one stream, each slid by one group."""
    n = (groups + slides - 1) * 4
    frames = list(moving_scene_frames(*size, num_frames=n, seed=seed))
    full = window_from_frames(frames, list(range(n)), fps=30.0)
    return [CodecWindow(full.groups[k:k + groups], full.canvas_size, full.source_size, full.fps, full.patch_size)
            for k in range(slides)]


def build(size: str, device: torch.device, attn: str | None):
    """(model, tokenizer) at the tiny-random or the 8B-size config, random weights."""
    from bench.model_gpu import RemappedTokenizer, build_model
    from ov2_ros.model.configuration import LlavaOnevision2Config
    from ov2_ros.model.loading import load_model, load_tokenizer, models_dir

    tokenizer = load_tokenizer("tiny-random")
    if size == "tiny":
        return load_model("tiny-random", device=device, attn_implementation=attn), tokenizer
    config = LlavaOnevision2Config.from_pretrained(models_dir() / "llava-onevision-2-8b-instruct")
    tiny = LlavaOnevision2Config.from_pretrained(models_dir() / "tiny-random")
    torch.manual_seed(0)
    model = build_model(config, device, torch.bfloat16 if device.type == "cuda" else torch.float32, attn)
    return model, RemappedTokenizer(tokenizer, config, tiny)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", choices=("tiny", "8b"), default="tiny")
    ap.add_argument("--streams", type=int, default=4, help="B: streams answered per batch")
    ap.add_argument("--groups", type=int, default=8, help="groups per window (4 canvases each)")
    ap.add_argument("--slides", type=int, default=6, help="window slides per stream (the first warms up)")
    ap.add_argument("--new-tokens", type=int, default=128, help="new tokens per answer (the runtime's default)")
    ap.add_argument("--attn", default="sdpa", help="attention of both sides (sdpa; eager is the CPU reference)")
    ap.add_argument("--decode", default=None, help="decode mode (default: graph on CUDA, eager on CPU)")
    ap.add_argument("--threads", type=int, default=1, help="CPU torch threads (1 on a shared box)")
    ap.add_argument("--out", default=None, help="result name (default batch_cpu / batch_gpu)")
    ap.add_argument("--results-dir", type=Path, default=None)
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    load_before = load_average()
    model, tokenizer = build(args.size, device, args.attn)
    frame = (160, 120) if args.size == "tiny" else (960, 540)
    streams = [stream_windows(s, args.groups, args.slides, frame) for s in range(args.streams)]
    queries = [Query("track", "the moving object"), Query("ask", "what changes?"), Query("point", "the object"),
               Query("ground", "when does the camera move")]
    # room for every stream's groups on both sides (the node runs one runtime per stream; here one serves all)
    cache = 2 * args.streams * args.groups
    sides = {side: VlmRuntime(model, tokenizer, args.new_tokens, vision_cache_windows=cache, decode=args.decode)
             for side in ("sequential", "batched")}

    def run(side: str, k: int):
        items = [(windows[k], queries[s % len(queries)]) for s, windows in enumerate(streams)]
        rt = sides[side]
        return rt.answer_batch(items) if side == "batched" else [rt.answer(w, q) for w, q in items]

    samples: dict[str, list[float]] = {side: [] for side in sides}
    stages: dict[str, list[dict]] = {side: [] for side in sides}
    equal = True
    for k in range(args.slides):
        answers = {}
        for side in sides:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            answers[side] = run(side, k)
            if k:
                samples[side].append(time.perf_counter() - t0)
                stages[side].append({s: sum(a.extra[f"{s}_s"] for a in answers[side]) if side == "sequential"
                                     else answers[side][0].extra[f"{s}_s"] for s in ("vit", "prefill", "decode")})
        equal &= [a.text for a in answers["batched"]] == [a.text for a in answers["sequential"]]
    b = args.streams
    res = {side: {"slide": summary_ms(samples[side]),
                  "windows_per_s": b / (summary_ms(samples[side])["median_ms"] / 1e3),
                  "stages_ms": {s: summary_ms([x[s] for x in stages[side]])["median_ms"]
                                for s in ("vit", "prefill", "decode")}} for side in sides}
    speedup = ratio(res["batched"]["windows_per_s"], res["sequential"]["windows_per_s"])
    first = sides["batched"].answer_batch([(w[-1], queries[0]) for w in streams])[0]
    prompt = first.extra["prompt_tokens"]
    table = Table(f"{b} streams on {device} ({args.size}): {args.groups}-group windows sliding by one group, "
                  f"~{prompt} prompt tokens, {args.new_tokens} new tokens", ["side", "ms per slide (B windows)",
                                                                            "windows/s", "ViT ms", "prefill ms",
                                                                            "decode ms", "vs sequential"])
    for side in sides:
        r = res[side]
        table.add(side, r["slide"]["median_ms"], r["windows_per_s"], r["stages_ms"]["vit"],
                  r["stages_ms"]["prefill"], r["stages_ms"]["decode"],
                  speedup if side == "batched" else 1.0)
    print(table)
    goal = 1.6 if device.type == "cpu" else 3.0
    print(f"batched / sequential windows/s: {speedup:.2f}x (goal >= {goal}x); answers equal: {equal}")
    name = args.out or ("batch_cpu" if device.type == "cpu" else "batch_gpu")
    path = write_results(name, {
        "device": str(device), "size": args.size, "dtype": str(next(model.parameters()).dtype),
        "streams": b, "groups": args.groups, "slides_timed": args.slides - 1, "new_tokens": args.new_tokens,
        "prompt_tokens": prompt, "decode_mode": first.extra["decode_mode"],
        "decode_fallback": first.extra["decode_fallback"], "torch_threads": torch.get_num_threads(),
        "sequential": res["sequential"], "batched": res["batched"], "speedup": speedup, "goal": goal,
        "answers_equal": equal, "load_before": load_before, "load_after": load_average()}, args.results_dir)
    print(f"wrote {path}")
    return 0 if equal else 1


if __name__ == "__main__":
    raise SystemExit(main())
