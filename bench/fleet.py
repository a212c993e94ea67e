"""Fleet serving: N simulated robot streams against a Ray Serve deployment (1 and 2 replicas) vs N local runtimes.

    .venv/bin/python bench/fleet.py            # tiny-random on CPU, a few minutes
    .venv/bin/python bench/fleet.py --model lmms-lab-encoder/LLaVA-OneVision-2-8B-Instruct --device cuda --hd

Three parts, in one run:
1. **Wire sizes** on 1280x720 video (canvases 280x504): bytes of a whole 32-canvas window and of a slide (one new
   group), JPEG and exact I420, for the codec tokenizer's windows and for uniform windows. No model.
2. **Throughput**: N = 1, 2, 4, 8 robots, each sending its own sequence of windows closed-loop (the next window
   when the answer is back), through Serve's HTTP proxy to 1 and 2 replicas (two apps, up together); against N
   local runtimes (one per robot, in threads of this process) answering the same windows, measured right before. Windows/s, latency p50/p99, bytes per window and
   per slide, batch sizes. Small windows (160x120 clip, 8 canvases) keep this to minutes on 2 CPU cores.
3. **Fault**: one robot streaming while the app is deleted and deployed again: failures, seconds from the deploy
   returning to the next answer.

Writes ``bench/results/fleet.json``. On one CPU machine the replicas and the local runtimes share the same cores,
so the ratios say what batching and the wire cost here, not what a GPU pool gives.
"""
from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (bench/ is a folder of scripts, not a package)

from ov2_ros.codec.source import iter_access_units  # noqa: E402
from ov2_ros.codec.synth import make_event_clip  # noqa: E402
from ov2_ros.codec.tokenizer import CodecTokenizer  # noqa: E402
from ov2_ros.codec.types import TokenizerConfig  # noqa: E402
from ov2_ros.model.answer import Query  # noqa: E402
from ov2_ros.serving import ServedRuntime, ServerUnavailableError, payload, wire  # noqa: E402

QUERY = Query("track", "the red square")
SMALL = TokenizerConfig(mode="uniform", uniform_group_frames=8, window_canvases=8)


def windows_of(aus, config: TokenizerConfig, fps: float = 30.0) -> list:
    tok = CodecTokenizer(config, fps=fps)
    out = []
    for i, au in enumerate(aus):
        if tok.push(au, stamp=i):
            out.append(tok.window())
    return out


# ------------------------------------------------------------------------------------------------ 1. wire sizes
def request_size(window, groups) -> int:
    keys = [g.key for g in groups]
    return len(wire.pack(payload.request("robot", window, keys, QUERY, groups)))


def wire_sizes(frames: int) -> list[dict]:
    clip = common.moving_scene_clip(1280, 720, frames)
    aus = [au for au, _ in iter_access_units(clip)]
    rows = []
    # codec: every frame sampled (sample_fps 0), so a 40 s clip fills 8 groups; the live default of 4 fps needs
    # about a minute of video per 32-canvas window (same canvases, fewer source frames per group)
    for label, config in (("codec", TokenizerConfig(sample_fps=0.0)),
                          ("uniform", TokenizerConfig(mode="uniform", uniform_group_frames=8))):
        wins = windows_of(aus, config)
        full = max(len(w.canvases) for w in wins)
        pairs = [(a, b) for a, b in zip(wins, wins[1:]) if len(b.canvases) == full and b.groups[0] is not a.groups[0]
                 and len(a.groups) == len(b.groups)]
        prev, win = pairs[-1] if pairs else (wins[-2], wins[-1])
        for enc in ("jpeg", "i420"):
            t0 = time.perf_counter()
            groups = [payload.encode_group(g, enc) for g in win.groups]
            encode_s = (time.perf_counter() - t0) / len(groups)
            held = {(g.index, g.start_frame) for g in prev.groups}
            new = [wg for g, wg in zip(win.groups, groups) if (g.index, g.start_frame) not in held]
            whole, slide = request_size(win, groups), request_size(win, new)
            rows.append({"tokenizer": label, "encoding": enc, "canvases": len(win.canvases),
                         "canvas_hw": list(win.canvas_size), "groups": len(win.groups), "new_groups": len(new),
                         "window_bytes": whole, "slide_bytes": slide, "slide_over_window": slide / whole,
                         "encode_ms_per_group": 1e3 * encode_s})
    return rows


