"""Held-out evaluation through the same path and scoring as ``ov2-ros replay`` + ``ov2-ros eval``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ov2_ros.eval.annotations import load_annotations
from ov2_ros.train.annotated import find_video


def evaluate_model(model: str, annotations: str | Path, data_dir: str | Path, out: str | Path,
                   mode: str = "codec", segment: bool = False, segment_model: str = "tiny-random",
                   max_new_tokens: int = 160) -> dict:
    """Replay every annotated bag with ``model``, score it, and write ``out/heldout.json``: per video metrics, the
    per-task means, and the share of answers that parse."""
    from ov2_ros.eval.replay import ReplayConfig, replay_bag
    from ov2_ros.eval.scoring import aggregate, evaluate, json_metrics

    ann = load_annotations(annotations)
    out = Path(out)
    per_video, by_task, answers, parsed = {}, {}, 0, 0
    for gt in ann.videos:
        bag = find_video(Path(data_dir), gt.name)
        cfg = ReplayConfig(query=gt.query, model=model, mode=mode, segment=segment and gt.task == "track",
                           segment_model=segment_model, max_new_tokens=max_new_tokens)
        replay_dir = out / gt.name
        results = replay_bag(bag, replay_dir, cfg, progress=False)
        ev = evaluate(results, gt, replay_dir)
        per_video[gt.name] = json_metrics(ev.metrics)
        by_task.setdefault(gt.task, []).append(ev)
        for _, answer in results.answers():
            answers += 1
            parsed += not answer.errors
    summary = {"model": model, "mode": mode, "videos": len(per_video),
               "parse_rate": parsed / answers if answers else 0.0, "answers": answers,
               "tasks": {t: json_metrics(aggregate(evs)) for t, evs in by_task.items()},
               "per_video": per_video}
    if "jump" in by_task:
        summary["tasks"]["jump"]["jumpscore_map"] = float(np.mean([e.metrics["jumpscore"] for e in by_task["jump"]]))
    out.mkdir(parents=True, exist_ok=True)
    (out / "heldout.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def sam2_mean_j(model: str, seeds, num_frames: int = 16) -> dict:
    """Mean J of the streaming ``MaskTracker`` on held-out scenes: every object prompted once (one point at the
    median of its visible mask, on the first frame it is visible), then tracked from memory; J over the frames from
    each object's prompt on."""
    from ov2_ros.codec.synth import scene_frames
    from ov2_ros.eval.metrics import jaccard
    from ov2_ros.segment import MaskTracker

    per_scene = {}
    for seed in seeds:
        frames, objects, masks, _ = scene_frames(int(seed), num_frames=num_frames)
        js, first = [], {}
        with MaskTracker(model=model) as tracker:
            for j in range(len(objects)):
                seen = np.flatnonzero(masks[:, j].any(axis=(1, 2)))
                if len(seen):
                    first[j] = int(seen[0])
                    ys, xs = np.nonzero(masks[first[j], j])
                    tracker.add_points(first[j], j + 1, [[float(np.median(xs)), float(np.median(ys))]], [1])
            for i, rgb in enumerate(frames):
                out = tracker.push(i, rgb)
                js += [jaccard(out[j + 1].mask, masks[i, j]) for j, f in first.items() if i >= f and j + 1 in out]
        per_scene[int(seed)] = float(np.mean(js))
    return {"model": model, "frames": num_frames, "mean_j": float(np.mean(list(per_scene.values()))),
            "per_scene": per_scene}
