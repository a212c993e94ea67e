"""Soak benchmark (issue 5): a 1080p30 H.264 stream at real time through ``ov2_node`` for minutes.

Run: ``.venv/bin/python bench/node_soak.py [--minutes 10] [--model tiny-random] [--device cpu] [--segment]``.
Prints tables and writes ``bench/results/node_soak.json``.

One process: a ``ClipPlayer`` publishes a looping 1080p30 libx264 clip (``common.moving_scene_frames``: pans, moving
objects, a cut) on an absolute 30 fps schedule, a query asks for tracking, and ``ov2_node`` (real rclpy, the real
tiny model unless ``--model`` says otherwise) decodes, tokenizes and answers. Every few seconds it samples:
- RSS of the process (goal: growth < 5% after warm-up). Inference allocates and frees GBs per answer on a CPU
  (activations), so a point sample depends on when it lands; growth is judged on the RSS *floor* (the minimum of
  each quarter of the post-warm-up samples: what stays allocated between answers), first vs last quarter,
- queue depth = AUs published - AUs whose callback finished (goal: no growth),
- packets lost before decode (published - decoded calls, plus what the middleware reports lost; goal: 0),
- windows run / dropped (the worker runs only the newest complete window),
- per-AU latency = publish -> end of the node's decode+tokenize callback (p50/p99).
Baseline in the same run: the same AUs through ``PerceptionPipeline.push`` with no ROS and no model (per-AU push
latency), so the table shows what the middleware and a busy inference thread add.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (bench/ is a folder of scripts, not a package)

FPS = 30.0
CLIP_FRAMES = 300          # 10 s, looped
WARMUP_FRACTION = 0.2      # RSS growth is measured from the end of warm-up (model loaded, rings full)


def clip_aus(width: int, height: int) -> list[bytes]:
    from ov2_ros.codec.source import iter_access_units

    path = common.moving_scene_clip(width, height, CLIP_FRAMES, FPS, gop=60)
    return [au for au, *_ in iter_access_units(str(path))]


def baseline_push_latency(aus: list[bytes], config) -> list[float]:
    """Per-AU wall seconds of the pure pipeline (decode + tokenize), no ROS, no model: the floor for the node."""
    from ov2_ros.pipeline import PerceptionPipeline

    pipeline = PerceptionPipeline(config)
    return [pipeline.push(au, i / FPS).push_s for i, au in enumerate(aus)]


def soak(aus: list[bytes], args) -> dict:
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter

    from ov2_ros.ros.node import Ov2Node
    from ov2_ros.ros.player import ClipPlayer

    total = int(args.minutes * 60 * FPS)
    stream = (aus[i % len(aus)] for i in range(total))
    rclpy.init()
    executor = MultiThreadedExecutor(num_threads=3)
    helper = rclpy.create_node("ov2_soak_player")
    node = Ov2Node(parameter_overrides=[Parameter("model", value=args.model), Parameter("device", value=args.device),
                                        Parameter("segment", value=args.segment),
                                        Parameter("max_new_tokens", value=args.max_new_tokens),
                                        Parameter("inference_nice", value=args.inference_nice),
                                        Parameter("trim_memory", value=args.trim_memory)])
    executor.add_node(helper)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    player = ClipPlayer(helper, depth=300)
    player.wait_for_subscriber()
    if not args.no_query:
        player.query("track: the red square")
    latencies: list[float] = []
    samples: list[dict] = []
    t0 = time.monotonic()

    def drain_timing() -> None:
        while node.au_timing:
            stamp_ns, _start, end = node.au_timing.popleft()
            sent = player.publish_times.pop((stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000), None)
            if sent is not None:
                latencies.append(end - sent)

    def sample() -> None:
        drain_timing()
        st = node.pipeline.stats
        samples.append({"t_s": time.monotonic() - t0, "rss_mib": common.rss_mib(), "published": player.sent,
                        "decoded_calls": st.aus, "queue_depth": player.sent - st.aus,
                        "windows_run": st.windows_run, "windows_dropped": st.windows_dropped,
                        "transport_lost": node.transport_lost, "frame_ring": node.pipeline.status()["frame_ring"]})

    stop = threading.Event()

    def sampler() -> None:
        while not stop.wait(args.sample_s):
            sample()

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    player.play(stream, FPS)
    end = time.monotonic() + 10
    while node.pipeline.stats.aus < player.sent and time.monotonic() < end:
        time.sleep(0.05)
    stop.set()
    thread.join()
    sample()
    status = node.pipeline.status()
    qos_depth = node.get_parameter("qos_depth").value
    node.destroy_node()
    executor.shutdown(timeout_sec=5)
    helper.destroy_node()
    rclpy.shutdown()
    return {"samples": samples, "latencies_s": latencies, "late_publish_s": player.late_s, "status": status,
            "published": player.sent, "qos_depth": qos_depth}


def analyse(run: dict, baseline_s: list[float], args) -> dict:
    samples = run["samples"]
    warm = [s for s in samples if s["t_s"] >= WARMUP_FRACTION * args.minutes * 60] or samples
    rss0, rss1 = warm[0]["rss_mib"], samples[-1]["rss_mib"]
    quarters = [q for q in np.array_split(np.array([s["rss_mib"] for s in warm]), 4) if q.size]
    floors = [float(q.min()) for q in quarters]
    depth = np.array([s["queue_depth"] for s in warm], dtype=float)
    half = len(depth) // 2
    last = samples[-1]
    node_lat = common.summary_ms(run["latencies_s"]) if run["latencies_s"] else None
    base_lat = common.summary_ms(baseline_s)
    return {
        "duration_min": args.minutes, "stream": f"{args.width}x{args.height}@{FPS:.0f} H.264 (libx264, gop 60)",
        "model": args.model, "device": args.device, "segment": args.segment, "query": not args.no_query,
        "inference_nice": args.inference_nice, "trim_memory": args.trim_memory, "qos_depth": run["qos_depth"],
        "aus_published": run["published"], "aus_decoded": last["decoded_calls"],
        "packets_dropped_before_decode": run["published"] - last["decoded_calls"] + last["transport_lost"],
        "transport_lost": last["transport_lost"],
        "rss_start_mib": rss0, "rss_end_mib": rss1, "rss_point_growth_pct": 100 * (rss1 - rss0) / rss0,
        "rss_floor_per_quarter_mib": floors, "rss_growth_pct": 100 * (floors[-1] - floors[0]) / floors[0],
        "rss_max_mib": max(s["rss_mib"] for s in samples),
        "queue_depth_max": int(depth.max()) if depth.size else 0,
        "queue_depth_mean_first_half": float(depth[:half].mean()) if half else None,
        "queue_depth_mean_second_half": float(depth[half:].mean()) if half else None,
        "windows_run": last["windows_run"], "windows_dropped": last["windows_dropped"],
        "model_errors": run["status"]["model_errors"], "codec_issues": run["status"]["codec_issues"],
        "node_au_latency": node_lat, "baseline_push_latency": base_lat,
        "latency_ratio_median": common.ratio(node_lat and node_lat["median_ms"], base_lat["median_ms"]),
        "publisher_late_ms_p99": common.percentile_ms(run["late_publish_s"], 99),
        "samples": samples,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="stream length (default 10)")
    parser.add_argument("--model", default="tiny-random")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--segment", action="store_true", help="also run SAM2 (slow on CPU at 1080p)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--no-query", action="store_true",
                        help="send no query (decode + tokenize only); writes node_soak_no_query.json")
    parser.add_argument("--inference-nice", type=int, default=10,
                        help="the node's inference_nice parameter (default 10); other values write "
                             "node_soak_niceN.json")
    parser.add_argument("--trim-memory", action="store_true",
                        help="trim_memory:=true (malloc_trim after each answer); writes node_soak*_trim.json")
    args = parser.parse_args()
    args.width, args.height = (int(v) for v in args.size.split("x"))

    from ov2_ros.pipeline import PipelineConfig

    print(f"encoding/loading a {args.size} clip ({CLIP_FRAMES} frames) ...", flush=True)
    aus = clip_aus(args.width, args.height)
    baseline = baseline_push_latency(aus, PipelineConfig(segment=False))
    print(f"soaking {args.minutes:g} min at {FPS:.0f} fps through ov2_node ({args.model}) ...", flush=True)
    result = analyse(soak(aus, args), baseline, args)

    t = common.Table(f"ov2_node soak: {result['stream']}, {args.minutes:g} min, model {args.model}",
                     ["metric", "value", "goal"])
    t.add("AUs published / decoded", f"{result['aus_published']} / {result['aus_decoded']}", "all")
    t.add("packets dropped before decode", result["packets_dropped_before_decode"], "0")
    t.add("RSS floor per quarter after warm-up (MiB)",
          " / ".join(f"{v:.0f}" for v in result["rss_floor_per_quarter_mib"]), "flat")
    t.add("RSS floor growth, 1st -> last quarter (%)", result["rss_growth_pct"], "< 5")
    t.add("RSS max (MiB; transient inference activations)", result["rss_max_mib"], "")
    t.add("queue depth max (AUs)", result["queue_depth_max"], "bounded")
    t.add("queue depth mean, 1st / 2nd half", f"{common.fmt(result['queue_depth_mean_first_half'])} / "
                                              f"{common.fmt(result['queue_depth_mean_second_half'])}", "no growth")
    t.add("windows run / dropped (stale)", f"{result['windows_run']} / {result['windows_dropped']}", "")
    print(t)
    lat = common.Table("per-AU latency (ms): node = publish -> end of decode+tokenize callback; baseline = "
                       "pipeline.push alone, no ROS, no model, same AUs", ["path", "median", "p90", "p99", "max"])
    for name, s in (("ov2_node", result["node_au_latency"]), ("baseline push", result["baseline_push_latency"])):
        if s:
            lat.add(name, s["median_ms"], s["p90_ms"], s["p99_ms"], s["max_ms"])
    print(lat)
    print(f"median latency ratio node / baseline: {common.fmt(result['latency_ratio_median'])}")
    name = "node_soak" + ("_no_query" if args.no_query else "") + (
        f"_nice{args.inference_nice}" if args.inference_nice != 10 else "") + (
        f"_{args.minutes:g}min" if args.minutes != 10 else "") + ("_trim" if args.trim_memory else "")
    path = common.write_results(name, result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
