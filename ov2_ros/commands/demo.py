"""``ov2-ros demo``: the whole node in one process, on a real H.264 clip, recorded to an MCAP bag.

A player publishes a libx264 clip as CompressedImage at real time, a query goes out, ``ov2_node`` answers, and every
topic is recorded with ``rosbags``. By default the models are the shipped toys (``ov2-toy`` + ``sam2-toy``, trained
by ``make train-toy`` on synthetic named-shape scenes) and the clip is a held-out scene of that kind
(``ov2_ros.codec.synth.make_scene``: a red square and a blue circle that move, stop and occlude), so the answers are
real perception; ``--model tiny-random`` plays the scripted event clip through random weights (plumbing only).
"""
from __future__ import annotations

import argparse
import json
import shutil
import threading
import time
from pathlib import Path

HELP = "play a real H.264 clip through ov2_node with a query, record every topic to an MCAP bag, print a summary"

TINY_NOTICE = """\
NOTE: --model tiny-random uses tiny RANDOM weights. Its answers are meaningless: the demo shows the plumbing
(H.264 -> codec tokens -> model -> parsed results -> topics -> bag), not perception quality.
For real answers pass a checkpoint: --model lmms-lab-encoder/LLaVA-OneVision-2-8B-Instruct --device cuda
(or a local folder with config.json + safetensors; see models/README.md)."""


DEMO_SCENE = 100_003                    # a held-out seed (ov2_ros.train.toy.HELD_OUT): never trained on
DEMO_OBJECTS = ("the blue circle", "the red square")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out)")
    parser.add_argument("--model", default="ov2-toy",
                        help="ov2-toy (default: the shipped toy model), tiny-random, an HF id or a local folder")
    parser.add_argument("--segment-model", default="sam2-toy",
                        help="SAM2 model: sam2-toy (default), tiny-random, facebook/sam2.1-hiera-tiny or a folder")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--query", default="track: the red square", help='query with task prefix')
    parser.add_argument("--loops", type=int, default=2, help="times the clip is played (default 2)")
    parser.add_argument("--size", default="320x240", help="clip size WxH (default 320x240)")
    parser.add_argument("--no-segment", action="store_true", help="skip SAM2 masks")
    parser.add_argument("--canvases", type=int, default=None,
                        help="window budget in canvases (default: the model's recorded setting; 8 for tiny-random)")


def _topics():
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PointStamped
    from nav_msgs.msg import Path as PathMsg
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import String
    from visualization_msgs.msg import MarkerArray

    return {"/image/compressed": CompressedImage, "/query": String, "/answer": String,
            "/tracking/points": PointStamped, "/waypoints": PathMsg, "/mask": Image, "/mask/ids": Image,
            "/markers": MarkerArray, "/diagnostics": DiagnosticArray}


