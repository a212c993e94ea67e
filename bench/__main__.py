"""``python -m bench [NAME ...]`` (``make bench``): run the CPU benchmarks one after another.

Each is also a script of its own with more options (see bench/README.md). GPU benchmarks (``model_gpu``,
``sam2_gpu`` at 1024 px, ``batch --device cuda``) need CUDA and run together with ``bench/gpu_all.sh`` on a GPU
machine; ``node_soak`` takes 10 minutes and is run
by hand too.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# name -> extra arguments for the default CPU run
CPU_BENCHMARKS = {
    "tokenizer": [],
    "decoder_threads": [],
    "replay": [],
    "sam2_gpu": ["--device", "cpu"],
    "batch": [],
}


def main(argv: list[str]) -> int:
    names = argv or list(CPU_BENCHMARKS)
    unknown = [n for n in names if n not in CPU_BENCHMARKS]
    if unknown:
        print(f"bench: unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(CPU_BENCHMARKS)}",
              file=sys.stderr)
        return 2
    failed = []
    for name in names:
        print(f"\n=== bench/{name}.py ===", flush=True)
        if subprocess.call([sys.executable, str(HERE / f"{name}.py"), *CPU_BENCHMARKS[name]]) != 0:
            failed.append(name)
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
