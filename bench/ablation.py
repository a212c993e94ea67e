"""The paper's codec-vs-uniform ablation at toy scale: two ov2-toy models, same recipe, seed and token budget, one
trained on codec windows and one on uniform windows at matched canvases, scored on the same held-out clips.

    python bench/ablation.py [--steps-a N --steps-b N] [--scenes N]

Windows: groups of 8 frames, 4 canvases each, one group per window (codec: the group's I-frame + 3 P-canvases of
the best blocks of its 7 P-frames; uniform: 4 of its 8 frames whole), so both spend exactly 80 tokens per window.
Held-out scenes always contain a jumping object (cycle starts labelled as in JumpScore). Each model is replayed with
its own recorded tokenizer settings (``ov2-ros replay`` path) and scored by ``ov2-ros eval``'s scoring: cycle-start
mAP (JumpScore), span tIoU, track point-in-box F1. Writes bench/results/ablation.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO_ROOT, Table, write_results  # noqa: E402

ABLATION_TOKENIZER = (("min_group_frames", 8), ("max_group_frames", 8), ("uniform_group_frames", 8))
METRICS = (("jump", "jumpscore_map", "cycle-start mAP (JumpScore)"), ("ground", "miou", "span tIoU"),
           ("track", "point_f1", "track point-in-box F1"), ("track", "point_error_median_px", "track error px"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps-a", type=int, default=150)
    p.add_argument("--steps-b", type=int, default=300)
    p.add_argument("--scenes-a", type=int, default=60)
    p.add_argument("--scenes-b", type=int, default=80)
    p.add_argument("--heldout", type=int, default=3, help="held-out scenes")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", type=Path, default=REPO_ROOT / "build" / "ablation")
    a = p.parse_args(argv)

    from ov2_ros.train.evalset import write_eval_set
    from ov2_ros.train.heldout import evaluate_model
    from ov2_ros.train.toy import HELD_OUT, ToyRecipe, train_toy

    gt = write_eval_set(a.work / "heldout", list(HELD_OUT)[-a.heldout:])
    runs = {}
    for mode in ("codec", "uniform"):
        t0 = time.perf_counter()
        later = {f"steps_{stage}": 0 for stage, *_ in ToyRecipe().stages() if stage not in ("a", "b")}  # A+B
        recipe = ToyRecipe(mode=mode, steps_a=a.steps_a, steps_b=a.steps_b, scenes_a=a.scenes_a,
                           scenes_b=a.scenes_b, threads=a.threads, tokenizer=ABLATION_TOKENIZER, **later)
        train_toy(a.work / mode, recipe, progress=False)
        train_s = time.perf_counter() - t0
        held = evaluate_model(str(a.work / mode / "stage_b" / "model"), gt, gt.parent, a.work / f"eval_{mode}",
                              mode=mode)
        runs[mode] = {"train_s": train_s, "parse_rate": held["parse_rate"], "tasks": held["tasks"],
                      "recipe": {"steps_a": a.steps_a, "steps_b": a.steps_b, "scenes_a": a.scenes_a,
                                 "scenes_b": a.scenes_b, "tokenizer": dict(ABLATION_TOKENIZER)}}
    table = Table("codec vs uniform windows at toy scale (same recipe, seed, 80 tokens per window)",
                  ["metric", "codec", "uniform", "codec - uniform"])
    for task, key, label in METRICS:
        vals = [runs[m]["tasks"].get(task, {}).get(key) for m in ("codec", "uniform")]
        diff = vals[0] - vals[1] if None not in vals else None
        table.add(label, *(f"{v:.3f}" if v is not None else "-" for v in (*vals, diff)))
    table.add("answers that parse", *(f"{runs[m]['parse_rate']:.3f}" for m in ("codec", "uniform")), "")
    print(table.render())
    write_results("ablation", {"runs": runs, "heldout_scenes": list(HELD_OUT)[-a.heldout:],
                               "note": "toy models (1.7M params) on synthetic shapes; says nothing direct about "
                                       "the 8B release (see README)"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
