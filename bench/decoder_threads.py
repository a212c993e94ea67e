"""StreamDecoder threading: FRAME vs SLICE vs no threads, decode speed and output delay on a 1280x720 clip.

Run: ``.venv/bin/python bench/decoder_threads.py [--repeats N] [--size WxH]``. Prints a table and writes
``bench/results/decoder_threads.json`` (``decoder_threads_WxH.json`` for other sizes). The baseline is
``threads="none"`` (one thread), measured in the same run; the modes alternate within each repeat so a change in
machine load hits all of them. Each repeat decodes every AU of the cached moving-scene clip
(``common.moving_scene_clip``: libx264 zerolatency, several slices per picture) with a fresh decoder, MVs and luma
views included, AUs read into memory first.

A last row times bare PyAV with FRAME threads (no validation, gating or stamp mapping): the wrapper's floor.
Output delay: for each AU, how many more AUs had to be fed before its frame came out (flush counts as the end).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (bench/ is a folder of scripts, not a package)

from ov2_ros.codec.decoder import MV_DTYPE, StreamDecoder  # noqa: E402
from ov2_ros.codec.source import iter_access_units  # noqa: E402

MODES = ("none", "slice", "frame")   # "none" first: it is the baseline


def decode_once(aus: list[bytes], threads: str, thread_count: int) -> tuple[tuple[float, float], list[int], list]:
    """((wall, cpu) seconds, per-AU output delay in AUs, frames) for one pass over ``aus``. CPU time counts every
    thread of the process: what a mode costs the machine, apart from how long it makes the caller wait."""
    delays, frames = [], []
    t0, c0 = time.perf_counter(), time.process_time()
    with StreamDecoder(threads=threads, thread_count=thread_count) as dec:
        for i, au in enumerate(aus):
            out = dec.decode(au, stamp=i)
            delays += [i - f.stamp for f in out]
            frames += out
        out = dec.flush()
        delays += [len(aus) - f.stamp for f in out]
        frames += out
    return (time.perf_counter() - t0, time.process_time() - c0), delays, frames


def same_mvs_and_luma(a: list, b: list) -> bool:
    """Field by field (the MV struct has uninitialised padding bytes)."""
    return len(a) == len(b) and all(
        np.array_equal(fa.luma, fb.luma) and all(np.array_equal(fa.mvs[n], fb.mvs[n]) for n in MV_DTYPE.names)
        for fa, fb in zip(a, b))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--thread-count", type=int, default=2)
    args = ap.parse_args()
    width, height = map(int, args.size.split("x"))
    path = common.moving_scene_clip(width, height)
    aus = [au for au, _ in iter_access_units(path)]
    load_before = common.load_average()

    samples: dict[str, list[float]] = {m: [] for m in MODES}
    cpu: dict[str, list[float]] = {m: [] for m in MODES}
    delays: dict[str, list[int]] = {}
    frames: dict[str, list] = {}
    for m in MODES:                                   # warm-up pass, also the one whose outputs are compared
        _, delays[m], frames[m] = decode_once(aus, m, args.thread_count)
    floor = []
    for _ in range(args.repeats):
        for m in MODES:
            (wall, cpu_s), _, _ = decode_once(aus, m, args.thread_count)
            samples[m].append(wall)
            cpu[m].append(cpu_s)
        floor.append(common.timed(lambda: common.pyav_decode_floor(aus, args.thread_count))[1])

    base_fps = len(aus) / statistics.median(samples["none"])
    table = common.Table(f"StreamDecoder threading, {width}x{height}, {len(aus)} AUs, thread_count="
                         f"{args.thread_count}, {args.repeats} repeats",
                         ["threads", "fps (median)", "x none", "ms/frame", "cpu ms/frame", "delay median", "delay max",
                          "same MVs+luma as none"])
    results = {}
    for m in MODES:
        fps = len(aus) / statistics.median(samples[m])
        same = same_mvs_and_luma(frames[m], frames["none"])
        cpu_ms = 1e3 * statistics.median(cpu[m]) / len(aus)
        results[m] = {"fps_median": fps, "ratio_vs_none": common.ratio(fps, base_fps), "cpu_ms_per_frame": cpu_ms,
                      "decode": common.summary_ms(samples[m]), "delay_aus_median": statistics.median(delays[m]),
                      "delay_aus_max": max(delays[m]), "identical_to_none": same}
        table.add(m, fps, results[m]["ratio_vs_none"], 1e3 / fps, cpu_ms, results[m]["delay_aus_median"],
                  results[m]["delay_aus_max"], same)
    floor_fps = len(aus) / statistics.median(floor)
    table.add("bare PyAV, frame", floor_fps, common.ratio(floor_fps, base_fps), 1e3 / floor_fps, None, None, None,
              None)
    results["pyav_floor_frame"] = {"fps_median": floor_fps, "ratio_vs_none": common.ratio(floor_fps, base_fps),
                                   "decode": common.summary_ms(floor)}
    print(table)
    name = "decoder_threads" if args.size == "1280x720" else f"decoder_threads_{args.size}"
    out = common.write_results(name, {
        "clip": {"path": str(path.name), "width": width, "height": height, "aus": len(aus)},
        "thread_count": args.thread_count, "repeats": args.repeats, "modes": results,
        "load_average_before": load_before, "load_average_after": common.load_average()})
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