# ------------------------------------------------------------------------------------------------ 2. throughput
def streams_for(n: int, windows: list, per_stream: int) -> list[list]:
    """Robot i's windows: a run of consecutive (sliding) windows starting at its own offset."""
    span = len(windows) - per_stream
    return [windows[(i * 3) % max(1, span):][:per_stream] for i in range(n)]


def run_streams(answerers: list, streams: list[list]) -> dict:
    lat, batch, bytes_first, bytes_slide, errors = [], [], [], [], []
    lock, start = threading.Lock(), threading.Barrier(len(streams) + 1)

    def robot(i: int) -> None:
        start.wait()
        for k, window in enumerate(streams[i]):
            t0 = time.perf_counter()
            try:
                answer = answerers[i].answer(window, QUERY)
            except Exception as exc:  # noqa: BLE001 - counted, reported
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            dt = time.perf_counter() - t0
            served = answer.extra.get("served", {})
            with lock:
                lat.append(dt)
                if served:
                    batch.append(served["batch_size"])
                    (bytes_first if k == 0 else bytes_slide).append(served["request_bytes"])

    threads = [threading.Thread(target=robot, args=(i,)) for i in range(len(streams))]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    out = {"windows": len(lat), "errors": errors[:3], "error_count": len(errors), "wall_s": wall,
           "windows_per_s": len(lat) / wall, "latency": common.summary_ms(lat) if lat else None}
    if batch:
        out.update(batch_size_mean=sum(batch) / len(batch), batch_size_max=max(batch),
                   bytes_per_window=sum(bytes_first) / max(1, len(bytes_first)),
                   bytes_per_slide=sum(bytes_slide) / max(1, len(bytes_slide)))
    return out


def throughput(args, windows: list) -> tuple[list[dict], dict]:
    """Per N: local, then each deployment (apps ``fleet1``, ``fleet2``... up at once), so load drift on the shared
    machine hits every mode alike."""
    import torch

    from ov2_ros.model import load_runtime
    from ov2_ros.serving import cluster
    from ov2_ros.serving.deployment import ServeConfig

    torch.set_num_threads(args.torch_threads)
    locals_ = [load_runtime(args.model, device=args.device, max_new_tokens=args.max_new_tokens)
               for _ in range(max(args.robots))]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cluster.start(num_cpus=args.ray_cpus, num_gpus=None, port=port)
    rows, configs = [], {}
    try:
        for replicas in args.replicas:
            configs[replicas] = ServeConfig(
                model=args.model, device=args.device, max_new_tokens=args.max_new_tokens, replicas=replicas,
                num_cpus=args.ray_cpus / sum(args.replicas), num_gpus=1.0 if args.device.startswith("cuda") else 0.0,
                torch_threads=args.torch_threads, max_batch_size=8, batch_wait_s=args.batch_wait_s)
            t0 = time.perf_counter()
            cluster.deploy(configs[replicas], f"fleet{replicas}", progress=lambda line: print("  " + line, flush=True))
            print(f"  deployed {replicas} replica(s) in {time.perf_counter() - t0:.1f} s", flush=True)
        for n in args.robots:
            streams = streams_for(n, windows, args.windows)
            res = run_streams(locals_[:n], streams)
            rows.append({"mode": "local", "replicas": 0, "robots": n, **res})
            print(f"  local x{n}: {res['windows_per_s']:.2f} windows/s", flush=True)
            for replicas in args.replicas:
                clients = [ServedRuntime(f"http://127.0.0.1:{port}", f"fleet{replicas}", stream_id=f"r{n}-{i}",
                                         encoding="jpeg") for i in range(n)]
                res = run_streams(clients, streams)
                res["resends"] = sum(c.stats["resends"] for c in clients)
                rows.append({"mode": "ray", "replicas": replicas, "robots": n, **res})
                print(f"  ray {replicas} replica(s) x{n}: {res['windows_per_s']:.2f} windows/s, "
                      f"batch mean {res.get('batch_size_mean', 0):.2f}", flush=True)
        last = args.replicas[0]
        fault = fault_run(configs[last], f"fleet{last}", port, windows)
    finally:
        cluster.shutdown()
    return rows, fault


