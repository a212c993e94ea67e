"""``ov2-ros`` console script: one subcommand per module under ``ov2_ros.commands``.

Each command module exposes ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``. Modules keep heavy
imports (torch, rclpy) inside ``run`` so ``ov2-ros --help`` and ``ov2-ros tokenize`` start fast.
A failing command prints one clear line to stderr and exits non-zero.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ov2_ros.errors import Ov2Error

# subcommand -> module under ov2_ros.commands
COMMANDS = {
    "tokenize": "tokenize",
    "run": "run",
    "replay": "replay",
    "eval": "evaluate",
    "export": "export",
    "build-engines": "build_engines",
    "serve": "serve",
    "demo": "demo",
    "train": "train",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ov2-ros", description="Language-grounded video perception from H.264 codec-stream tokens with "
        "LLaVA-OneVision-2, for ROS 2.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(f"ov2_ros.commands.{module_name}")
        except ModuleNotFoundError as exc:  # a command whose module is not built yet
            if exc.name != f"ov2_ros.commands.{module_name}":
                raise
            continue
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except Ov2Error as exc:
        print(f"ov2-ros {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        print(f"ov2-ros {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ov2-ros {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
