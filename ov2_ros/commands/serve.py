"""``ov2-ros serve``: a Ray cluster (local, or joined with ``--address``) plus the Serve deployment, in one command.

    ov2-ros serve --model lmms-lab-encoder/LLaVA-OneVision-2-8B-Instruct --device cuda --replicas 2 --num-gpus 1

Prints one progress line as replicas come up, then the endpoint the nodes point at (``backend: ray``,
``ray_address: http://HOST:PORT``, ``ray_app: APP``). Ctrl-C deletes the app (and stops a cluster it started).
"""
from __future__ import annotations

import argparse
import sys
import time

HELP = "serve the model to many robots: a Ray Serve deployment that batches windows across nodes (backend: ray)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="tiny-random", help="tiny-random, an HF id or a local checkpoint folder")
    parser.add_argument("--backend", choices=("torch", "onnxruntime", "tensorrt"), default="torch",
                        help="each replica's runtime (default torch)")
    parser.add_argument("--device", default="cpu", help="torch device of each replica (cuda on GPU replicas)")
    parser.add_argument("--export-dir", default="", metavar="DIR", help="onnxruntime/tensorrt: the export folder")
    parser.add_argument("--max-new-tokens", type=int, default=128, metavar="N", help="answer length cap (128)")
    parser.add_argument("--replicas", type=int, default=1, metavar="N", help="model replicas (default 1)")
    parser.add_argument("--num-gpus", type=float, default=None, metavar="G",
                        help="GPUs per replica (default 1 with --device cuda, else 0)")
    parser.add_argument("--num-cpus", type=float, default=1.0, metavar="C", help="CPUs Ray reserves per replica")
    parser.add_argument("--torch-threads", type=int, default=0, metavar="T", help="torch threads per replica "
                        "(0: torch's default)")
    parser.add_argument("--max-batch-size", type=int, default=8, metavar="B", help="windows per batch (8)")
    parser.add_argument("--batch-wait-ms", type=float, default=20.0, metavar="MS",
                        help="how long a batch waits to fill (20 ms)")
    parser.add_argument("--max-streams", type=int, default=64, metavar="S",
                        help="robot streams whose groups (and vision tokens) a replica keeps (64)")
    parser.add_argument("--app", default="ov2", help="Serve application name and HTTP route (default ov2)")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP host (0.0.0.0 to serve other machines)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port (8000)")
    parser.add_argument("--address", default=None,
                        help="join this Ray cluster (auto, head:6379) instead of starting a local one")
    parser.add_argument("--ray-cpus", type=float, default=None, metavar="N",
                        help="local cluster: logical CPUs (default: this machine's)")
    parser.add_argument("--detach", action="store_true",
                        help="with --address: leave the app running in the cluster and exit")


def serve_config(args: argparse.Namespace):
    from ov2_ros.errors import ConfigError
    from ov2_ros.serving.deployment import ServeConfig

    if min(args.replicas, args.max_batch_size, args.max_new_tokens, args.max_streams) < 1 or args.batch_wait_ms < 0:
        raise ConfigError("need --replicas, --max-batch-size, --max-new-tokens and --max-streams >= 1, and "
                          "--batch-wait-ms >= 0")
    gpus = args.num_gpus if args.num_gpus is not None else (1.0 if args.device.startswith("cuda") else 0.0)
    return ServeConfig(model=args.model, backend=args.backend, device=args.device, export_dir=args.export_dir,
                       max_new_tokens=args.max_new_tokens, replicas=args.replicas, num_gpus=gpus,
                       num_cpus=args.num_cpus, torch_threads=args.torch_threads, max_batch_size=args.max_batch_size,
                       batch_wait_s=args.batch_wait_ms / 1e3, max_streams=args.max_streams)


def run(args: argparse.Namespace) -> int:
    from ov2_ros.errors import ConfigError

    config = serve_config(args)
    if args.detach and not args.address:
        raise ConfigError("--detach needs --address: a local cluster stops when this command exits")
    try:
        from ov2_ros.serving import cluster
    except ImportError as exc:
        raise ConfigError(f"ov2-ros serve needs Ray Serve: pip install 'ov2_ros[serve]' ({exc})") from exc

    def progress(line: str) -> None:
        print(line, flush=True)

    cluster.start(args.address, num_cpus=args.ray_cpus, host=args.host, port=args.port)
    try:
        cluster.deploy(config, args.app, progress=progress)
        host = "127.0.0.1" if args.host == "0.0.0.0" else args.host
        print(f"serving {config.model} at http://{host}:{args.port}/{args.app}: nodes use backend:=ray "
              f"ray_address:=http://{host}:{args.port} ray_app:={args.app}" +
              ("" if args.detach else "; Ctrl-C to stop"), flush=True)
        if args.detach:
            return 0
        last = ""
        while True:                        # report replica restarts until interrupted
            time.sleep(2.0)
            states = cluster.replica_states(args.app)
            line = ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items()))
            if line != last and last:
                progress(f"{args.app}: replicas {line}")
            last = line
    except KeyboardInterrupt:
        print(f"{args.app}: stopping", file=sys.stderr, flush=True)
        return 0
    finally:
        if not args.detach:
            from ray import serve

            serve.delete(args.app)
            if not args.address:
                cluster.shutdown()