# ------------------------------------------------------------------------------------------------ 3. fault
def fault_run(config, app: str, port: int, windows: list) -> dict:
    """One robot sends a window every ``pace`` s; the app is deleted, then deployed again."""
    from ray import serve

    from ov2_ros.serving import cluster

    client = ServedRuntime(f"http://127.0.0.1:{port}", app, stream_id="fault", encoding="jpeg", timeout_s=10.0)
    log: list[tuple[float, bool]] = []
    stop = threading.Event()

    def robot() -> None:
        k = 0
        while not stop.is_set():
            try:
                client.answer(windows[k % len(windows)], QUERY)
                log.append((time.monotonic(), True))
            except ServerUnavailableError:
                log.append((time.monotonic(), False))
            k += 1
            time.sleep(0.25)

    thread = threading.Thread(target=robot)
    thread.start()
    time.sleep(3.0)
    serve.delete(app)
    down = time.monotonic()
    time.sleep(3.0)
    cluster.deploy(config, app)
    back = time.monotonic()
    deadline = back + 60
    while time.monotonic() < deadline and not any(ok and t >= back for t, ok in log):
        time.sleep(0.1)
    stop.set()
    thread.join()
    first = next((t for t, ok in log if ok and t >= back), None)
    return {"outage_s": back - down, "failures": sum(not ok for _, ok in log),
            "answers_before": sum(ok for t, ok in log if t < down),
            "recovery_s": None if first is None else first - back, "client": client.status()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny-random")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--robots", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--windows", type=int, default=6, help="windows each robot sends")
    parser.add_argument("--ray-cpus", type=float, default=2.0)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--batch-wait-s", type=float, default=0.02)
    parser.add_argument("--hd-frames", type=int, default=1200, help="frames of the 720p clip for wire sizes")
    args = parser.parse_args(argv)

    print("wire sizes (1280x720, no model)...", flush=True)
    sizes = wire_sizes(args.hd_frames)
    t = common.Table("Bytes on the wire per window and per slide (1280x720 source)",
                     ["tokenizer", "encoding", "canvases", "window kB", "slide kB", "slide/window", "enc ms/group"])
    for r in sizes:
        t.add(r["tokenizer"], r["encoding"], r["canvases"], r["window_bytes"] / 1e3, r["slide_bytes"] / 1e3,
              r["slide_over_window"], r["encode_ms_per_group"])
    print(t, flush=True)

    windows = windows_of(make_event_clip(160, 120).aus, SMALL)[1:]
    print(f"throughput ({len(windows)} windows of {len(windows[0].canvases)} canvases, {args.model} on "
          f"{args.device})...", flush=True)
    rows, fault = throughput(args, windows)
    local = {r["robots"]: r["windows_per_s"] for r in rows if r["mode"] == "local"}
    t = common.Table("Windows/s: N robots through Ray Serve vs N local runtimes (same machine)",
                     ["mode", "replicas", "robots", "windows/s", "vs local", "p50 ms", "p99 ms", "batch mean",
                      "batch max", "B/window", "B/slide", "errors"])
    for r in rows:
        r["vs_local"] = common.ratio(r["windows_per_s"], local.get(r["robots"]))
        lat = r["latency"] or {}
        t.add(r["mode"], r["replicas"], r["robots"], r["windows_per_s"], r["vs_local"], lat.get("median_ms"),
              lat.get("p99_ms"), r.get("batch_size_mean"), r.get("batch_size_max"), r.get("bytes_per_window"),
              r.get("bytes_per_slide"), r["error_count"])
    print(t)
    print(f"\nfault: app deleted for {fault['outage_s']:.1f} s; {fault['failures']} failed requests; answered again "
          f"{fault['recovery_s'] if fault['recovery_s'] is None else round(fault['recovery_s'], 2)} s after the "
          "deploy returned")
    from ov2_ros.model.runtime import VlmRuntime

    batched = hasattr(VlmRuntime, "answer_batch")      # replicas batch generation, or answer a batch one by one
    print(f"replica batches ran as {'one batched generation' if batched else 'one answer per window'}")
    path = common.write_results("fleet", {"config": vars(args), "batched_generation": batched, "wire": sizes,
                                          "throughput": rows, "fault": fault,
                                          "load_average": common.load_average()})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
