"""``ov2-ros replay BAG``: a recorded bag through the live node's pipeline, every window inferred (not real time).

Writes ``OUT/results.json``, ``OUT/results_bag`` (the node's output topics, source stamps) and ``OUT/masks/``; with
``--overlay png|mp4`` also each answer drawn on its source frame (``OUT/overlay/`` or ``OUT/overlay.mp4``).
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

HELP = "replay a rosbag2 bag (MCAP or sqlite3) through the perception pipeline; write a results bag + results.json"


def add_replay_arguments(parser: Any, query_required: bool) -> None:
    """Options shared by ``replay`` and ``eval --compare`` (which replays too); ``parser`` may be an argument group."""
    parser.add_argument("--topic", default="/camera/image/compressed",
                        help="image topic: H.264/HEVC or JPEG CompressedImage, Foxglove CompressedVideo "
                             "(h264/h265), or raw sensor_msgs/Image (default: /camera/image/compressed)")
    parser.add_argument("--query", required=query_required,
                        help='the query, with its task prefix, e.g. "track: the red mug" or "when: the door opens"')
    parser.add_argument("--model", default="tiny-random", help="tiny-random, an HF id or a local checkpoint folder")
    parser.add_argument("--canvases", type=int, default=32, metavar="N",
                        help="window budget in canvases (multiple of 4; default 32 = 8 groups)")
    parser.add_argument("--max-new-tokens", type=int, default=128, metavar="N", help="answer length cap (128)")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--backend", choices=("torch", "onnxruntime", "tensorrt", "ray"), default="torch",
                        help="model runtime (default torch); onnxruntime/tensorrt need --export-dir; ray asks a "
                             "Ray Serve deployment (ov2-ros serve)")
    parser.add_argument("--ray-address", default="http://127.0.0.1:8000", metavar="ADDR",
                        help="ray backend: Serve's HTTP endpoint or a Ray address (auto, ray://head:10001)")
    parser.add_argument("--ray-app", default="ov2", metavar="NAME", help="ray backend: the Serve application name")
    parser.add_argument("--export-dir", default="", metavar="DIR",
                        help="the folder `ov2-ros export --parts vision,decoder` wrote for --model")
    parser.add_argument("--no-segment", action="store_true", help="skip SAM2 masks for track/point answers")
    parser.add_argument("--segment-model", default="tiny-random",
                        help="SAM2 model: tiny-random, sam2-toy, facebook/sam2.1-hiera-tiny or a folder")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="results bag storage")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", type=Path, help="rosbag2 folder (with metadata.yaml)")
    add_replay_arguments(parser, query_required=True)
    parser.add_argument("--mode", choices=("codec", "uniform", "hybrid"), default="codec",
                        help="tokenization (default codec)")
    parser.add_argument("--out", type=Path, default=None, metavar="OUT",
                        help="output folder (default: BAG_replay_MODE next to the bag)")
    parser.add_argument("--overlay", choices=("png", "mp4"), default="",
                        help="also draw each answer on its source frame (track points, waypoints, mask outline): "
                             "OUT/overlay/NNNNNN.png or OUT/overlay.mp4")


def replay_config(args: argparse.Namespace, mode: str, query: str):
    from ov2_ros.eval.replay import ReplayConfig

    if args.canvases < 4 or args.canvases % 4:
        from ov2_ros.errors import ConfigError

        raise ConfigError(f"--canvases must be a positive multiple of 4 (groups of 1 I + 3 P), got {args.canvases}")
    return ReplayConfig(query=query, topic=args.topic, model=args.model, mode=mode, canvases=args.canvases,
                        segment=not args.no_segment, segment_model=args.segment_model,
                        device=args.device, storage=args.storage,
                        max_new_tokens=args.max_new_tokens, backend=args.backend, export_dir=args.export_dir,
                        ray_address=args.ray_address, ray_app=args.ray_app)


def summary_line(results, out: Path) -> str:
    answered = sum(w.answer is not None for w in results.windows)
    missing = "; ".join(results.missing.values())
    line = (f"{results.name} [{results.mode}]: {results.num_frames} frames, {len(results.groups)} groups, "
            f"{len(results.windows)} windows ({answered} answered) -> {out}")
    return line + (f"\n  missing: {missing}" if missing else "")


def run(args: argparse.Namespace) -> int:
    from ov2_ros.eval.replay import replay_bag

    out = args.out or args.bag.parent / f"{args.bag.name}_replay_{args.mode}"
    config = replace(replay_config(args, args.mode, args.query), overlay=args.overlay)
    results = replay_bag(args.bag, out, config, progress=not args.quiet)
    print(summary_line(results, out))
    return 0