def run(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")   # a demo, not a robot: stay on this host
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter

    from ov2_ros.codec.synth import make_event_clip, make_scene
    from ov2_ros.errors import ConfigError
    from ov2_ros.eval.bags import BagWriter
    from ov2_ros.ros.node import Ov2Node
    from ov2_ros.ros.player import ClipPlayer
    from ov2_ros.ros.recorder import TopicRecorder

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError as exc:
        raise ConfigError(f"--size must be WxH, got {args.size!r}") from exc
    if args.model == "tiny-random":
        print(TINY_NOTICE, flush=True)
    t_start = time.monotonic()
    clip = make_event_clip(width, height) if args.model == "tiny-random" else \
        make_scene(DEMO_SCENE, width, height, names=DEMO_OBJECTS)
    aus = list(clip.aus) * max(1, args.loops)
    args.out.mkdir(parents=True, exist_ok=True)
    bag_path = args.out / "ov2_demo_bag"
    if bag_path.exists():
        shutil.rmtree(bag_path)    # the demo owns this folder; a fresh bag per run

    rclpy.init()
    executor = MultiThreadedExecutor(num_threads=3)
    helper = rclpy.create_node("ov2_demo")
    executor.add_node(helper)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    node = None
    try:
        with BagWriter(bag_path, "mcap") as writer:
            recorder = TopicRecorder(helper, writer, _topics())
            print(f"loading {args.model} on {args.device} ...", flush=True)
            overrides = [Parameter("model", value=args.model), Parameter("device", value=args.device),
                         Parameter("segment", value=not args.no_segment),
                         Parameter("segment_model", value=args.segment_model),
                         Parameter("max_new_tokens", value=24 if args.model == "tiny-random" else 128)]
            canvases = args.canvases or (8 if args.model == "tiny-random" else None)
            if canvases:   # a 2-group window keeps random-weight answers coming on a CPU; ov2-toy records its own
                overrides.append(Parameter("tokenizer.window_canvases", value=canvases))
            node = Ov2Node(parameter_overrides=overrides)
            executor.add_node(node)
            if node.state != "active":
                print(f"ov2_node is {node.state}, not active; see the log above and /diagnostics in the bag")
            player = ClipPlayer(helper)
            player.wait_for_subscriber()
            player.query(args.query)
            print(f"query: {args.query!r}; playing {len(aus)} frames ({width}x{height}, {clip.fps:.0f} fps, "
                  f"real time) ...", flush=True)
            player.play(aus, clip.fps)
            _drain(node, timeout=25.0)
            time.sleep(0.5)   # the last messages reach the recorder
            recorder.stop()
            counts = {topic: recorder.counts.get(topic, 0) for topic in _topics()}
            status = node.diagnostics()
    finally:
        if node is not None:
            node.destroy_node()
        executor.shutdown(timeout_sec=5)
        helper.destroy_node()
        rclpy.shutdown()
    _summary(counts, status, bag_path, args, time.monotonic() - t_start)
    return 0


def _drain(node, timeout: float) -> None:
    """Wait until the node has answered the newest window (or ``timeout``)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and not node.idle:
        time.sleep(0.1)


def _last_answer(bag_path: Path) -> dict | None:
    from rosbags.highlevel import AnyReader

    from ov2_ros.eval.bags import typestore

    with AnyReader([bag_path], default_typestore=typestore()) as reader:
        conns = [c for c in reader.connections if c.topic == "/answer"]
        texts = [reader.deserialize(raw, c.msgtype).data for c, _, raw in reader.messages(connections=conns)]
    return json.loads(texts[-1]) if texts else None


def _summary(counts: dict, status: tuple, bag_path: Path, args, elapsed: float) -> None:
    level, message, values = status
    print("\npublished (recorded to the bag):")
    print(f"  {'topic':<20} {'messages':>8}")
    for topic, n in sorted(counts.items()):
        print(f"  {topic:<20} {n:>8}")
    print(f"\nnode status: {level}: {message}")
    keys = ("aus", "frames", "groups", "windows_run", "windows_dropped", "model_errors", "codec_issues",
            "model_s", "push_ms_mean", "fps")
    print("  " + ", ".join(f"{k}={values[k]:.3g}" if isinstance(values.get(k), float) else f"{k}={values.get(k)}"
                           for k in keys if k in values))
    summary = {"bag": str(bag_path), "counts": counts, "status": {"level": level, "message": message},
               "values": {k: v for k, v in values.items() if isinstance(v, (int, float, str, bool))},
               "model": args.model, "query": args.query, "elapsed_s": elapsed}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    last = _last_answer(bag_path)
    if last:
        print(f"\nlast answer (read back from the bag): task={last['task']} text={last['text'][:80]!r} "
              f"window frames {last['window']['start_frame']}-{last['window']['end_frame']}")
        tracks = last["result"].get("tracks") or last["result"].get("points") or []
        if tracks:
            print("  parsed: " + "; ".join(f"frame {p['frame']} ({p['x']:.0f}, {p['y']:.0f}) px" for p in tracks[:6]))
            print(f"  {counts.get('/tracking/points', 0)} PointStamped on /tracking/points at the frames' source "
                  f"stamps, {counts.get('/mask', 0)} masks on /mask, {counts.get('/markers', 0)} MarkerArrays")
    print(f"\nbag: {bag_path} (MCAP; open with Foxglove or `rosbags` / `ros2 bag info`)")
    print(f"summary: {args.out / 'summary.json'}   ({elapsed:.1f} s)")
    if args.model == "tiny-random":
        print("reminder: tiny random weights -> meaningless answers; pass --model <real checkpoint> for real ones.")
