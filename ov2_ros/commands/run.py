"""``ov2-ros run``: the ``ov2_node`` ROS 2 node, with common settings as CLI flags mapped onto its parameters.

    ov2-ros run --model lmms-lab-encoder/LLaVA-OneVision-2-8B-Instruct --device cuda \
        --image-topic /camera/image/compressed --params-file config/ov2.yaml

Equivalent to ``ros2 run ov2_ros ov2_node --ros-args -p model:=... -r image/compressed:=...``; anything after
``--ros-args`` is passed through unchanged.
"""
from __future__ import annotations

import argparse

HELP = "run the ov2_node ROS 2 node (H.264 + queries in; answers, points, waypoints, masks out)"

# CLI flag (dest) -> ROS parameter name; only flags the user gave are passed, so the params file keeps the rest
FLAG_PARAMS = {"model": "model", "device": "device", "backend": "backend", "export_dir": "export_dir",
               "default_task": "default_task",
               "mode": "tokenizer.mode", "canvases": "tokenizer.window_canvases", "rerun": "rerun",
               "no_segment": "segment", "segment_model": "segment_model", "codec": "codec",
               "ray_address": "ray_address", "ray_app": "ray_app"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="tiny-random (random weights: meaningless answers), an HF id or a folder")
    parser.add_argument("--device", help="torch device: cpu, cuda, cuda:0")
    parser.add_argument("--backend", choices=("torch", "onnxruntime", "tensorrt", "ray"),
                        help="ray: answers from a Ray Serve deployment (ov2-ros serve); decoding, tokenizing "
                             "and SAM2 stay on this machine")
    parser.add_argument("--ray-address", metavar="ADDR",
                        help="ray backend: Serve's HTTP endpoint (http://head:8000) or a Ray address "
                             "(auto, ray://head:10001)")
    parser.add_argument("--ray-app", metavar="NAME", help="ray backend: the Serve application name (default ov2)")
    parser.add_argument("--export-dir", metavar="DIR",
                        help="onnxruntime/tensorrt: the folder `ov2-ros export --parts vision,decoder` wrote")
    parser.add_argument("--default-task", choices=("track", "point", "waypoints", "ground", "ask"),
                        help="task for queries without a prefix")
    parser.add_argument("--mode", choices=("codec", "uniform", "hybrid"), help="tokenization mode")
    parser.add_argument("--canvases", type=int, metavar="N", help="window budget in canvases (default 32)")
    parser.add_argument("--rerun", choices=("group", "period"), help="re-run the query per group or per period")
    parser.add_argument("--no-segment", action="store_true", default=None, help="no SAM2 masks")
    parser.add_argument("--segment-model", help="SAM2 checkpoint (tiny-random, facebook/sam2.1-hiera-tiny, path)")
    parser.add_argument("--codec", choices=("h264", "hevc"), help="what the camera sends")
    parser.add_argument("--image-topic", help="remap image/compressed to this topic")
    parser.add_argument("--query-topic", help="remap query to this topic")
    parser.add_argument("--params-file", help="ros__parameters YAML (e.g. config/ov2.yaml)")
    parser.add_argument("--ros-args", dest="ros_args", nargs=argparse.REMAINDER, default=[],
                        help="everything after it goes to rclpy unchanged (e.g. --ros-args -p qos_depth:=50)")


def ros_arguments(args: argparse.Namespace) -> list[str]:
    """The rclpy command line for these flags: ``--ros-args -p name:=value -r from:=to --params-file F``."""
    out = ["--ros-args"]
    if args.params_file:
        out += ["--params-file", args.params_file]
    for dest, param in FLAG_PARAMS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if dest == "no_segment":
            value = not value
        out += ["-p", f"{param}:={str(value).lower() if isinstance(value, bool) else value}"]
    for flag, topic in (("image_topic", "image/compressed"), ("query_topic", "query")):
        if getattr(args, flag, None):
            out += ["-r", f"{topic}:={getattr(args, flag)}"]
    return out + list(args.ros_args or [])


def run(args: argparse.Namespace) -> int:
    from ov2_ros.ros.node import main

    main(["ov2-ros-run", *ros_arguments(args)])
    return 0
