"""Adaptive frame groups from the stream's bit-cost, decided online, one frame at a time.

``BitCostGrouper.push(bits, key_frame, change)`` says, for each frame in output order, where the group boundary
falls:

- ``Boundary.AFTER``: this frame completes the group (cumulative bits since the group's anchor reached the threshold
  ``bitcost_ratio x running bits/frame`` and the group has ``min_group_frames``, or it has ``max_group_frames``).
  No look-ahead: the group closes the moment its last frame arrives.
- ``Boundary.BEFORE``: this frame is a **cut**; the open group ends before it and it anchors the next group. A cut
  may end a group shorter than ``min_group_frames`` (a window should never straddle two shots).
- ``Boundary.NONE``: keep going.

Cost accounting (measured on ``synth.make_event_clip``, 320x240, IDR every 60 frames, x264 zerolatency): static P
frames cost ~600 bits, the moving square ~4,000, a scene cut coded as a P frame ~39,000, and the IDRs 74,000-112,000
bits while changing nothing (mean |luma change| 0.7 grey levels vs 27 at the cut). Hence:

- The anchor's own bits never count: it is on the I-canvas whole; the group's cost is what happens after it.
- **Periodic keyframes** cost as much as a whole group of motion yet carry no news, so a keyframe is billed as one
  ordinary frame (the running rate) and never updates the rate. A keyframe is a cut only if the picture changed
  (``change`` >= ``cut_change``; intra frames have no MVs, so this is the unwarped difference) and it breaks the
  stream's keyframe period (a scheduled IDR arrives one period after the last keyframe; an encoder's scene-cut IDR
  does not): its size alone says nothing. On ``bikes.mp4`` (scene-cut IDRs at 30, 76, 137, 187, 242) every cut
  opens a group and nothing else does.
- A non-key frame is a cut if its bits spike (>= ``spike_ratio`` x running rate) *and* the picture changed; the
  spike alone would also fire on x264's quality ramp after each IDR (frames 4-13 above cost 10-15 kbit with the
  picture unchanged). Cuts inside moving scenes spike only 3-6x (bikes.mp4 re-encoded by the bridge's zerolatency
  encoder, scene-cut IDRs off: 3.1-6.3x with a change of 43-72 grey levels, against < 8 for every non-cut frame), so
  the spike bar is low and the change cue does the discriminating. "Changed" is measured after motion compensation (``saliency.FrameSaliency.change``), so a
  camera pan that starts after a still stretch (bits jump 60x) is motion, not a string of cuts.
- The running rate is an EMA (``bitcost_ema`` per frame) of the billed bits, each capped at ``rate_cap`` x rate so
  one cut does not inflate the threshold for the next second.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from ov2_ros.codec.types import TokenizerConfig


class Boundary(enum.Enum):
    NONE = 0
    AFTER = 1      # the frame just pushed closes the open group
    BEFORE = 2     # the frame just pushed is a cut: the open group ends before it, the frame opens the next


@dataclass(frozen=True)
class GroupingConfig:
    min_frames: int = 8
    max_frames: int = 64
    ratio: float = 16.0          # threshold = ratio x running bits/frame (~ratio frames at a steady rate)
    ema: float = 0.05
    spike_ratio: float = 2.5     # a P frame this many times the running rate (and a changed picture) is a cut
    rate_cap: float = 8.0        # each frame's bits enter the running rate capped at rate_cap x rate
    cut_change: float = 20.0     # grey levels of mean |luma change| that make a spike (or keyframe) a cut

    @classmethod
    def from_tokenizer(cls, config: TokenizerConfig) -> GroupingConfig:
        return cls(min_frames=config.min_group_frames, max_frames=config.max_group_frames,
                   ratio=config.bitcost_ratio, ema=config.bitcost_ema)


@dataclass(frozen=True)
class Decision:
    boundary: Boundary
    billed_bits: float     # what this frame added to the open group's cost (0 for an anchor)
    threshold: float       # the threshold the open group is measured against after this frame


class KeyframeSchedule:
    """Tells an encoder's scheduled keyframes from its scene-cut keyframes, from keyframe positions alone.

    ``scheduled(frame)`` notes a keyframe; True when it keeps the stream's period (the interval since the previous
    keyframe equals the one before it, or a period already seen twice in a row). Scene-cut IDRs restart the encoder's
    count, so intervals are measured from the last keyframe of any kind. The first two keyframes are never
    "scheduled": there is no period to keep yet.
    """

    def __init__(self) -> None:
        self.last: int | None = None
        self.interval: int | None = None
        self.period: int | None = None

    def scheduled(self, frame: int) -> bool:
        interval = None if self.last is None else frame - self.last
        periodic = interval is not None and interval in (self.interval, self.period)
        if interval is not None and interval == self.interval:
            self.period = interval
        self.last, self.interval = frame, interval
        return periodic


def scene_cut_keyframes(key: np.ndarray) -> list[int]:
    """Frames (output order) of keyframes off the stream's schedule, after the first: the encoder's scene cuts.
    Offline, the whole file is known: the schedule is the most common keyframe interval, if any repeats."""
    frames = np.flatnonzero(np.asarray(key, dtype=bool))
    intervals = np.diff(frames)
    values, counts = np.unique(intervals, return_counts=True)
    period = int(values[np.argmax(counts)]) if len(counts) and counts.max() >= 2 else None
    return [int(f) for f, gap in zip(frames[1:], intervals) if gap != period]


class BitCostGrouper:
    """Online bit-cost grouping; see the module docstring. ``reset()`` forgets everything (new stream / size)."""

    def __init__(self, config: GroupingConfig = GroupingConfig()):
        self.config = config
        self.reset()

    def reset(self) -> None:
        self.rate: float | None = None      # running bits per ordinary frame
        self.length = 0                     # frames in the open group
        self.cost = 0.0                     # billed bits since the anchor
        self.frames = 0                     # frames pushed since the reset
        self.schedule = KeyframeSchedule()

    @property
    def threshold(self) -> float:
        return self.config.ratio * (self.rate or 0.0)

    def _update_rate(self, bits: int) -> None:
        cfg = self.config
        if self.rate is None:
            self.rate = float(bits)
        else:
            self.rate = (1 - cfg.ema) * self.rate + cfg.ema * min(float(bits), cfg.rate_cap * self.rate)

    def _open(self) -> None:
        self.length, self.cost = 1, 0.0

    def push(self, bits: int, key_frame: bool, change: float = 0.0) -> Decision:
        cfg = self.config
        self.frames += 1
        periodic = self.schedule.scheduled(self.frames) if key_frame else False
        if self.length == 0:                      # the frame after a closed group (or the first) is an anchor
            self._open()
            if not key_frame:
                self._update_rate(bits)
            return Decision(Boundary.NONE, 0.0, self.threshold)
        changed = change >= cfg.cut_change
        spike = self.rate is not None and bits >= cfg.spike_ratio * self.rate
        if changed and ((key_frame and not periodic) or (not key_frame and spike)):
            self._open()
            if not key_frame:
                self._update_rate(bits)      # capped: a new shot moves the rate, one frame cannot own it
            return Decision(Boundary.BEFORE, 0.0, self.threshold)
        billed = (self.rate or 0.0) if key_frame else float(bits)
        if not key_frame:
            self._update_rate(bits)
        self.cost += billed
        self.length += 1
        threshold = self.threshold
        if self.length >= cfg.max_frames or (self.length >= cfg.min_frames and self.cost >= threshold):
            self.length, self.cost = 0, 0.0
            return Decision(Boundary.AFTER, billed, threshold)
        return Decision(Boundary.NONE, billed, threshold)


class FixedGrouper:
    """Groups of exactly ``frames`` frames (uniform mode), same interface as ``BitCostGrouper``."""

    def __init__(self, frames: int):
        self.frames = frames
        self.reset()

    def reset(self) -> None:
        self.length = 0

    def push(self, bits: int, key_frame: bool, change: float = 0.0) -> Decision:
        self.length += 1
        if self.length >= self.frames:
            self.length = 0
            return Decision(Boundary.AFTER, float(bits), float(self.frames))
        return Decision(Boundary.NONE, float(bits), float(self.frames))


class PlannedGrouper:
    """Follows group boundaries fixed in advance (``tokenize_file`` with a canvas budget): ``ends`` are the
    exclusive end frames, counted from the first frame pushed."""

    def __init__(self, ends: list[int], thresholds: list[float] | None = None, billed: np.ndarray | None = None):
        self.ends = list(ends)
        self.thresholds = list(thresholds) if thresholds is not None else [0.0] * len(self.ends)
        self.billed = billed      # the plan's per-frame billing, reported back frame by frame
        self.seen = 0
        self.group = 0

    def reset(self) -> None:
        """A plan covers the whole file: a resolution change closes the open group early, the plan stays."""

    def push(self, bits: int, key_frame: bool, change: float = 0.0) -> Decision:
        billed = float(self.billed[self.seen]) if self.billed is not None and self.seen < len(self.billed) else bits
        self.seen += 1
        threshold = self.thresholds[min(self.group, len(self.thresholds) - 1)] if self.thresholds else 0.0
        if self.group < len(self.ends) and self.seen >= self.ends[self.group]:
            self.group += 1
            return Decision(Boundary.AFTER, float(billed), threshold)
        return Decision(Boundary.NONE, float(billed), threshold)


def billed_bits(bits: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Offline billing, as ``BitCostGrouper`` bills online: keyframes cost one ordinary (median non-key) frame."""
    bits = np.asarray(bits, dtype=np.float64)
    key = np.asarray(key, dtype=bool)
    ordinary = bits[~key]
    return np.where(key, float(np.median(ordinary)) if len(ordinary) else 1.0, bits)


