"""Which 2x2 blocks of a closed group go onto its P-canvases, and the codec-mode canvases of a group.

Selection, per group of frames ``f = 0 .. F-1`` with block scores ``S_f`` (block_rows, block_cols):

1. Within each frame, blocks are ranked by score (``rho = 0, 1, ...``) and attenuated: ``A = S / (1 + lambda * rho)``.
   A frame's 10th-best block is worth a third of its raw score, so one busy frame cannot take the whole budget.
2. Frames already on a full canvas (the anchor on the I-canvas, hybrid full frames) are skipped: their positions are
   taken. Every remaining ``(t, r, c)`` is a candidate at most once, so no position is packed twice.
3. Candidates are laid out in time order (frame, then rank) and their cumulative attenuated mass is cut into ``K``
   equal parts, one per P-canvas: a busy stretch of the group gets a canvas of its own, a quiet one shares. Only
   blocks scoring at least ``MIN_BLOCK_SCORE`` carry mass here; weaker blocks join the part of the strong blocks
   before them (same stretch of frames).
4. Each P-canvas takes its part's strong blocks, best ``A`` first, then fills what room is left with the part's weak
   blocks (context around the change, in the same frames), then with zero-score blocks of the part's frames,
   busiest frame first (the rest of the scene where the change happens), up to its capacity
   (``block_rows * block_cols``). A canvas whose part is thin (one heavy frame's tail) takes what the nearest parts
   left over, so canvases are full unless the group runs out of blocks. A group without any
   strong block is split by all its mass instead; a frozen picture (no positive score at all) gets all-padding
   P-canvases: there is nothing to show that the I-canvas does not.

Why the floor: on the synthetic clips x264's quality ramp after an IDR or a cut (picture unchanged, reconstruction
sharpening) scores 0.05-0.7 per block and the moving object 2-8; splitting by all mass would give the ramp frames
canvases of their own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ov2_ros.codec.badframe import is_bad_frame
from ov2_ros.codec.packing import CanvasGrid, pack_blocks_yuv, pack_frame, yuv_to_rgb
from ov2_ros.codec.types import Canvas

MIN_BLOCK_SCORE = 1.0   # fused saliency summed over a 2x2 block (each patch's score is at most 4)


@dataclass(frozen=True, eq=False)
class FrameRecord:
    """What the tokenizer keeps of a frame until its group closes (bounded: at most ``max_group_frames`` of these).

    ``yuv``: (H * 3/2, W) uint8 I420 at canvas size; ``blocks``: (block_rows, block_cols) float32 saliency, or None
    where no saliency was computed (uniform mode).
    """

    index: int
    time_s: float
    stamp: Any
    bits: int
    key_frame: bool
    yuv: np.ndarray
    blocks: np.ndarray | None
    billed: float = 0.0      # bits this frame added to its group's cost (grouping.Decision.billed_bits)

    def rgb(self) -> np.ndarray:
        return yuv_to_rgb(self.yuv)


def attenuated_scores(blocks: np.ndarray, lam: float) -> np.ndarray:
    """(F, block_rows, block_cols) scores -> (F, num_blocks) ``S / (1 + lam * rho)``, rho = rank within the frame."""
    flat = blocks.reshape(len(blocks), -1).astype(np.float32)
    rank = np.empty_like(flat, dtype=np.int64)
    order = np.argsort(-flat, axis=1, kind="stable")
    np.put_along_axis(rank, order, np.arange(flat.shape[1])[None, :], axis=1)
    return flat / (1.0 + lam * rank)


def select_blocks(frames: np.ndarray, blocks: np.ndarray, n_canvases: int, capacity: int, block_cols: int,
                  lam: float = 0.5, min_score: float = MIN_BLOCK_SCORE) -> list[np.ndarray]:
    """Blocks for ``n_canvases`` P-canvases.

    frames: (F,) frame indices (time order, frames on full canvases already removed); blocks: (F, BR, BC) scores.
    Returns one (n_k, 3) int32 array ``(t, r, c)`` per canvas, ``n_k <= capacity``, sorted by (t, r, c).
    """
    empty = [np.zeros((0, 3), np.int32) for _ in range(n_canvases)]
    if len(frames) == 0 or n_canvases == 0:
        return empty
    att = attenuated_scores(blocks, lam)                       # (F, nb)
    order = np.argsort(-att, axis=1, kind="stable")            # per frame: best first
    mass = np.take_along_axis(att, order, axis=1).reshape(-1)  # time order, then rank
    strong = (np.take_along_axis(blocks.reshape(len(blocks), -1), order, axis=1) >= min_score).reshape(-1)
    frame_pos = np.repeat(np.arange(len(frames)), att.shape[1])
    block_id = order.reshape(-1)
    positive = mass > 0
    weight = np.where(strong, mass, 0.0) if strong.any() else np.where(positive, mass, 0.0)
    total = float(weight.sum())
    if total <= 0:
        return empty
    midpoint = np.cumsum(weight, dtype=np.float64) - weight / 2
    part = np.minimum((midpoint * n_canvases / total).astype(np.int64), n_canvases - 1)
    carriers = weight > 0                      # every other block joins the part of the last carrier before it
    last = np.maximum.accumulate(np.where(carriers, np.arange(len(part)), -1))
    part = np.where(last >= 0, part[np.maximum(last, 0)], part)
    frame_mass = att.sum(axis=1)[frame_pos]    # fillers come from the busiest frames of the part first
    # preference within a part: strong blocks, then weak ones, best A first; then zero-score context from the
    # busiest frames. One global rank, so each canvas' choice is a prefix of its candidates in this order.
    rank = np.empty(len(part), np.int64)
    rank[np.lexsort((-frame_mass, -mass, ~positive, ~strong))] = np.arange(len(part))
    taken = np.zeros(len(part), bool)
    chosen: list[np.ndarray] = []
    for k in range(n_canvases):
        idx = np.flatnonzero(part == k)
        idx = idx[np.argsort(rank[idx])[:capacity]]
        taken[idx] = True
        chosen.append(idx)
    for k in range(n_canvases):                # room left (a thin part): the nearest parts' leftovers, in order
        room = capacity - len(chosen[k])
        if room <= 0:
            continue
        spare = np.flatnonzero(~taken)
        spare = spare[np.lexsort((rank[spare], np.abs(part[spare] - k)))[:room]]
        taken[spare] = True
        chosen[k] = np.concatenate([chosen[k], spare])
    out = []
    for idx in chosen:
        r, c = np.divmod(block_id[idx], block_cols)
        sel = np.stack([np.asarray(frames)[frame_pos[idx]], r, c], axis=1).astype(np.int32)
        out.append(sel[np.lexsort((sel[:, 2], sel[:, 1], sel[:, 0]))])
    return out


def full_canvas(record: FrameRecord, grid: CanvasGrid, group: int) -> Canvas:
    """A whole frame as a canvas (I-canvas, uniform canvas, hybrid full frame)."""
    pixels, positions = pack_frame(record.index, record.rgb(), grid)
    return Canvas("I", pixels, positions, group)


def p_canvases(records: list[FrameRecord], n_canvases: int, grid: CanvasGrid, group: int,
               lam: float) -> list[Canvas]:
    """Select blocks over ``records`` (frames not on a full canvas) and pack them into ``n_canvases`` P-canvases."""
    scored = [r for r in records if r.blocks is not None]
    frames = np.array([r.index for r in scored], dtype=np.int64)
    scores = (np.stack([r.blocks for r in scored]) if scored
              else np.zeros((0, grid.block_rows, grid.block_cols), np.float32))
    chosen = select_blocks(frames, scores, n_canvases, grid.num_blocks, grid.block_cols, lam)
    images = {r.index: r.yuv for r in scored}
    out = []
    for sel in chosen:
        pixels, positions = pack_blocks_yuv(sel, images, grid)     # one YUV->RGB conversion per canvas
        out.append(Canvas("P", pixels, positions, group))
    return out


def codec_canvases(records: list[FrameRecord], grid: CanvasGrid, group: int, n_p: int, lam: float) -> list[Canvas]:
    """Codec mode: the anchor (first frame) whole, then ``n_p`` P-canvases over the other frames."""
    return [full_canvas(records[0], grid, group)] + p_canvases(records[1:], n_p, grid, group, lam)


# --- the official tool's selection -----------------------------------------------------------------------------------

def topk_blocks(frames: np.ndarray, blocks: np.ndarray, budget: int, block_cols: int) -> np.ndarray:
    """The ``budget`` best blocks over all ``frames`` together (no per-frame attenuation, no split), as the official
    tool selects: (n, 3) int32 ``(t, r, c)`` sorted by (t, r, c). frames: (F,); blocks: (F, BR, BC) scores."""
    if len(frames) == 0 or budget <= 0:
        return np.zeros((0, 3), np.int32)
    flat = blocks.reshape(len(frames), -1).reshape(-1)
    k = min(budget, len(flat))
    top = np.argpartition(-flat, k - 1)[:k] if k < len(flat) else np.arange(len(flat))
    f, b = np.divmod(top, blocks[0].size)
    r, c = np.divmod(b, block_cols)
    sel = np.stack([np.asarray(frames)[f], r, c], axis=1).astype(np.int32)
    return sel[np.lexsort((sel[:, 2], sel[:, 1], sel[:, 0]))]


def official_canvases(records: list[FrameRecord], grid: CanvasGrid, group: int, n_p: int) -> list[Canvas]:
    """The official layout: the group's first sampled frame whole (I-canvas), then its other sampled frames' best
    ``n_p x blocks-per-canvas`` blocks in (t, r, c) order, filling P-canvases one after another. A P-canvas left
    without blocks (a group shorter than its budget) is dropped, never padded in. Bad frames (``badframe``: black,
    flat, green-corrupt) give no blocks, and a bad first frame swaps places with the group's first good one, which
    takes the I-canvas, as the release does."""
    records, good = list(records), [not is_bad_frame(r.rgb()) for r in records]
    if not good[0] and any(good):
        i = good.index(True)
        records[0], records[i], good[0], good[i] = records[i], records[0], True, False
    canvases = [full_canvas(records[0], grid, group)]
    scored = [r for r, ok in zip(records[1:], good[1:]) if ok and r.blocks is not None]
    if not scored or n_p <= 0:
        return canvases
    frames = np.array([r.index for r in scored], dtype=np.int64)
    chosen = topk_blocks(frames, np.stack([r.blocks for r in scored]), n_p * grid.num_blocks, grid.block_cols)
    images = {r.index: r.yuv for r in scored}
    for start in range(0, len(chosen), grid.num_blocks):
        pixels, positions = pack_blocks_yuv(chosen[start:start + grid.num_blocks], images, grid)
        canvases.append(Canvas("P", pixels, positions, group))
    return canvases
