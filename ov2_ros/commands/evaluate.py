"""``ov2-ros eval``: score a replay against annotations.json, or compare two tokenization modes on one bag.

    ov2-ros eval RESULTS --gt annotations.json [--out DIR]
    ov2-ros eval --compare codec uniform --bag BAG --gt annotations.json [--query Q] [--canvases N] [--out DIR]

Both print a metric table and write report.html (+ PNGs) and metrics.json / comparison.json.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from ov2_ros.commands.replay import add_replay_arguments, replay_config

HELP = "score replay results against annotations.json (JumpScore, grounding, tracks, J&F, latency), or --compare modes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", type=Path, nargs="*",
                        help="replay folders (or their results.json); several give per-video scores and the mean "
                             "(JumpScore mAP = the mean of the videos' JumpScores)")
    parser.add_argument("--gt", type=Path, required=True,
                        help="annotations.json (schema: README.md, section Evaluation)")
    parser.add_argument("--compare", nargs=2, metavar=("MODE_A", "MODE_B"), choices=("codec", "uniform", "hybrid"),
                        help="replay --bag in both modes at the same --canvases budget and report A - B")
    parser.add_argument("--bag", type=Path, help="with --compare: the rosbag2 folder to replay")
    parser.add_argument("--out", type=Path, default=None,
                        help="report folder (default: RESULTS/report, or BAG_compare with --compare)")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON line instead of a table")
    add_replay_arguments(parser.add_argument_group("replay options (with --compare; --query defaults to the "
                                                   "annotation's query)"), query_required=False)


def format_table(columns: dict[str, dict[str, float]], diff: bool = False) -> str:
    """Metrics as rows, one column per mode (and A - B when ``diff``)."""
    names = sorted({k for c in columns.values() for k in c})
    heads = list(columns) + (["diff"] if diff else [])
    rows = [["metric", *heads]]
    for k in names:
        vals = [columns[c].get(k) for c in columns]
        if diff:
            vals.append(vals[0] - vals[1] if None not in vals[:2] else None)
        rows.append([k, *("-" if v is None else f"{v:.4g}" if math.isfinite(v) else str(v) for v in vals)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in rows)


def run(args: argparse.Namespace) -> int:
    from ov2_ros.eval.annotations import load_annotations
    from ov2_ros.eval.errors import EvalError

    annotations = load_annotations(args.gt)
    if args.compare:
        if args.bag is None or args.results:
            raise EvalError("--compare replays a bag: give --bag BAG and no RESULTS")
        return _compare(args, annotations)
    if not args.results:
        raise EvalError("give RESULTS (replay folders) or --compare MODE_A MODE_B --bag BAG")
    if len(args.results) > 1 and args.out is not None:
        raise EvalError("--out names one report folder; with several RESULTS each report goes into its replay folder")
    return _evaluate(args, annotations)


def _evaluate(args: argparse.Namespace, annotations) -> int:
    from ov2_ros.eval.scoring import aggregate, json_metrics

    evaluations, reports = [], []
    for path in args.results:
        evaluation, report = _evaluate_one(path, annotations, args.out)
        evaluations.append(evaluation)
        reports.append(report)
    columns = {f"{e.name} [{e.mode}]": e.metrics for e in evaluations}
    if len(evaluations) > 1:
        columns["mean"] = aggregate(evaluations)
    if args.json:
        print(json.dumps({k: json_metrics(v) for k, v in columns.items()}, allow_nan=False))
    else:
        print(format_table(columns))
        print("\n".join(f"report: {r}" for r in reports))
    return 0


def _evaluate_one(path: Path, annotations, out: Path | None):
    """Score one replay folder; write its report.html, PNGs and metrics.json. Returns (Evaluation, report path)."""
    from ov2_ros.eval.report import ReportEntry, write_report
    from ov2_ros.eval.results import load_results
    from ov2_ros.eval.scoring import evaluate, json_metrics

    results = load_results(path)
    replay_dir = path if path.is_dir() else path.parent
    gt = annotations.for_name(results.name)
    evaluation = evaluate(results, gt, replay_dir)
    out = out or replay_dir / "report"
    report = write_report([ReportEntry(results, replay_dir, evaluation)], gt, out)
    (out / "metrics.json").write_text(json.dumps({"name": results.name, "mode": results.mode, "task": gt.task,
                                                  "metrics": json_metrics(evaluation.metrics)}, indent=1,
                                                 allow_nan=False))
    return evaluation, report
    return 0


def _compare(args: argparse.Namespace, annotations) -> int:
    from ov2_ros.eval.compare import compare_modes

    gt = annotations.for_name(args.bag.resolve().name)
    out = args.out or args.bag.parent / f"{args.bag.name}_compare"
    comparison = compare_modes(args.bag, gt, tuple(args.compare), out,
                               replay_config(args, args.compare[0], args.query or gt.query), progress=not args.quiet)
    if args.json:
        print(json.dumps(comparison.to_json_dict()))
    else:
        print(format_table({e.results.mode: e.evaluation.metrics for e in comparison.entries}, diff=True))
        print(f"report: {comparison.report}")
    return 0