def plan_group_ends(billed: np.ndarray, n_groups: int, min_frames: int = 1, cuts: list[int] = ()) -> list[int]:
    """Split a whole stream into ``n_groups`` groups of equal billed bit-cost: the offline form of the online rule
    (threshold = total cost / groups instead of ratio x running rate). Returns exclusive end frames.

    ``cuts`` (frames that start a new shot) are boundaries first, as online, where a cut always opens a group: the
    shots share the groups in proportion to their cost (each at least one), then each shot is split evenly by cost.
    If there are more cuts than groups allow, the costliest cut frames are kept.
    Groups get at least ``min(min_frames, frames // n_groups)`` frames; fewer groups only if there are fewer frames.
    ``max_group_frames`` does not apply: a fixed budget over a fixed file has to take long quiet stretches whole.
    """
    billed = np.asarray(billed, dtype=np.float64)
    n_frames = len(billed)
    n = max(1, min(n_groups, n_frames))
    if n_frames == 0:
        return []
    cuts = sorted({int(c) for c in cuts if 0 < c < n_frames})
    if len(cuts) >= n:
        cuts = sorted(sorted(cuts, key=lambda c: -billed[c])[:n - 1])
    if cuts:
        bounds = [0, *cuts, n_frames]
        costs = [float(billed[a:b].sum()) for a, b in zip(bounds, bounds[1:])]
        share = [1] * len(costs)
        for _ in range(n - len(costs)):        # highest cost per group gets the next group (D'Hondt)
            k = max(range(len(costs)), key=lambda i: (costs[i] / share[i]) if share[i] < bounds[i + 1] - bounds[i]
                    else -1.0)
            share[k] += 1
        return [a + e for a, b, k in zip(bounds, bounds[1:], share)
                for e in plan_group_ends(billed[a:b], k, min_frames)]
    least = max(1, min(min_frames, n_frames // n))
    cum = np.cumsum(billed)
    total = float(cum[-1])
    ends, prev = [], 0
    for k in range(1, n):
        end = int(np.searchsorted(cum, total * k / n, side="left")) + 1 if total > 0 else round(n_frames * k / n)
        end = min(max(end, prev + least), n_frames - (n - k) * least)
        ends.append(end)
        prev = end
    ends.append(n_frames)
    return ends


# --- readiness groups (the official tool's grouping of *sampled* frames) ---------------------------------------------
# A group of sampled frames f_0 .. f_{n-1} is "ready" when its P-canvases could be filled with strong blocks: the sum
# of the best ``budget`` block scores over f_1 .. f_{n-1} (the blocks the P-canvases would take; f_0 is the I-canvas)
# reaches the threshold, and those blocks cover all ``bins`` equal time bins of f_1 .. f_{n-1}. From
# ``min_frames`` on, the group grows frame by frame: it closes at the first ready length whose last frame added less
# than ``delta`` (5%) to the sum, else at the last ready length by ``max_frames`` (or at ``max_frames`` if it never
# got ready). The threshold is the mean of that sum over consecutive chunks of ``chunk`` (32) sampled frames.
# A tail of fewer than ``min_frames`` sampled frames is dropped. Reading of codec-video-prep 0.2.5
# (codec_selector.plugins.groupers.readiness), re-implemented.

@dataclass(frozen=True)
class ReadinessConfig:
    min_frames: int = 8
    max_frames: int = 64
    budget: int = 540          # P-canvas blocks per group: (canvases_per_group - 1) x blocks per canvas
    bins: int = 3              # time bins the selected blocks must cover (min(3, P-canvases))
    delta: float = 0.05
    chunk: int = 32            # sampled frames per chunk of the threshold estimate


def readiness_stats(blocks: list[np.ndarray], budget: int, bins: int) -> tuple[float, int]:
    """(sum of the best ``budget`` block scores over frames 1.., time bins of frames 1.. they cover) for one group.
    ``blocks``: per sampled frame, its flat block scores."""
    if len(blocks) < 2 or budget <= 0:
        return 0.0, 0
    scores = np.concatenate([b.reshape(-1) for b in blocks[1:]])
    t = np.repeat(np.arange(1, len(blocks)), [b.size for b in blocks[1:]])
    k = min(budget, len(scores))
    top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    n = len(blocks)
    edges = np.linspace(1, max(2, n), bins + 1).astype(np.int64)
    frames = np.unique(t[top])
    covered = 0
    for lo, hi in zip(edges[:-1], edges[1:]):
        hi = max(hi, lo + 1)
        covered += bool(np.any((frames >= lo) & (frames < hi)))
    return float(scores[top].sum()), covered


def readiness_threshold(blocks: list[np.ndarray], config: ReadinessConfig) -> float:
    """Mean ready-sum over consecutive chunks of ``config.chunk`` sampled frames (chunks too short to have
    ``bins`` time bins are left out); 0 when there are none."""
    sums = [readiness_stats(blocks[s:s + config.chunk], config.budget, config.bins)[0]
            for s in range(0, len(blocks), config.chunk)
            if len(blocks[s:s + config.chunk]) >= max(4, config.bins + 1)]
    return float(np.mean(sums)) if sums else 0.0


class ReadinessGrouper:
    """Readiness grouping, one sampled frame at a time: ``push(blocks)`` returns the lengths of the groups the open
    frames form now (usually none). A group closed at ``max_frames`` on an earlier ready length leaves frames over;
    they open the next group and are scanned again, as offline. ``finish()`` returns the last groups' lengths; the
    frames it leaves out are a dropped tail.

    ``threshold``: fixed (offline: ``readiness_threshold`` of the whole file), or None to use the running estimate,
    the mean over the chunks of ``config.chunk`` frames completed so far (the current partial chunk until one is).
    """

    def __init__(self, config: ReadinessConfig = ReadinessConfig(), threshold: float | None = None):
        self.config, self.fixed = config, threshold
        self.reset()

    def reset(self) -> None:
        self.open: list[np.ndarray] = []
        self.chunk: list[np.ndarray] = []
        self.chunk_sums: list[float] = []
        self.groups = 0
        self._restart()

    def _restart(self) -> None:
        self.evaluated = 0           # lengths of the open group evaluated so far (from min_frames)
        self.prev_sum: float | None = None
        self.chosen = 0

    @property
    def threshold(self) -> float:
        if self.fixed is not None:
            return self.fixed
        if self.chunk_sums:
            return float(np.mean(self.chunk_sums))
        return readiness_stats(self.chunk, self.config.budget, self.config.bins)[0]

    def push(self, blocks: np.ndarray) -> list[int]:
        cfg = self.config
        if self.fixed is None:
            self.chunk.append(blocks)
            if len(self.chunk) == cfg.chunk:
                self.chunk_sums.append(readiness_stats(self.chunk, cfg.budget, cfg.bins)[0])
                self.chunk = []
        self.open.append(blocks)
        return self._scan(final=False)

    def finish(self) -> list[int]:
        """End of stream. A tail of fewer than ``min_frames`` is dropped, unless no group was made yet (so a short
        clip still gives one; the official tool would give none)."""
        out = self._scan(final=True)
        if self.open and self.groups == 0:
            out.append(len(self.open))
            self.groups += 1
        self.open = []
        self._restart()
        return out

    def _scan(self, final: bool) -> list[int]:
        cfg, out = self.config, []
        while len(self.open) >= cfg.min_frames:
            n, limit = len(self.open), min(len(self.open), cfg.max_frames)
            close = 0
            while not close and max(self.evaluated, cfg.min_frames - 1) < limit:
                length = max(self.evaluated, cfg.min_frames - 1) + 1
                self.evaluated = length
                total, covered = readiness_stats(self.open[:length], cfg.budget, cfg.bins)
                gain = 1.0 if self.prev_sum is None else (total - self.prev_sum) / max(abs(self.prev_sum), 1e-6)
                if total >= self.threshold and covered >= cfg.bins:
                    self.chosen = length
                    if self.prev_sum is not None and gain < cfg.delta:
                        close = length
                self.prev_sum = total
            if not close and (self.evaluated >= cfg.max_frames or final):
                close = self.chosen or limit
            if not close:
                break
            out.append(close)
            self.open = self.open[close:]
            self.groups += 1
            self._restart()
        return out


def readiness_groups(blocks: list[np.ndarray], config: ReadinessConfig = ReadinessConfig(),
                     threshold: float | None = None) -> list[tuple[int, int]]:
    """Offline: (start, end) sampled-frame ranges of all groups, the threshold estimated from all ``blocks``."""
    grouper = ReadinessGrouper(config, readiness_threshold(blocks, config) if threshold is None else threshold)
    lengths = [n for b in blocks for n in grouper.push(b)] + grouper.finish()
    ends = np.cumsum(lengths).tolist()
    return [(int(e - n), int(e)) for n, e in zip(lengths, ends)]
