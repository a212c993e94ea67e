"""``report.html`` + PNGs (matplotlib Agg) for one replay or a codec-vs-uniform comparison.

Plots: GT vs predicted events on a timeline, per-frame point errors, a mask overlay strip, the token allocation
over time, and the metric table (with the difference column when two modes are compared).
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ov2_ros.eval.annotations import VideoAnnotation
from ov2_ros.eval.results import ReplayResults
from ov2_ros.eval.scoring import Evaluation, predicted_mask, predicted_points

MODE_COLOURS = {"codec": "tab:red", "uniform": "tab:blue", "hybrid": "tab:purple"}
STRIP_FRAMES = 6


@dataclass(frozen=True)
class ReportEntry:
    """One replay in the report: its results, the folder it was written to, and its scores."""

    results: ReplayResults
    replay_dir: Path
    evaluation: Evaluation


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _times(results: ReplayResults) -> np.ndarray:
    return (np.asarray(results.frame_stamps_ns, np.int64) - results.frame_stamps_ns[0]) / 1e9


def plot_timeline(entries: list[ReportEntry], gt: VideoAnnotation, path: Path) -> Path:
    """One row for GT, one per replay: events as ticks, spans as bars, windows as thin grey bars underneath."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.7 * (len(entries) + 1)))
    rows = ["ground truth"] + [e.results.mode for e in entries]
    # white edges keep back-to-back spans (e.g. shots) apart
    ax.broken_barh([(s, max(e - s, 0.02)) for s, e in gt.spans_s], (0.6, 0.8), facecolor="tab:green",
                   edgecolor="white", linewidth=2)
    ax.vlines(gt.events_s, 0.6, 1.4, color="tab:green", lw=2)
    for i, e in enumerate(entries, start=2):
        colour = MODE_COLOURS.get(e.results.mode, "tab:gray")
        times = _times(e.results)
        for k, w in enumerate(e.results.windows):     # staggered: consecutive windows overlap
            ax.broken_barh([(times[w.start_frame], times[min(w.end_frame, len(times)) - 1] - times[w.start_frame])],
                           (i - 0.48 + 0.05 * (k % 4), 0.035), color="0.65")
        spans = e.evaluation.predicted_spans_s
        ax.broken_barh([(s, max(b - s, 0.02)) for s, b in spans], (i - 0.3, 0.6), facecolor=colour, alpha=0.8,
                       edgecolor="white", linewidth=2)
        ax.vlines(e.evaluation.predicted_events_s, i - 0.3, i + 0.3, color=colour, lw=2)
        if not spans and not e.evaluation.predicted_events_s:
            answered = sum(w.answer is not None for w in e.results.windows)
            ax.text(0.05, i, f"nothing predicted ({answered} windows answered)", va="center",
                    fontsize=8, color="0.35")
    ax.set_yticks(range(1, len(rows) + 1), rows)
    ax.set_ylim(0.3, len(rows) + 0.7)
    ax.set_xlabel("seconds since the first frame")
    ax.set_title(f"{gt.name}: {gt.query}  (grey: windows)")
    ax.set_xlim(0, max(_times(e.results)[-1] for e in entries) + 0.05)
    return _save(fig, path)


def plot_token_allocation(entries: list[ReportEntry], path: Path, onset_frames: tuple[int, ...] = ()) -> Path:
    """LLM tokens each source frame contributed, per mode; dotted lines mark GT onsets, ticks group starts."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(entries), 1, figsize=(10, 1.8 * len(entries) + 0.6), sharex=True, squeeze=False)
    for ax, e in zip(axes[:, 0], entries):
        times = _times(e.results)
        tokens = np.zeros(len(times))
        for g in e.results.groups:
            for f, n in g.tokens_per_frame.items():
                if 0 <= f < len(tokens):
                    tokens[f] += n
        colour = MODE_COLOURS.get(e.results.mode, "tab:gray")
        ax.bar(times, tokens, width=(times[1] - times[0]) if len(times) > 1 else 0.03, color=colour)
        for g in e.results.groups:
            if g.start_frame < len(times):
                ax.axvline(times[g.start_frame], color="0.6", lw=0.6)
        for f in onset_frames:
            if f < len(times):
                ax.axvline(times[f], color="tab:green", ls=":", lw=1.5)
        ax.set_ylabel(f"{e.results.mode}\ntokens")
        ax.set_title(f"{e.results.mode}: {int(tokens.sum())} tokens, {int((tokens > 0).sum())} frames selected of "
                     f"{len(times)}", fontsize=9)
    axes[-1, 0].set_xlabel("seconds since the first frame (grey: group starts, green: GT onsets)")
    return _save(fig, path)


def plot_point_errors(entries: list[ReportEntry], path: Path) -> Path | None:
    """Pixel error of the nearest predicted point at each GT-point frame (x marks: nothing predicted there)."""
    if not any(e.evaluation.point_errors_px for e in entries):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 3))
    for e in entries:
        errs = e.evaluation.point_errors_px
        frames = sorted(errs)
        colour = MODE_COLOURS.get(e.results.mode, "tab:gray")
        finite = [(f, errs[f]) for f in frames if math.isfinite(errs[f])]
        if finite:
            ax.plot(*zip(*finite), "o-", color=colour, label=e.results.mode, ms=3)
        missing = [f for f in frames if not math.isfinite(errs[f])]
        ax.plot(missing, [0] * len(missing), "x", color=colour, label=f"{e.results.mode}: no point")
    ax.set_xlabel("frame")
    ax.set_ylabel("error (px)")
    ax.set_ylim(bottom=-1)
    ax.legend(fontsize=8)
    return _save(fig, path)


def decode_frames(results: ReplayResults, frames: set[int]) -> dict[int, np.ndarray]:
    """RGB of the given source frames, decoded again from the bag through the codec layer's decoder."""
    from ov2_ros.codec.decoder import StreamDecoder
    from ov2_ros.eval.bags import access_units, read_images

    out: dict[int, np.ndarray] = {}
    codec = "hevc" if results.source_kind == "hevc" else "h264"
    with StreamDecoder(codec=codec, threads="none") as decoder:
        for au, stamp in access_units(read_images(results.bag, results.topic)):
            for f in decoder.decode(au, stamp):
                if f.index in frames:
                    out[f.index] = f.rgb()
            if len(out) == len(frames):
                break
        else:
            out.update({f.index: f.rgb() for f in decoder.flush() if f.index in frames})
    return out


