"""``ov2-ros tokenize VIDEO``: run a video file's packets through the streaming tokenizer and show what it made.

Outputs (DESIGN.md contract 2): ``--out DIR`` gets ``canvas_NNN.png``, ``patch_positions.npy`` ((P, 3) int32) and
``meta.json``; ``--json`` prints one JSON line; ``--plot PNG`` draws bit-cost, groups and canvases.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HELP = "tokenize a video file into codec-stream canvases (groups, patch positions, timings)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="video file (.mp4/.mkv/... with H.264 or HEVC, or raw .h264/.h265)")
    parser.add_argument("--mode", choices=("codec", "uniform", "hybrid"), default="codec",
                        help="codec: bit-cost groups + saliency-packed P-canvases; uniform: evenly spaced frames; "
                             "hybrid: some full frames + P-canvases (default: codec)")
    parser.add_argument("--canvases", type=int, default=None, metavar="N",
                        help="fixed budget of N canvases over the whole file (a multiple of 4); "
                             "default: streaming grouping, as many canvases as the video asks for")
    parser.add_argument("--structure", choices=("official", "seed"), default="official",
                        help="codec mode: official = the release's tool (sampled frames, readiness groups of 8-64 "
                             "sampled frames, best blocks in (t, row, col) order); seed = every frame, bit-cost "
                             "groups, mass-split P-canvases (default: official)")
    parser.add_argument("--sample-fps", type=float, default=None, metavar="FPS",
                        help="official structure without --canvases: frames sampled per second (default 4; "
                             "0: every frame)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="write canvas_NNN.png, patch_positions.npy and meta.json here")
    parser.add_argument("--plot", type=Path, default=None, metavar="PNG",
                        help="save a figure of bit-cost, groups, tokens per group and the canvases")
    parser.add_argument("--json", action="store_true", help="print one JSON line with the summary")


def run(args: argparse.Namespace) -> int:
    if "numpy" not in sys.modules:
        # one OpenBLAS thread: tokenizing does no large BLAS work, and the thread pool's start-up was ~60 ms of this
        # command's 0.3 s start on a 2-core machine (an explicit setting is kept)
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from ov2_ros.codec.tokenizer import tokenize_file
    from ov2_ros.codec.types import TokenizerConfig

    config = TokenizerConfig(mode=args.mode, structure=args.structure)
    if args.sample_fps is not None:
        config = TokenizerConfig(mode=args.mode, structure=args.structure, sample_fps=args.sample_fps)
    progress = _progress_bar(args)
    try:
        result = tokenize_file(args.video, config, canvases=args.canvases,
                               progress=progress.update if progress is not None else None)
    finally:
        if progress is not None:
            progress.close()
    summary = result.summary()
    summary["mode"] = args.mode
    summary["structure"] = args.structure
    if args.out is not None:
        write_outputs(result, args.out, summary)
    if args.plot is not None:
        from ov2_ros.codec.plot import plot_tokenization

        plot_tokenization(result, args.plot, title=f"{Path(args.video).name} ({args.mode}"
                          + (f", {args.structure} structure)" if args.mode == "codec" else ")"))
    if args.json:
        print(json.dumps(summary))
    else:
        print(_human(summary))
    return 0


def write_outputs(result, out: Path, summary: dict) -> None:
    """``canvas_NNN.png`` per canvas, ``patch_positions.npy`` (P, 3) int32, ``meta.json`` (summary + per canvas)."""
    import cv2
    import numpy as np

    from concurrent.futures import ThreadPoolExecutor

    out.mkdir(parents=True, exist_ok=True)
    names = [f"canvas_{i:03d}.png" for i in range(len(result.canvases))]

    def write(name: str, pixels) -> bool:
        return cv2.imwrite(str(out / name), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))

    # PNG encoding releases the GIL: two at a time halve its ~6 ms per canvas on a 2-core machine
    with ThreadPoolExecutor(max_workers=2) as pool:
        written = list(pool.map(write, names, [c.pixels for c in result.canvases]))
    if not all(written):
        from ov2_ros.errors import Ov2Error

        raise Ov2Error(f"could not write {out / names[written.index(False)]}")
    canvases = [{"file": name, "kind": c.kind, "group": c.group, "frames": c.frames.tolist(),
                 "patches": int((c.positions[:, 0] >= 0).sum())} for name, c in zip(names, result.canvases)]
    np.save(out / "patch_positions.npy", result.patch_positions.astype(np.int32))
    meta = dict(summary, canvas_files=canvases,
                group_thresholds=[g.threshold for g in result.groups])
    (out / "meta.json").write_text(json.dumps(meta, indent=1))


def _progress_bar(args):
    """tqdm on stderr, only for a human at a terminal (never with --json)."""
    if args.json or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    from ov2_ros.codec.source import probe

    return tqdm(total=probe(args.video).frames, unit="AU", desc="tokenize", file=sys.stderr, leave=False)


def _human(s: dict) -> str:
    t = s["timings"]
    return (f"{s['frames_total']} frames @ {s['fps']:.2f} fps -> {len(s['groups'])} groups, {s['canvases']} canvases "
            f"{s['canvas_size'][0]}x{s['canvas_size'][1]}, {s['tokens']} tokens, {s['selected_patches']} patches "
            f"from {len(s['selected_frames'])} frames; decode {t['decode_s']:.3f} s, tokenize {t['tokenize_s']:.3f} s, "
            f"total {t['total_s']:.3f} s")
