"""Tokenizer benchmarks (issue 2): is the streaming codec tokenizer fast enough, and do its tokens land on events?

Run: ``make bench-tokenizer`` (or ``.venv/bin/python bench/tokenizer.py [--repeats N] [--quick]``). Prints tables and
writes ``bench/results/tokenizer.json``. Every comparison is against a baseline measured in the same run:

1. throughput (frames/s) of ``CodecTokenizer.push`` over every AU + ``flush`` at 720p and 1080p (default config: the
   official structure; and the seed's every-frame structure), vs the PyAV
   decode+MV floor (``common.pyav_decode_floor``: export_mvs, Y-plane view and MV array per frame, nothing else);
2. wall time of ``ov2-ros tokenize --canvases 32`` vs the official offline tool ``cv-preinfer`` (codec-video-prep
   0.2.5, in ``.venv-bench``) on the same files, both as command lines that write their canvases;
3. per-AU ``push`` latency p50/p99 at 1080p;
4. event recall, codec vs uniform sampling at equal canvas budgets, on clips whose events are known.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (bench/ is a folder of scripts, not a package)

from ov2_ros.codec.source import iter_access_units  # noqa: E402
from ov2_ros.codec.tokenizer import CodecTokenizer, tokenize_file  # noqa: E402
from ov2_ros.codec.types import TokenizerConfig  # noqa: E402

REFERENCE_VENV = common.REPO_ROOT / ".venv-bench"
REFERENCE_ARGS = ["--num_sampled_frames", "256", "--grouping_mode", "readiness", "--group_size", "32",
                  "--images_per_group", "4", "--patch", "14", "--max_pixels", "150000"]
ONSET_TOLERANCE = 2          # an onset is recalled when a selected frame lies within +-2 frames of it


# ---------------------------------------------------------------------------------------------------------------
# Clips
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EventTruth:
    """Known events of a clip: ``onsets`` are frames where something starts (a shot cut, motion starting);
    ``intervals`` are [start, end) frame spans where something happens."""

    onsets: tuple[int, ...]
    intervals: tuple[tuple[int, int], ...]


def moving_scene_truth(num_frames: int = 280) -> EventTruth:
    """Onsets of ``common.moving_scene_frames``: camera starts panning, objects start moving, the cut."""
    t_pan, t_objects, t_cut = num_frames // 5, num_frames * 9 // 20, num_frames * 5 // 7
    return EventTruth(onsets=(t_pan, t_objects, t_cut),
                      intervals=((t_pan, t_objects), (t_objects, t_cut), (t_cut, t_cut + 3)))


def load_aus(path: Path) -> list[tuple[bytes, float]]:
    """Every (Annex-B access unit, seconds) of a file, read once so that the timed loops do no file I/O."""
    return list(iter_access_units(path))


# ---------------------------------------------------------------------------------------------------------------
# 1 + 3. Throughput vs the decode floor, per-AU latency
# ---------------------------------------------------------------------------------------------------------------

def stream_tokenizer(aus: list[tuple[bytes, float]], config: TokenizerConfig):
    """Push every AU (stamped with its file time) through a fresh ``CodecTokenizer`` as a live node would, then
    flush. Returns (the tokenizer's stats: frames, groups, decode/tokenize seconds; wall seconds of each push)."""
    tokenizer = CodecTokenizer(config)
    latencies = []
    clock = time.perf_counter
    for au, seconds in aus:
        t0 = clock()
        tokenizer.push(au, seconds)
        latencies.append(clock() - t0)
    tokenizer.flush()
    return tokenizer.stats, latencies


def bench_throughput(clips: dict[str, Path], repeats: int, config: TokenizerConfig = TokenizerConfig()
                     ) -> tuple[dict, dict]:
    """Median frames/s of the floor and of the tokenizer per clip, alternating runs so load drifts hit both."""
    results, latencies_by_clip = {}, {}
    for name, path in clips.items():
        aus = load_aus(path)
        floor_s, tok_s, floor_cpu, tok_cpu, latencies, floor_latencies = [], [], [], [], [], []
        bare = [au for au, _ in aus]
        frames_floor = common.pyav_decode_floor(bare)        # warm-up: page cache, codec init
        frames_tok = stream_tokenizer(aus, config)[0].frames
        stats = []
        for _ in range(repeats):
            _, wall, cpu = common.timed(lambda: common.pyav_decode_floor(bare, latencies=floor_latencies))
            floor_s.append(wall)
            floor_cpu.append(cpu)
            (st, lat), wall, cpu = common.timed(lambda: stream_tokenizer(aus, config))
            tok_s.append(wall)
            tok_cpu.append(cpu)
            stats.append(st)
            latencies.extend(lat)
        floor_fps = frames_floor / np.median(floor_s)
        tok_fps = frames_tok / np.median(tok_s)
        results[name] = {
            "path": path.name, "aus": len(aus), "frames": frames_tok, "frames_floor": frames_floor,
            "floor": {"fps": floor_fps, **common.summary_ms(floor_s), "cpu_ms_median": common.median_ms(floor_cpu)},
            "tokenizer": {"fps": tok_fps, **common.summary_ms(tok_s), "cpu_ms_median": common.median_ms(tok_cpu),
                          "groups": stats[0].groups, "canvases": stats[0].canvases,
                          "decode_ms_median": common.median_ms([x.decode_s for x in stats]),
                          "tokenize_ms_median": common.median_ms([x.tokenize_s for x in stats])},
            "ratio_vs_floor": common.ratio(tok_fps, floor_fps),
            # best-of-repeats ratio: on a shared machine the fastest run is the one least disturbed by others
            "ratio_vs_floor_best": common.ratio(min(floor_s), min(tok_s)),
            # CPU-time ratio (all threads): the work done, whatever the waiting for a core
            "ratio_vs_floor_cpu": common.ratio(np.median(floor_cpu), np.median(tok_cpu)),
        }
        latencies_by_clip[name] = {"push": latencies, "floor_decode": floor_latencies}
    return results, latencies_by_clip


# ---------------------------------------------------------------------------------------------------------------
# 2. Official offline tool vs ours, both as command lines
# ---------------------------------------------------------------------------------------------------------------

def reference_cli() -> tuple[Path | None, str | None]:
    """(cv-preinfer path, None) or (None, why it cannot run)."""
    exe = REFERENCE_VENV / "bin" / "cv-preinfer"
    if not exe.exists():
        return None, f"{exe} missing: run `make bench-tokenizer` (installs requirements-bench.txt into .venv-bench)"
    missing = [b for b in ("ffmpeg", "ffprobe") if shutil.which(b) is None]
    if missing:
        return None, f"cv-preinfer shells out to {' and '.join(missing)}, not on PATH (Debian package ffmpeg)"
    return exe, None


def reference_versions() -> dict:
    """Versions that the reference's numbers depend on: the package, its numpy/opencv, and the ffmpeg binary."""
    code = ("import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
            "('codec-video-prep', 'numpy', 'opencv-python-headless')}))")
    out: dict = {}
    done = subprocess.run([str(REFERENCE_VENV / "bin" / "python"), "-c", code], capture_output=True, text=True)
    if done.returncode == 0:
        out.update(json.loads(done.stdout))
    if shutil.which("ffmpeg"):
        out["ffmpeg"] = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    return out


def reference_selection(out_dir: Path) -> dict:
    """Canvas count and source frames with >=1 patch on the reference tool's canvases (from its own outputs)."""
    meta = json.loads((out_dir / "meta.json").read_text())
    frame_ids = np.load(out_dir / "frame_ids.npy")
    positions = np.load(out_dir / "src_patch_position.npy")      # (P, 3): source frame, patch row, patch col
    t = positions[:, 0]
    t = t[t >= 0]             # frame indices already (not sample indices: checked against frame_ids.npy)
    return {"canvases": int(meta["total_images"]), "groups": int(meta["num_groups"]),
            "canvas_patches": len(positions) // max(1, int(meta["total_images"])),
            "sampled_frames": int(len(frame_ids)), "positions_t": t.astype(np.int64)}


MAX_ATTEMPTS = 3       # a crashed run is retried; every failure is recorded in the JSON


def failure_text(done: subprocess.CompletedProcess) -> str:
    code = done.returncode
    how = f"killed by signal {-code}" if code < 0 else f"exit {code}"
    return f"{how}: {done.stderr.strip()[-600:]}" if done.stderr.strip() else how


def inner_seconds(key: str, stdout: str, out_dir: Path) -> float:
    """The total a tool reports for its own work: ours in the ``--json`` line, the reference in its meta.json."""
    if key == "ours":
        return float(json.loads(stdout.strip().splitlines()[-1])["timings"]["total_s"])
    return float(json.loads((out_dir / "meta.json").read_text())["timings"]["total"])


def bench_vs_reference(clips: dict[str, Path], repeats: int, canvases: int = 32) -> dict:
    """Median wall time of both command lines per clip; runs alternate so load drifts hit all of them.

    The reference runs twice per repeat: with the flags of the issue (its default ``--thread_count 1``), and with
    ``--thread_count 2``, as many decoder threads as ours uses, so the speedup is not an artefact of threads.
    """
    exe, why = reference_cli()
    ours_cmd = [str(Path(sys.executable).parent / "ov2-ros"), "tokenize", "CLIP", "--canvases", str(canvases),
                "--out", "DIR", "--json"]
    commands = {"ours": ours_cmd}
    if exe is not None:
        ref_cmd = [str(exe), "--video", "CLIP", "--out_dir", "DIR", *REFERENCE_ARGS]
        commands.update({"reference": ref_cmd, "reference_2_threads": [*ref_cmd, "--thread_count", "2"]})
    out: dict = {"reference": "codec-video-prep==0.2.5 (cv-preinfer)", "skipped": why, "clips": {},
                 "reference_versions": reference_versions() if exe is not None else None,
                 "commands": {k: " ".join(Path(c).name if i == 0 else c for i, c in enumerate(v))
                              for k, v in commands.items()}}
    for name, path in clips.items():
        row: dict = {"path": path.name}
        samples: dict[str, list[float]] = {k: [] for k in commands}
        inner: dict[str, list[float]] = {k: [] for k in commands}
        cpu: dict[str, list[float]] = {k: [] for k in commands}
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(repeats + 1):                     # run 0 is a warm-up (page cache, .pyc)
                for key, template in commands.items():
                    if f"{key}_error" in row:
                        continue
                    for attempt in range(MAX_ATTEMPTS):
                        d = Path(tmp) / f"{key}{r}.{attempt}"
                        cmd = [str(path) if c == "CLIP" else str(d) if c == "DIR" else c for c in template]
                        done, secs, cpu_s = common.run_command_timed(cmd)
                        if done.returncode == 0:
                            break
                        # cv-preinfer --thread_count 2 now and then dies of SIGBUS (exit -7) with no message
                        row.setdefault(f"{key}_failures", []).append(failure_text(done))
                    if done.returncode != 0:
                        if key == "ours":
                            raise RuntimeError(f"ov2-ros tokenize failed on {path}: {failure_text(done)}")
                        row[f"{key}_error"] = f"gave up after {MAX_ATTEMPTS} failed attempts in a row"
                        continue
                    if r == 0:
                        row[f"{key}_canvases"] = (json.loads(done.stdout.strip().splitlines()[-1])["canvases"]
                                                  if key == "ours" else reference_selection(d)["canvases"])
                    else:
                        samples[key].append(secs)
                        cpu[key].append(cpu_s)
                        inner[key].append(inner_seconds(key, done.stdout, d))
        for key, secs in samples.items():
            if secs:
                # in_process_ms: the tool's own total (no interpreter start-up), from its --json line / meta.json
                row[key] = {**common.summary_ms(secs), "in_process_ms": common.median_ms(inner[key]),
                            "cpu_ms_median": common.median_ms(cpu[key])}
        for key in ("reference", "reference_2_threads"):
            if key in row:
                row[f"speedup_vs_{key}"] = common.ratio(row[key]["median_ms"], row["ours"]["median_ms"])
                row[f"speedup_vs_{key}_best"] = common.ratio(row[key]["min_ms"], row["ours"]["min_ms"])
                row[f"speedup_vs_{key}_cpu"] = common.ratio(row[key]["cpu_ms_median"], row["ours"]["cpu_ms_median"])
        out["clips"][name] = row
    return out


# ---------------------------------------------------------------------------------------------------------------
# 4. Event recall at equal canvas budgets
# ---------------------------------------------------------------------------------------------------------------

def selection_metrics(positions_t: np.ndarray, truth: EventTruth, num_frames: int, canvas_patches: int) -> dict:
    """Recall of onsets and where the tokens went, from the source frame of every patch (-1: padding).

    - ``onset_recall``: share of onsets with a selected frame (>=1 patch) within +-ONSET_TOLERANCE frames;
    - ``onset_recall_quarter_canvas``: the stricter share of onsets whose +-ONSET_TOLERANCE frames hold at least a
      quarter canvas of patches together (a few stray blocks do not show the model an event);
    - ``token_share_in_events``: share of patches whose frame lies in an event interval, next to
      ``frame_share_in_events``, the share a sampler blind to content would get on average;
    - ``token_share_near_onsets``: share of patches within +-ONSET_TOLERANCE frames of an onset.
    """
    t = positions_t[(positions_t >= 0) & (positions_t < num_frames)]
    per_frame = np.bincount(t, minlength=num_frames)
    selected = np.flatnonzero(per_frame)
    near = [per_frame[max(0, o - ONSET_TOLERANCE):o + ONSET_TOLERANCE + 1].sum() for o in truth.onsets]
    hit = [n > 0 for n in near]
    in_event = np.zeros(num_frames, bool)
    for s, e in truth.intervals:
        in_event[max(0, s):min(num_frames, e)] = True
    near_onset = np.zeros(num_frames, bool)
    for o in truth.onsets:
        near_onset[max(0, o - ONSET_TOLERANCE):o + ONSET_TOLERANCE + 1] = True
    return {
        "onset_recall": float(np.mean(hit)) if hit else None,
        "onset_recall_quarter_canvas": float(np.mean([n >= canvas_patches / 4 for n in near])) if near else None,
        "onsets_missed": [o for o, h in zip(truth.onsets, hit) if not h],
        "patches_near_each_onset": [int(n) for n in near],
        "selected_frames": int(selected.size),
        "patches": int(t.size),
        "token_share_in_events": float(in_event[t].mean()) if t.size else None,
        "frame_share_in_events": float(in_event.mean()),
        "token_share_near_onsets": float(near_onset[t].mean()) if t.size else None,
        "frame_share_near_onsets": float(near_onset.mean()),
    }


SELECTORS = {"codec": TokenizerConfig(), "codec_seed": TokenizerConfig(structure="seed"),
             "uniform": TokenizerConfig(mode="uniform")}


def tokenize_positions(path: Path, mode: str, canvases: int) -> tuple[np.ndarray, int, int, int]:
    """(source frame of every patch, canvases made, patches per canvas, frames in the file) for one file, selector
    (``SELECTORS``: codec = the official structure, codec_seed = the seed's every-frame one) and canvas budget."""
    result = tokenize_file(path, SELECTORS[mode], canvases=canvases)
    made = len(result.canvases)
    return (result.patch_positions[:, 0].astype(np.int64), made, result.canvases[0].num_patches,
            int(result.frames_total))


def recall_gain_points(row: dict) -> float:
    """Codec minus uniform onset recall, in points (rounded so that 0.8 vs 1.0 reads as 20, not 19.999...)."""
    return round(100 * (row["codec"]["onset_recall"] - row["uniform"]["onset_recall"]), 6)


def bench_recall(recall_clips: dict[str, tuple[Path, EventTruth]], budgets: tuple[int, ...],
                 with_reference: bool) -> dict:
    exe, why = reference_cli() if with_reference else (None, "not requested")
    out: dict = {"onset_tolerance_frames": ONSET_TOLERANCE, "budgets_canvases": list(budgets), "clips": {}}
    if exe is None:
        out["reference_skipped"] = why
    for name, (path, truth) in recall_clips.items():
        per_clip: dict = {"path": path.name, "onsets": list(truth.onsets),
                          "intervals": [list(i) for i in truth.intervals]}
        for budget in budgets:
            row: dict = {}
            for mode in SELECTORS:
                positions_t, made, canvas_patches, frames = tokenize_positions(path, mode, budget)
                row[mode] = {"canvases": made, **selection_metrics(positions_t, truth, frames, canvas_patches)}
            row["recall_gain_points"] = recall_gain_points(row)
            per_clip[str(budget)] = row
        if exe is not None:
            with tempfile.TemporaryDirectory() as tmp:
                done = subprocess.run([str(exe), "--video", str(path), "--out_dir", tmp, *REFERENCE_ARGS],
                                      capture_output=True, text=True)
                if done.returncode == 0:
                    sel = reference_selection(Path(tmp))
                    per_clip["reference"] = {"canvases": sel["canvases"], "groups": sel["groups"],
                                             **selection_metrics(sel["positions_t"], truth, frames,
                                                                 sel["canvas_patches"])}
                else:
                    per_clip["reference"] = {"error": done.stderr.strip()[-800:]}
        out["clips"][name] = per_clip
    out["pooled"] = pooled_recall(out["clips"], budgets)
    return out


def pooled_recall(clips: dict, budgets: tuple[int, ...]) -> dict:
    """Onset recall over the onsets of all clips together, per budget and selector (one clip has only 2-6 onsets)."""
    pooled = {}
    for budget in budgets:
        row = {}
        for mode in SELECTORS:
            onsets = sum(len(c["onsets"]) for c in clips.values())
            missed = sum(len(c[str(budget)][mode]["onsets_missed"]) for c in clips.values())
            strict = sum(c[str(budget)][mode]["onset_recall_quarter_canvas"] * len(c["onsets"]) for c in clips.values())
            row[mode] = {"onsets": onsets, "onset_recall": 1 - missed / onsets,
                         "onset_recall_quarter_canvas": strict / onsets}
        row["recall_gain_points"] = recall_gain_points(row)
        pooled[str(budget)] = row
    return pooled


# ---------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------

def print_speed(throughput: dict, latency: dict, label: str = "official structure, default config") -> None:
    t = common.Table(f"Throughput: streaming tokenizer ({label}) vs PyAV decode+MV floor (frames/s, median)",
                     ["clip", "frames", "groups", "floor fps", "tokenizer fps", "ratio (goal >= 0.85)",
                      "ratio, best runs", "ratio, CPU time"])
    for name, r in throughput.items():
        t.add(name, r["frames"], r["tokenizer"]["groups"], r["floor"]["fps"], r["tokenizer"]["fps"],
              r["ratio_vs_floor"], r["ratio_vs_floor_best"], r["ratio_vs_floor_cpu"])
    print(t, end="\n\n")
    if not latency:
        return
    t = common.Table("Per-AU latency (ms, every AU of every repeat): tokenizer push vs the floor's decode call",
                     ["clip", "AUs", "push p50", "push p90", "push p99 (goal < 20 at 1080p)", "push max",
                      "floor p50", "floor p99"])
    for name, s in latency.items():
        p, f = s["push"], s["floor_decode"]
        t.add(name, p["n"], p["median_ms"], p["p90_ms"], p["p99_ms"], p["max_ms"], f["median_ms"], f["p99_ms"])
    print(t, end="\n\n", flush=True)


def print_reference(reference: dict) -> None:
    title = "Wall time, whole file at a 32-canvas budget: ov2-ros tokenize vs cv-preinfer (ms, median)"
    t = common.Table(title, ["clip", "ours ms", "ours canvases", "cv-preinfer ms", "its canvases",
                             "speedup (goal >= 2)", "speedup, best runs", "speedup, CPU time",
                             "cv-preinfer 2 threads ms", "speedup vs 2 threads"])
    for name, r in reference["clips"].items():
        t.add(name, r["ours"]["median_ms"], r.get("ours_canvases"), r.get("reference", {}).get("median_ms"),
              r.get("reference_canvases"), r.get("speedup_vs_reference"), r.get("speedup_vs_reference_best"),
              r.get("speedup_vs_reference_cpu"), r.get("reference_2_threads", {}).get("median_ms"),
              r.get("speedup_vs_reference_2_threads"))
    print(t)
    for name, r in reference["clips"].items():
        for key in ("reference", "reference_2_threads"):
            if r.get(f"{key}_failures"):
                print(f"{key} on {name}: {len(r[f'{key}_failures'])} failed run(s), retried: "
                      f"{sorted(set(r[f'{key}_failures']))}")
    if reference.get("skipped"):
        print(f"cv-preinfer skipped: {reference['skipped']}")
    print(flush=True)


def print_recall(recall: dict) -> None:
    t = common.Table(f"Event recall at equal canvas budgets (onset hit if a selected frame is within "
                     f"+-{ONSET_TOLERANCE} frames)",
                     ["clip", "canvases", "selector", "recall", "recall (>=1/4 canvas)", "missed", "frames used",
                      "token share in events", "frame share in events"])
    rows = []
    for name, per_clip in recall["clips"].items():
        rows += [(name, per_clip[str(b)][mode]["canvases"], mode, per_clip[str(b)][mode])
                 for b in recall["budgets_canvases"] for mode in SELECTORS]
        ref = per_clip.get("reference")
        if ref and "error" not in ref:
            rows.append((name, ref["canvases"], "cv-preinfer", ref))
    for name, canvases, selector, r in rows:
        t.add(name, canvases, selector, r["onset_recall"], r["onset_recall_quarter_canvas"], r["onsets_missed"],
              r["selected_frames"], r["token_share_in_events"], r["frame_share_in_events"])
    print(t, end="\n\n")
    t = common.Table("Onset recall pooled over all clips", ["canvases", "selector", "onsets", "recall",
                                                            "recall (>=1/4 canvas)"])
    for budget, row in recall["pooled"].items():
        for mode in SELECTORS:
            r = row[mode]
            t.add(budget, mode, r["onsets"], r["onset_recall"], r["onset_recall_quarter_canvas"])
    print(t, end="\n\n", flush=True)


def goal_checks(throughput: dict, latency: dict, reference: dict, recall: dict) -> dict:
    """Each issue-2 goal with the measured value and whether it was met (None: not measured in this run)."""
    def met(value, ok):
        return {"value": value, "met": None if value is None else bool(ok(value))}

    # The speed goals are set for 720p/1080p (bikes.mp4 is 640x272: its floor is so fast that any fixed per-frame
    # work at canvas size dominates; it is reported, not judged).
    goals = {f"throughput_ratio_vs_floor>=0.85 [{n}]": met(r["ratio_vs_floor"], lambda v: v >= 0.85)
             for n, r in throughput.items() if n.endswith(("720p", "1080p"))}
    goals.update({f"push_p99_ms<20 [{n}]": met(s["push"]["p99_ms"], lambda v: v < 20)
                  for n, s in latency.items() if n.endswith("1080p")})
    goals.update({f"speedup_vs_cv_preinfer>=1.5 [{n}]": met(r.get("speedup_vs_reference"), lambda v: v >= 1.5)
                  for n, r in reference.get("clips", {}).items()})
    # issue 9: no loss where the codec path already won (the seed structure's pooled gains before the change)
    before = {"16": 40.0, "32": 20.0}
    for budget, row in recall.get("pooled", {}).items():
        goals[f"recall_gain_points>={before.get(budget, 20)} (seed's, before issue 9) [all onsets, {budget}]"] = met(
            row["recall_gain_points"], lambda v, b=before.get(budget, 20.0): v >= b)
    return goals


PARTS = ("speed", "reference", "recall")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement (medians reported)")
    parser.add_argument("--quick", action="store_true",
                        help="short check of the script: 2 repeats, 720p only, no reference recall")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated subset of {','.join(PARTS)} (default: all)")
    parser.add_argument("--results-dir", type=Path, default=None,
                        help="where to write tokenizer.json (default bench/results; bench/.cache for partial runs)")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    if not parts <= set(PARTS):
        parser.error(f"--parts: unknown {sorted(parts - set(PARTS))}; choose from {','.join(PARTS)}")
    repeats = 2 if args.quick else args.repeats

    load_before = common.load_average()
    print(f"load average before: {load_before}", flush=True)
    sizes = [(1280, 720)] if args.quick else [(1280, 720), (1920, 1080)]
    bikes = common.bikes_mp4()
    speed_clips = {f"moving {h}p": common.moving_scene_clip(w, h) for w, h in sizes}
    data: dict = {"config": {"repeats": repeats, "quick": args.quick, "parts": sorted(parts),
                             "tokenizer": TokenizerConfig().__dict__},
                  "load_average_before": load_before}

    throughput, latency, reference, recall = {}, {}, {}, {}
    if "speed" in parts:
        throughput, latencies = bench_throughput({**speed_clips, "bikes.mp4": bikes}, repeats)
        latency = {name: {k: common.summary_ms(v) for k, v in lat.items()} for name, lat in latencies.items()}
        print_speed(throughput, latency)
        data.update(throughput=throughput, latency_per_au=latency)
        # the seed's every-frame structure (structure="seed"), measured the same way against the same floor
        seed, _ = bench_throughput({**speed_clips, "bikes.mp4": bikes}, max(2, repeats // 2),
                                   TokenizerConfig(structure="seed"))
        print_speed(seed, {}, "seed every-frame structure")
        data["throughput_seed_structure"] = seed
    if "reference" in parts:
        reference = bench_vs_reference({**speed_clips, "bikes.mp4": bikes}, max(1, repeats // 2 + 1))
        print_reference(reference)
        data["vs_reference"] = reference
    if "recall" in parts:
        recall_clips = {}
        for seed, lead_in in ((0, 0), (1, 5), (2, 11)):
            path, events, cuts = common.event_clip_mp4(seed=seed, lead_in=lead_in)
            onsets = tuple(sorted({s for s, _ in events} | set(cuts)))
            recall_clips[f"event s{seed}+{lead_in}"] = (path, EventTruth(onsets=onsets, intervals=events))
        cut_spans = tuple((c, c + ONSET_TOLERANCE + 1) for c in common.BIKES_CUTS)
        recall_clips["bikes.mp4"] = (bikes, EventTruth(onsets=common.BIKES_CUTS, intervals=cut_spans))
        recall_clips["moving 720p"] = (speed_clips["moving 720p"], moving_scene_truth())
        recall = bench_recall(recall_clips, (16, 32), with_reference=not args.quick)
        print_recall(recall)
        data["recall"] = recall

    goals = goal_checks(throughput, latency, reference, recall)
    t = common.Table("Goals (issues 2 and 9)", ["goal", "value", "met"])
    for goal, g in goals.items():
        t.add(goal, g["value"], g["met"])
    print(t, end="\n\n")
    data.update(goals=goals, load_average_after=common.load_average())
    # Only a full run replaces the committed result file.
    partial = args.quick or parts != set(PARTS)
    path = common.write_results("tokenizer", data, args.results_dir or (common.CACHE_DIR if partial else None))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
