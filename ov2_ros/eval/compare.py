"""The paper's ablation on the user's own data: one bag replayed in two tokenization modes at the same window
budget (same canvases, hence the same tokens per window), both scored against the same ground truth."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ov2_ros.eval.annotations import VideoAnnotation
from ov2_ros.eval.replay import ReplayConfig, pipeline_config, replay_bag
from ov2_ros.eval.report import ReportEntry, write_report
from ov2_ros.eval.scoring import evaluate, json_metrics

COMPARISON_FILE = "comparison.json"


@dataclass(frozen=True)
class Comparison:
    entries: tuple[ReportEntry, ...]
    report: Path

    @property
    def difference(self) -> dict[str, float]:
        """First mode minus second, for each metric both have."""
        a, b = (e.evaluation.metrics for e in self.entries[:2])
        return {k: a[k] - b[k] for k in sorted(a.keys() & b.keys())}

    def to_json_dict(self) -> dict[str, Any]:
        return {"modes": [e.results.mode for e in self.entries], "canvases": self.entries[0].results.canvases,
                "metrics": {e.results.mode: json_metrics(e.evaluation.metrics) for e in self.entries},
                "difference": json_metrics(self.difference), "report": str(self.report)}


def compare_modes(bag: str | Path, gt: VideoAnnotation, modes: tuple[str, str], out_dir: str | Path,
                  config: ReplayConfig, progress: bool = True, runtime: Any = None) -> Comparison:
    """Replay ``bag`` once per mode into ``out_dir/<mode>``, score both, and write the joint report and
    ``comparison.json`` into ``out_dir``."""
    if len(modes) != 2 or modes[0] == modes[1]:
        raise ValueError(f"compare needs two different modes, got {modes}")
    out_dir = Path(out_dir)
    if runtime is None:     # one model for both runs: same weights, loaded once
        from ov2_ros.pipeline import load_model_runtime

        runtime = load_model_runtime(pipeline_config(config))
    entries = []
    for mode in modes:
        replay_dir = out_dir / mode
        results = replay_bag(bag, replay_dir, replace(config, mode=mode), progress=progress, runtime=runtime)
        entries.append(ReportEntry(results, replay_dir, evaluate(results, gt, replay_dir)))
    note = (f"Same bag, same model, same window budget ({config.canvases} canvases) in both modes; "
            f"the last column is {modes[0]} minus {modes[1]}.")
    comparison = Comparison(tuple(entries), write_report(entries, gt, out_dir, note))
    (out_dir / COMPARISON_FILE).write_text(json.dumps(comparison.to_json_dict(), indent=1))
    return comparison
