"""A picture of one tokenization (in the spirit of the paper's Figure 4): per-frame bit-cost, each group's cumulative
cost against its threshold (official structure: its readiness, a sum of *estimated* bit-cost block scores; seed
structure: billed AU bits), group boundaries, tokens per group, and a strip of canvases. matplotlib (Agg) only.

The README figure is made by ``ov2-ros tokenize bikes.mp4 --canvases 32 --plot docs/img/tokenize_bikes.png``
(bikes.mp4: ``bench/common.py``'s ``bikes_mp4()``, cached in ``bench/.cache/``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_STRIP = 8      # canvases in the strip: the two busiest groups' worth at the default 4 per group


def plot_tokenization(result, path: str | Path, title: str = "") -> Path:
    """Save the figure for a ``TokenizeResult`` (or anything with ``groups`` and ``frame_bits``) to ``path``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    groups = result.groups
    fig = plt.figure(figsize=(12, 9), constrained_layout=True)
    grid = fig.add_gridspec(4, MAX_STRIP, height_ratios=[1.2, 1.2, 1.0, 1.1])
    ax_bits = fig.add_subplot(grid[0, :])
    ax_cum = fig.add_subplot(grid[1, :], sharex=ax_bits)
    ax_tok = fig.add_subplot(grid[2, :], sharex=ax_bits)

    # groups of sampled frames (official structure) leave gaps: each group's frames at their own indices
    start = groups[0].start_frame
    frames = np.arange(start, groups[-1].end_frame)
    bits = np.zeros(len(frames))
    for g in groups:
        bits[g.start_frame - start:g.end_frame - start] = g.frame_bits[: g.num_frames]
    ax_bits.bar(frames, np.maximum(bits, 1) / 1000.0, width=1.0, color="0.45")
    ax_bits.set_yscale("log")
    ax_bits.set_ylabel("AU size (kbit)")
    ax_bits.set_title(title or "codec-stream tokenization")

    if all(g.sampled_blocks is not None for g in groups):
        _readiness_panel(ax_cum, groups)
    else:
        for g in groups:
            gx = np.arange(g.start_frame, g.end_frame)
            billed = g.frame_billed if g.frame_billed is not None else g.frame_bits
            ax_cum.step(gx, np.cumsum(billed) / 1000.0, where="post", color="tab:blue", lw=1.5)
            ax_cum.hlines(g.threshold / 1000.0, g.start_frame, g.end_frame, colors="tab:red", linestyles="--", lw=1)
        ax_cum.set_ylabel("group cost (kbit)")
        ax_cum.plot([], [], color="tab:blue", label="cumulative billed bits")
        ax_cum.plot([], [], color="tab:red", ls="--", label="threshold when the group closed")
        ax_cum.legend(loc="upper left", fontsize=8)

    # tokens per group (non-padding patches / 4) as a bar spanning the group, and selected patches per frame
    per_frame = np.zeros(len(frames), np.int64)
    for g in groups:
        real = sum(int((c.positions[:, 0] >= 0).sum()) for c in g.canvases)
        ax_tok.bar(g.start_frame, real / 4, width=g.num_frames, align="edge", color="tab:green", alpha=0.35,
                   edgecolor="tab:green", label="tokens per group (no padding)" if g is groups[0] else None)
        for c in g.canvases:
            t = c.positions[:, 0]
            np.add.at(per_frame, t[t >= 0] - start, 1)
    ax_tok.plot(frames, per_frame / 4, color="tab:green", lw=1.2, label="tokens per frame")
    ax_tok.set_ylabel("tokens")
    ax_tok.set_xlabel("frame")
    ax_tok.legend(loc="upper left", fontsize=8)

    for ax in (ax_bits, ax_cum, ax_tok):
        for g in groups:
            ax.axvline(g.start_frame, color="0.2", lw=0.6, alpha=0.6)
        ax.grid(alpha=0.2)

    canvases = [c for g in _busiest(groups, MAX_STRIP) for c in g.canvases][:MAX_STRIP]
    for i, c in enumerate(canvases):
        ax = fig.add_subplot(grid[3, i])
        ax.imshow(c.pixels)
        used = c.frames
        span = f"{used[0]}" if len(used) == 1 else (f"{used[0]}-{used[-1]}" if len(used) else "pad")
        ax.set_title(f"g{c.group} {c.kind}: {span}", fontsize=8)
        ax.axis("off")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def readiness_curve(group, p_canvases: int = 3) -> np.ndarray:
    """(n,) an official-structure group's readiness after each of its n sampled frames: the sum of its best
    ``p_canvases`` canvases' worth of *estimated* bit-cost block scores over the frames after the first (stock FFmpeg
    exports no per-macroblock bits, so these are the estimator's, not the stream's). Budget as the default config's
    (4 canvases per group)."""
    from ov2_ros.codec.grouping import readiness_stats

    blocks = [b.reshape(-1) for b in group.sampled_blocks]
    budget, bins = p_canvases * blocks[0].size, min(3, p_canvases)
    return np.array([readiness_stats(blocks[:n], budget, bins)[0] for n in range(1, len(blocks) + 1)])


def _readiness_panel(ax, groups) -> None:
    """Each group's ``readiness_curve`` at its sampled frames against the readiness threshold."""
    for g in groups:
        ready = readiness_curve(g)
        ax.step(g.sampled, ready, where="post", color="tab:blue", lw=1.5)
        ax.plot(g.sampled, ready, ".", color="tab:blue", ms=3)
        ax.hlines(g.threshold, g.start_frame, g.end_frame, colors="tab:red", linestyles="--", lw=1)
    ax.set_ylabel("estimated bit cost\n(block score sum)")
    ax.plot([], [], color="tab:blue", marker=".", label="readiness: best 3 P-canvases of estimated bit-cost block "
            "scores (sampled frames; an estimate, not billed bits)")
    ax.plot([], [], color="tab:red", ls="--", label="readiness threshold")
    ax.legend(loc="lower right", fontsize=7)


def _busiest(groups, max_canvases: int) -> list:
    """The groups with the highest billed bits per frame (the busiest stretches) that fit the strip, in time order."""
    def rate(g):
        billed = g.frame_billed if g.frame_billed is not None else g.frame_bits
        return float(np.mean(billed)) if len(billed) else 0.0

    chosen, used = [], 0
    for g in sorted(groups, key=rate, reverse=True):
        if used + len(g.canvases) <= max_canvases:
            chosen.append(g)
            used += len(g.canvases)
    return sorted(chosen, key=lambda g: g.index) or list(groups[:1])