def plot_mask_strip(entry: ReportEntry, gt: VideoAnnotation, path: Path) -> Path | None:
    """Up to STRIP_FRAMES frames: SAM2 mask tinted cyan, GT mask outline in green, points as crosses."""
    import cv2

    e = entry
    candidates = sorted(set(gt.masks) | set(gt.points) | {f for w in e.results.windows for f in w.mask_frames})
    if not candidates:
        return None
    picks = sorted({candidates[int(i)] for i in np.linspace(0, len(candidates) - 1, STRIP_FRAMES)})
    rgb = decode_frames(e.results, set(picks))
    points = predicted_points(e.results)
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(picks), figsize=(2.4 * len(picks), 2.4), squeeze=False)
    for ax, f in zip(axes[0], picks):
        img = rgb.get(f)
        if img is None:
            ax.set_axis_off()
            continue
        over = img.copy()
        pred = predicted_mask(e.replay_dir, f, img.shape[:2])
        over[pred] = (0.5 * over[pred] + 0.5 * np.array([0, 255, 255])).astype(np.uint8)
        if f in gt.masks:
            contours, _ = cv2.findContours(gt.load_mask(f).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(over, contours, -1, (0, 255, 0), 1)
        ax.imshow(over)
        if f in points:
            ax.plot(points[f][:, 0], points[f][:, 1], "x", color="yellow", ms=6)
        if f in gt.points:
            ax.plot(*gt.points[f], "+", color="lime", ms=8)
        ax.set_title(f"frame {f}", fontsize=8)
        ax.set_axis_off()
    fig.suptitle(f"{e.results.mode}: SAM2 mask (cyan), GT mask (green outline) and point (+), predicted points (x)",
                 fontsize=9)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def metric_table_html(entries: list[ReportEntry]) -> str:
    names = sorted({k for e in entries for k in e.evaluation.metrics})
    modes = [e.results.mode for e in entries]
    head = "".join(f"<th>{html.escape(m)}</th>" for m in modes)
    diff = len(entries) == 2
    rows = []
    for k in names:
        vals = [e.evaluation.metrics.get(k) for e in entries]
        cells = "".join(f"<td>{_fmt(v)}</td>" for v in vals)
        if diff:
            a, b = vals
            cells += f"<td>{_fmt(a - b) if a is not None and b is not None else '-'}</td>"
        rows.append(f"<tr><td>{html.escape(k)}</td>{cells}</tr>")
    diff_head = f"<th>{html.escape(modes[0])} - {html.escape(modes[1])}</th>" if diff else ""
    return f"<table><tr><th>metric</th>{head}{diff_head}</tr>{''.join(rows)}</table>"


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if math.isfinite(v) else str(v)


def write_report(entries: list[ReportEntry], gt: VideoAnnotation, out_dir: Path, note: str = "") -> Path:
    """Write ``report.html`` and its PNGs into ``out_dir``; returns the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    onsets = entries[0].evaluation.onset_frames
    figures = [("Ground truth vs predictions", plot_timeline(entries, gt, out_dir / "timeline.png")),
               ("Token allocation over time", plot_token_allocation(entries, out_dir / "tokens.png", onsets)),
               ("Per-frame point error", plot_point_errors(entries, out_dir / "point_errors.png"))]
    if gt.task == "track":
        figures += [(f"Masks ({e.results.mode})", plot_mask_strip(e, gt, out_dir / f"masks_{e.results.mode}.png"))
                    for e in entries]
    r = entries[0].results
    imgs = "".join(f"<h2>{html.escape(t)}</h2><img src='{p.name}'>" for t, p in figures if p is not None)
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>ov2-ros eval: {html.escape(gt.name)}</title>"
           "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
           "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}img{max-width:100%}</style></head><body>"
           f"<h1>{html.escape(gt.name)}: {html.escape(gt.task)}</h1>"
           f"<p>bag <code>{html.escape(r.bag)}</code>, topic <code>{html.escape(r.topic)}</code>, query "
           f"<code>{html.escape(r.query)}</code>, model <code>{html.escape(r.model)}</code>, window budget "
           f"{r.canvases} canvases, {r.num_frames} frames.</p>"
           f"{f'<p>{html.escape(note)}</p>' if note else ''}<h2>Metrics</h2>{metric_table_html(entries)}{imgs}"
           "</body></html>")
    path = out_dir / "report.html"
    path.write_text(doc)
    return path
