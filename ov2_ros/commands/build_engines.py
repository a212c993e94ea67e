"""``ov2-ros build-engines DIR [--precision fp16|bf16|int8|fp8]``: TensorRT engines for an export folder.

Engines are cached under ``DIR/engines`` keyed by TensorRT version, GPU name and compute capability, precision,
ONNX hash and shape profiles, so a stale engine is rebuilt rather than failing at load.
"""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "build (or reuse cached) TensorRT engines for the ONNX parts in an export folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("export_dir", type=Path, metavar="DIR", help="folder written by `ov2-ros export`")
    parser.add_argument("--precision", choices=("fp16", "bf16", "int8", "fp8"), default="fp16",
                        help="engine precision (fp16; int8/fp8 need a Q/DQ-quantized export and a GPU that has them)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="engine cache folder (default DIR/engines)")


def run(args: argparse.Namespace) -> int:
    from ov2_ros.engines.tensorrt_backend import build_engines

    built = build_engines(args.export_dir, precision=args.precision, cache_dir=args.cache_dir)
    for name, path in built.items():
        print(f"{name}: {path}")
    return 0
