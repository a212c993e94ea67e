"""``ov2-ros export --model M --out DIR [--parts vision,decoder,sam2]``: ONNX parts + manifest.json, each checked
against torch in onnxruntime (the max abs diff is printed and recorded in the manifest)."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "export ONNX parts (vision tower, LM decoder with KV cache, SAM2) with a manifest, verified in onnxruntime"


def _parts(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def _canvas(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--canvas wants HxW in pixels, e.g. 280x504, got {text!r}") from None
    if h <= 0 or w <= 0 or h % 28 or w % 28:
        raise argparse.ArgumentTypeError(f"--canvas sides must be positive multiples of 28, got {text!r}")
    return h, w


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="tiny-random", help="tiny-random, an HF id or a local checkpoint folder")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--parts", type=_parts, default=("vision", "decoder", "sam2"),
                        help="comma-separated part groups: vision, decoder, sam2 (default: all)")
    parser.add_argument("--sam2-model", default=None,
                        help="SAM2 checkpoint (default: tiny-random with --model tiny-random, else "
                             "facebook/sam2.1-hiera-tiny)")
    parser.add_argument("--canvas", type=_canvas, default=None, metavar="HxW",
                        help="canvas size the vision part is built for (default 280x504: 16:9 under 150,000 px)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (17)")


def run(args: argparse.Namespace) -> int:
    from ov2_ros.engines.export import export_model

    manifest = export_model(args.model, args.out, parts=args.parts, sam2_model=args.sam2_model, opset=args.opset,
                            canvas_hw=args.canvas)
    width = max(len(p.name) for p in manifest.parts)
    for p in manifest.parts:
        print(f"{p.name:<{width}}  {p.file:<{width + 5}}  max|ort-torch| {p.max_abs_diff:.2e} (tol {p.tolerance:g})")
    print(f"manifest: {args.out / 'manifest.json'}")
    return 0
