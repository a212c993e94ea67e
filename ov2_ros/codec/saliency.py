"""Per-patch saliency from what the codec already computed: motion vectors and motion-compensated residuals.

Each decoded frame is analysed at *half* canvas resolution (``analysis_grid``: the canvas grid with 7-px patches
for 14-px ones; per-patch statistics barely change and every array op gets 4x cheaper):

- **motion**: the exported MVs are rasterised onto a field of 16x16-source-pixel (macroblock) cells (``bincount`` over
  cell indices, so no Python loop over MVs); the per-cell mean magnitude, in canvas pixels, is averaged per patch.
  Optionally (``SaliencyConfig.camera_motion``) magnitudes are taken relative to the camera's motion (the median
  MV), so a robot turning its head does not make every block salient; off by default (see the measurement there).
- **residual**: the previous frame's luma is warped by the past-reference MVs (``cv2.remap``) and compared with
  this frame: mean |luma - warped| per patch, minus a coding-noise allowance. Intra frames (no MVs) compare with the
  unwarped previous frame, so a cut lights up everywhere. So do streams without exported MVs (FFmpeg exports none
  for HEVC): their saliency is the plain frame difference.
- Each is divided by a robust scale (its ``percentile`` over the frame, never below a floor: a quiet frame keeps small
  scores instead of having its noise stretched to 1), clipped, and fused by a weighted sum.
- Block score = sum of the fused score over each 2x2 patch block.

Shapes: analysis luma (H/2, W/2) uint8 for an (H, W) canvas; patch maps (H/p, W/p) float32 (one value per canvas
patch); block maps (H/2p, W/2p) float32.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ov2_ros.codec.packing import CanvasGrid
from ov2_ros.errors import ConfigError

MV_CELL = 16  # one macroblock: H.264 partitions (16x16 down to 8x8) never straddle one, so an MV's centre names its
              # cell; the smaller partitions of one macroblock are averaged (finer than the 7-px analysis patches)


@dataclass(frozen=True)
class SaliencyConfig:
    motion_weight: float = 0.5
    residual_weight: float = 0.5
    percentile: float = 95.0
    motion_floor: float = 2.0       # canvas px of motion that count as "fully salient" in a quiet frame
    residual_noise: float = 2.0     # grey levels of coding noise ignored in the residual
    residual_floor: float = 12.0    # grey levels (after the noise allowance) that count as fully salient
    clip: float = 4.0               # cap on normalised scores, so one outlier patch cannot own a frame
    # Score motion relative to the median MV (camera motion). Off: on bench/tokenizer.py's moving 720p clip it
    # halved the patches near the pan onset (192 -> 80) and the objects' onset (112 -> 60), since a pan is news too.
    camera_motion: bool = False


@dataclass(frozen=True)
class FrameSaliency:
    """Saliency of one frame. ``change``: mean |luma - prediction| in grey levels, the prediction being the previous
    frame warped by this frame's MVs (unwarped for intra frames): the cut detector's cue. A pan is predicted well
    and stays low; a cut (intra-coded macroblocks, no MVs to follow) does not."""

    patches: np.ndarray      # (rows, cols) float32
    blocks: np.ndarray       # (block_rows, block_cols) float32
    change: float


def patch_mean(image: np.ndarray, patch: int) -> np.ndarray:
    """(H, W) -> (H/p, W/p) float32 mean over each patch (cv2's integer-ratio area resize: exact, and ~25x faster
    than a numpy reduction)."""
    import cv2

    h, w = image.shape
    return cv2.resize(image.astype(np.float32, copy=False), (w // patch, h // patch), interpolation=cv2.INTER_AREA)


def block_sum(patches: np.ndarray) -> np.ndarray:
    """(rows, cols) -> (rows/2, cols/2) sum over 2x2 patch blocks."""
    r, c = patches.shape
    return patches.reshape(r // 2, 2, c // 2, 2).sum(axis=(1, 3), dtype=np.float32)


def robust_normalise(x: np.ndarray, percentile: float, floor: float, clip: float) -> np.ndarray:
    """``x / max(percentile of x, floor)``, capped at ``clip``. The percentile is a nearest-rank order statistic."""
    flat = x.reshape(-1)
    k = min(len(flat) - 1, max(0, int(round(percentile / 100.0 * (len(flat) - 1)))))
    scale = max(float(np.partition(flat, k)[k]), floor)
    return np.minimum(x / scale, clip).astype(np.float32, copy=False)


class MotionField:
    """Rasterises MVs of a fixed source size onto macroblock cells and samples the cells at ``grid`` pixels.

    ``__call__(mvs) -> (flow (H, W, 2) float32 canvas px towards the past reference, magnitude (H, W) float32)``.
    """

    def __init__(self, src_height: int, src_width: int, grid: CanvasGrid, magnitude_scale: float | None = None,
                 relative: bool = False):
        """``grid``: where the field is sampled (flow in its pixels); ``magnitude_scale``: source px -> the unit of the
        magnitude (default: ``grid`` pixels); ``relative``: magnitudes relative to the camera's motion."""
        self.src_size = (src_height, src_width)
        self.relative = relative
        self.cells = (-(-src_height // MV_CELL), -(-src_width // MV_CELL))
        self.scale = np.array([grid.width / src_width, grid.height / src_height], dtype=np.float32)
        self.magnitude_scale = float(self.scale.mean()) if magnitude_scale is None else magnitude_scale
        # canvas pixel centre -> source cell (nearest), once per size. The map is separable and non-decreasing, so
        # sampling is a row and a column repeat of the cell field (5x faster than cv2.remap, identical values).
        ys = ((np.arange(grid.height) + 0.5) * src_height / grid.height // MV_CELL).astype(np.intp)
        xs = ((np.arange(grid.width) + 0.5) * src_width / grid.width // MV_CELL).astype(np.intp)
        self._row_repeats = np.bincount(ys, minlength=self.cells[0])
        self._col_repeats = np.bincount(xs, minlength=self.cells[1])

    def cell_means(self, mvs: np.ndarray, future: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(cells, 2) mean past-reference motion (``future``: future-reference motion) in source px and (cells,) mean
        magnitude, per cell.

        With ``relative`` the magnitude is taken after subtracting the camera's motion (the median vector per
        reference direction), so a pan scores its moving objects, not every block. Vectors with neither motion nor
        relative motion (most of a still scene) are dropped first: they add nothing to a sum.
        """
        ch, cw = self.cells
        n_cells = ch * cw
        flow = np.zeros((n_cells, 2), np.float32)
        magnitude = np.zeros(n_cells, np.float32)
        if mvs is None or len(mvs) == 0:
            return flow, magnitude
        motion_x, motion_y = mvs["motion_x"], mvs["motion_y"]
        if not self.relative:
            # most MVs of a still scene are zero: drop them on the integer fields, before any float work
            keep = np.flatnonzero((motion_x != 0) | (motion_y != 0))
            if not len(keep):
                return flow, magnitude
            scale = np.maximum(mvs["motion_scale"][keep].astype(np.float32), 1.0)
            mx, my = motion_x[keep] / scale, motion_y[keep] / scale
            rx, ry = mx, my
        else:
            scale = np.maximum(mvs["motion_scale"].astype(np.float32), 1.0)
            mx, my = motion_x / scale, motion_y / scale
            rx, ry = mx, my
            ahead = mvs["source"] > 0
            for sel in (~ahead, ahead):
                if sel.any():
                    rx = np.where(sel, mx - np.median(mx[sel]), rx)
                    ry = np.where(sel, my - np.median(my[sel]), ry)
            keep = np.flatnonzero((mx != 0) | (my != 0) | (rx != 0) | (ry != 0))
            if not len(keep):
                return flow, magnitude
            mx, my, rx, ry = mx[keep], my[keep], rx[keep], ry[keep]
        # plain arrays of the kept MVs' fields (indexing the padded structured array copies field by field)
        source, dst_x, dst_y = mvs["source"][keep], mvs["dst_x"][keep], mvs["dst_y"][keep]
        bw, bh = mvs["w"][keep].astype(np.int32), mvs["h"][keep].astype(np.int32)
        if bw.max() <= MV_CELL and bh.max() <= MV_CELL:       # H.264: each MV lies in one cell, named by its centre
            cx = np.clip(dst_x // MV_CELL, 0, cw - 1)
            cy = np.clip(dst_y // MV_CELL, 0, ch - 1)
            cell = cy * cw + cx
            weight = np.hypot(rx, ry)
        else:                                                  # larger blocks: every (MV, covered cell) pair
            x0 = (dst_x - bw // 2) // MV_CELL
            y0 = (dst_y - bh // 2) // MV_CELL
            nx, ny = np.maximum(bw // MV_CELL, 1), np.maximum(bh // MV_CELL, 1)
            dx, dy = self._offsets(int(nx.max()), int(ny.max()))
            cx, cy = x0[:, None] + dx, y0[:, None] + dy
            ok = (dx < nx[:, None]) & (dy < ny[:, None]) & (cx >= 0) & (cx < cw) & (cy >= 0) & (cy < ch)
            mv_of, cell = np.nonzero(ok)[0], (cy * cw + cx)[ok]
            source, mx, my, weight = source[mv_of], mx[mv_of], my[mv_of], np.hypot(rx, ry)[mv_of]
        count = np.bincount(cell, minlength=n_cells)
        magnitude[:] = np.bincount(cell, weights=weight, minlength=n_cells) / np.maximum(count, 1)
        past = source > 0 if future else source < 0
        cell = cell[past]
        pcount = np.maximum(np.bincount(cell, minlength=n_cells), 1)
        flow[:, 0] = np.bincount(cell, weights=mx[past], minlength=n_cells) / pcount
        flow[:, 1] = np.bincount(cell, weights=my[past], minlength=n_cells) / pcount
        return flow, magnitude

    @staticmethod
    @functools.lru_cache(maxsize=8)
    def _offsets(nx: int, ny: int) -> tuple[np.ndarray, np.ndarray]:
        """(1, nx*ny) cell offsets (dx, dy) covering the largest MV block."""
        dx, dy = np.meshgrid(np.arange(nx, dtype=np.int32), np.arange(ny, dtype=np.int32))
        return dx.reshape(1, -1), dy.reshape(1, -1)

    def cell_fields(self, mvs: np.ndarray, future: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``cell_means`` in output units: flow (ch, cw, 2) in ``grid`` px, magnitude (ch, cw)."""
        flow, magnitude = self.cell_means(mvs, future)
        ch, cw = self.cells
        return (flow * self.scale).reshape(ch, cw, 2), (magnitude * self.magnitude_scale).reshape(ch, cw)

    def sample(self, cells: np.ndarray) -> np.ndarray:
        """(ch, cw, ...) cell field -> (H, W, ...) at ``grid`` pixels (nearest cell)."""
        return np.repeat(np.repeat(cells, self._row_repeats, axis=0), self._col_repeats, axis=1)

    def __call__(self, mvs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flow, magnitude = self.cell_fields(mvs)
        return self.sample(flow), self.sample(magnitude)


def analysis_grid(grid: CanvasGrid) -> CanvasGrid:
    """The grid saliency works on: half the canvas (patches of p/2 px) when the patch size is even, else the canvas."""
    if grid.patch % 2:
        return grid
    return CanvasGrid(grid.height // 2, grid.width // 2, grid.patch // 2)


class SaliencyScorer:
    """Scores frames of one source size on one canvas grid. Stateless across frames: the caller keeps the previous
    frame's ``analysis_luma``, so resets (cuts, resolution changes) stay in one place."""

    def __init__(self, src_height: int, src_width: int, grid: CanvasGrid, config: SaliencyConfig = SaliencyConfig()):
        import cv2

        self.grid, self.config = grid, config
        self.analysis = analysis_grid(grid)
        self.motion = MotionField(src_height, src_width, self.analysis,
                                  magnitude_scale=(grid.width / src_width + grid.height / src_height) / 2,
                                  relative=config.camera_motion)
        a = self.analysis
        gx, gy = np.meshgrid(np.arange(a.width, dtype=np.float32), np.arange(a.height, dtype=np.float32))
        self._base = np.stack([gx, gy], axis=-1)
        self._map = np.empty_like(self._base)     # reused: warp() runs for every frame
        self._cv2 = cv2

    def analysis_luma(self, canvas_luma: np.ndarray) -> np.ndarray:
        """(H, W) canvas luma -> (H/2, W/2) uint8 (area average; cv2's exact-2x fast path)."""
        a = self.analysis
        if a is self.grid:
            return canvas_luma
        return self._cv2.resize(canvas_luma, (a.width, a.height), interpolation=self._cv2.INTER_AREA)

    def warp(self, previous: np.ndarray, flow: np.ndarray) -> np.ndarray:
        """Motion-compensated prediction of this frame from ``previous`` (h, w) uint8 with ``flow`` (h, w, 2)."""
        cv2 = self._cv2
        np.add(self._base, flow, out=self._map)
        return cv2.remap(previous, self._map, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def score(self, luma: np.ndarray, previous: np.ndarray | None, mvs: np.ndarray | None) -> FrameSaliency:
        """``luma``, ``previous``: ``analysis_luma`` of this and the previous frame (None: stream start)."""
        cfg, grid, patch = self.config, self.grid, self.analysis.patch
        if previous is None:
            zeros = np.zeros((grid.rows, grid.cols), np.float32)
            return FrameSaliency(zeros, block_sum(zeros), 0.0)
        if mvs is None or len(mvs) == 0:          # intra: everything is new relative to the unwarped past
            magnitude = None
            diff = self._cv2.absdiff(luma, previous)
        else:
            flow, magnitude = self.motion.cell_fields(mvs)
            # a still frame (all MVs zero, common for a parked robot) skips the identity warp and the all-zero motion
            # term: same values, 0.1-0.2 ms less per frame
            prediction = self.warp(previous, self.motion.sample(flow)) if flow.any() else previous
            diff = self._cv2.absdiff(luma, prediction)
            if not magnitude.any():
                magnitude = None
        change = self._cv2.mean(diff)[0]          # 10x faster than ndarray.mean on uint8
        residual = np.maximum(patch_mean(diff, patch) - cfg.residual_noise, 0.0)
        fused = cfg.residual_weight * robust_normalise(residual, cfg.percentile, cfg.residual_floor, cfg.clip)
        if magnitude is not None:
            motion = patch_mean(self.motion.sample(magnitude), patch)
            fused += cfg.motion_weight * robust_normalise(motion, cfg.percentile, cfg.motion_floor, cfg.clip)
        return FrameSaliency(fused, block_sum(fused), change)


# --- bit-cost estimate (the official tool's block scores, without its patched decoder) ------------------------------
# The official tool scores a frame by its per-macroblock bit cost from a patched libavcodec: ``log1p(bits)`` divided
# by the frame's 99th percentile, clipped to [0, 1], resized (nearest) from the macroblock grid *with FFmpeg's extra
# mb_stride column* (always 0) onto the canvas, and summed over each 2x2-patch block. Stock FFmpeg exports no bits,
# so ``BitCostEstimator`` estimates ``log1p(bits)`` per macroblock from what PyAV gives, then applies the same map.

@dataclass(frozen=True)
class BitCostConfig:
    """Weights of the per-macroblock estimate ``log1p(luma residual) + chroma x log1p(chroma residual) + intra x
    [intra MB] + mvd x log2(1 + |MV - MV of the neighbours|)``; measured against the official maps by
    ``bench/fidelity.py`` (per-frame Spearman).

    Measured and left out (median per-frame Spearman, bikes.mp4 / moving 720p, against 0.59 / 0.54 for this estimate
    before its chroma term): bits counted the way the entropy coder spends them (4x4 DCT of the full-size residual
    quantised with each macroblock's QP from FFmpeg's ``venc_params`` side data, nonzero levels + log2 magnitudes)
    0.41-0.44 / 0.54; plus MV bits per partition against H.264's median predictor 0.43 / 0.44; the RMS residual
    divided by the QP step +0.00; a macroblock's cost spilled onto the next one in raster order (CABAC emits bytes
    late) +0.01 on bikes but -0.12 on event s0; the last non-B frame as reference (bikes' B-frames) -0.01 (mean
    +0.01); H.264's exact 6-tap quarter-pel luma prediction instead of the bilinear warp +0.00 (moving 720p: the
    luma residual was already right). The tool's maps count whole CABAC bytes (0, 8, 16 ... bits), and on pans most
    macroblocks that cost a byte are luma-exact: it is their chroma that x264 codes (the ``chroma`` term). On
    bikes.mp4 (B-frames, 3 references) it was the reference that was wrong: predicted from the frame shown before
    them, its P-frames read 0.68 and its B-frames 0.57; from their own references (``ov2_ros.codec.references``;
    B-frames bi-predicted) 0.77 and 0.70. Before that fix, counting a macroblock's sub-16x16 partitions (+0.6 x
    log1p) gave +0.02 on bikes.mp4 and -0.01 on the synthetic clips, and future MVs mirrored onto the past +0.00:
    neither is in."""

    intra: float = 2.0          # a macroblock without MVs in a P/B frame is intra-coded: it costs many bits
    # bench/fidelity.py, median per-frame Spearman on bikes.mp4: 0.54 (0), 0.59 (0.3), 0.62 (0.6), 0.63 (1.0), the
    # synthetic clips flat to 0.6. P-block Jaccard at 8 / 32 canvases (every B-frame MV, stride 4 from 720 lines),
    # 0.3 -> 0.45: bikes.mp4 0.40 / 0.34 -> 0.41 / 0.36, moving 1080p 0.37 / 0.53 -> 0.37 / 0.65, moving 720p
    # 0.69 / 0.64 -> 0.69 / 0.64, event s0 0.67 / 0.53 -> 0.66 / 0.53, event s1+5 0.51 / 0.48 -> 0.49 / 0.47; the
    # same group counts. From 0.6 on, bikes.mp4 forms 4 readiness groups at 16 canvases where the tool forms 5, its
    # last cut falls in the dropped tail and onset recall vs uniform loses 7 points (bench/tokenizer.py); 0.45 and
    # 0.5 keep it.
    mvd: float = 0.45
    residual_noise: float = 0.0  # grey levels of |luma - prediction| that cost nothing; 0: skip blocks are the
                                 # macroblocks predicted exactly (x264 codes a one-level change, and it costs bits)
    rms: bool = True            # root-mean-square residual per macroblock (a few large coefficients cost more
                                # than many small ones of the same mean)
    # Across frames the tool's maps follow the frame's AU size: a frame's mean block score goes as bits^0.4-0.7
    # (Spearman 0.92-0.94 over the frames of bikes.mp4 and moving 720p, against 0.40-0.77 for the estimate's own
    # mean). So each frame's estimated map is scaled by (bits / running bits)^au_scale; 0 leaves it alone. 0.15 by
    # measurement: mean P-block Jaccard with the tool's selection 0.39 (0), 0.43 (0.15), 0.44 (0.25, 0.5), but from
    # 0.25 on the objects' onset in bench/tokenizer.py's moving 720p clip loses its patches (event recall drops).
    au_scale: float = 0.15
    au_ema: float = 0.05        # smoothing of the running (geometric mean) bits per non-key frame
    # Cap the scaled macroblock values at 1, the official maps' ceiling (a frame of many bits then has more
    # macroblocks near 1, none above). Off by measurement (readiness groups and top-k on the tool's sampled frames,
    # bench/fidelity.py's 10 cases, and bench/tokenizer.py's onset recall): with au_scale 0.15 it lifts P-block
    # Jaccard on the synthetic clips (moving 720p @32 0.56 -> 0.67, event s0 @32 0.53 -> 0.66) but leaves event
    # s1+5 @32 with 63 frames with patches for the tool's 79 (was 81) and bikes.mp4 @32 at 0.34; with au_scale 0.25
    # and mvd 0.5 every case's Jaccard rises (bikes.mp4 @32 0.358, every group count exact), but at 16 canvases
    # bikes.mp4's last cut falls in the dropped tail and moving 720p forms 3 groups for 4: onset recall vs uniform
    # +20 instead of +40 points. Every au_scale above 0.15 measured (0.175-0.35, with or without the cap) lost
    # those onsets, and mvd 0.45-0.6 at 0.15 with the cap lost bikes.mp4's cut.
    au_cap: bool = False
    # Analysis size: 1 is the source resolution; None halves it from 480 lines. Full size by measurement
    # (bench/fidelity.py, median / mean / p10 per-frame Spearman): on the panning 720p clip half size gives
    # 0.53 / 0.43 / -0.17 and full size 0.53 / 0.57 / 0.36: a 9-px pan is 4.5 px at half size, whose bilinear warp
    # leaves texture in the residual of macroblocks x264 skips.
    shrink: int | None = 1
    # At shrink 1, the residual is taken at every stride-th pixel of every stride-th line, each predicted from the
    # full-size reference at its exact MV-displaced position: the full-size residual, subsampled (no resampled
    # reference, so no interpolation texture), at 1/stride^2 of the warp's cost. Median / mean / p10 Spearman, moving
    # 1080p: stride 1 0.51 / 0.54 / 0.41, 2 0.51 / 0.54 / 0.41, 4 0.51 / 0.54 / 0.41 (2.6 ms per sampled frame
    # at stride 2, 7.6 at 1). None: 4 from 720 lines, 2 from 480, else 1 (small frames are cheap; bikes.mp4 at
    # stride 2 ranks the same, but its readiness groups move). Stride 4 by measurement against 2 (bench/fidelity.py's
    # moving clips, median / mean / p10 Spearman, P-block Jaccard at 8 / 32 canvases, ms per sampled frame): 720p
    # 0.535 / 0.558 / 0.36 vs 0.535 / 0.56 / 0.36, Jaccard 0.69 / 0.64 vs 0.68 / 0.56, 0.7 vs 1.9 ms; 1080p 0.51 /
    # 0.53 / 0.39 for both, Jaccard 0.37 / 0.53 for both, 1.1 vs 4.5 ms.
    stride: int | None = None
    # Weight of ``log1p`` of the chroma residual (RMS over U and V per macroblock, both planes predicted with the
    # macroblock's MV at chroma scale, as H.264's bilinear chroma prediction does, at every 2nd chroma pixel from 720
    # lines; about 1 ms per sampled 1080p frame). x264 codes a macroblock whose luma is predicted exactly when its
    # chroma is not: on moving 720p (frame 100) 61% of the macroblocks are coded (FFmpeg's debug=mb_type log), 95% of
    # them luma-exact under H.264's own prediction, and a chroma residual explains 94% of them. Median per-frame
    # Spearman (bench/fidelity.py; bikes.mp4 / event s0 / moving 720p): 0 0.61 / 0.67 / 0.54, 0.5 0.61 / 0.75 /
    # 0.77, 1.0 0.60 / 0.75 / 0.76, 1.5 0.59 / 0.75 / 0.75. 0.4 for the structure: frames with patches within 15%
    # of the tool's in 8 of 10 cases and every P-block Jaccard goal met, where 0.3 misses bikes.mp4's Jaccard at 32
    # canvases (0.3496), 0.5 moving 1080p at 32 canvases (156 / 192 frames) and 1.0 three cases. Chroma at the
    # luma's own step (every 4th pixel) ranks the same by median but lowers the p10 (moving 720p 0.61 -> 0.54) and
    # moved moving 1080p at 32 canvases to 5 groups for the tool's 6.
    chroma: float = 0.4


class _CellWarp:
    """Motion compensation of one plane by a per-macroblock flow, sampled at every ``step``-th pixel of every
    ``step``-th line: ``cell`` output pixels per macroblock side, output ``size`` (h, w). The sampling maps are laid
    out (mb_rows, cell, padded width) so that each macroblock row's flow, repeated along x, is added in one broadcast
    over the cell's lines (a map made by resizing or repeating the cell flow to full size cost 3-4x more at 1080p)."""

    def __init__(self, rows: int, cols: int, cell: int, step: int, size: tuple[int, int]):
        import cv2

        self._cv2, self.rows, self.cols, self.cell, self.size = cv2, rows, cols, cell, size
        self.padded = (rows * cell, cols * cell)
        self._base_x = np.broadcast_to(np.arange(cols * cell, dtype=np.float32) * float(step),
                                       (rows, cell, cols * cell))
        self._base_y = np.broadcast_to(np.arange(rows * cell, dtype=np.float32).reshape(rows, cell, 1) * float(step),
                                       (rows, cell, cols * cell))
        self._map_x = np.empty((rows, cell, cols * cell), np.float32)
        self._map_y = np.empty_like(self._map_x)

    def __call__(self, refs: tuple[np.ndarray, ...], flow: np.ndarray) -> list[np.ndarray]:
        """The predictions (``size``, uint8) from full planes ``refs`` (sharing one flow, as U and V do) and the
        (rows, cols, 2) flow in their px, bilinear; the sampling maps are made once for all of them."""
        cv2 = self._cv2
        along_x = np.repeat(flow, self.cell, axis=1)                       # (mb_rows, padded width, 2)
        np.add(self._base_x, along_x[:, None, :, 0], out=self._map_x)
        np.add(self._base_y, along_x[:, None, :, 1], out=self._map_y)
        h, w = self.size
        ph, pw = self.padded
        map_x, map_y = self._map_x.reshape(ph, pw)[:h, :w], self._map_y.reshape(ph, pw)[:h, :w]
        return [cv2.remap(ref, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE) for ref in refs]

    def expand(self, cells: np.ndarray) -> np.ndarray:
        """(rows, cols) per-macroblock values -> (h, w) at this plane's sampling."""
        h, w = self.size
        return np.repeat(np.repeat(cells, self.cell, axis=0), self.cell, axis=1)[:h, :w]

    def predict(self, past: tuple[np.ndarray, ...], flow: np.ndarray, step: int,
                bi: tuple | None = None) -> list[np.ndarray]:
        """Predictions of planes at this sampling from the reference planes ``past`` moved by ``flow`` (unmoved when
        the flow is zero: their every ``step``-th pixel); with ``bi`` = (future planes, their flow, direction), the
        macroblocks of direction 1 are predicted from the future planes and those of direction 2 from the rounded
        mean of both, as H.264's default bi-prediction."""
        h, w = self.size
        if flow.any():
            preds = self(past, flow)
        else:      # views of the references, unless they are written below
            preds = [p[: h * step: step, : w * step: step] for p in past]
            preds = preds if bi is None else [p.copy() for p in preds]
        if bi is None:
            return preds
        cv2 = self._cv2
        future, future_flow, direction = bi
        d = self.expand(direction)
        ahead, both = cv2.compare(d, 1, cv2.CMP_EQ), cv2.compare(d, 2, cv2.CMP_EQ)
        for p, f in zip(preds, self(future, future_flow)):
            # H.264's rounding, (a + b + 1) >> 1, in uint8: a one-level error (cv2.addWeighted rounds half to even)
            # leaves a residual in the macroblocks x264 predicts exactly and skips (bikes.mp4 Spearman 0.72 -> 0.67)
            mean = cv2.subtract(cv2.bitwise_or(p, f), cv2.bitwise_xor(p, f) >> 1)
            cv2.copyTo(f, ahead, p)
            cv2.copyTo(mean, both, p)
        return preds

    def mb_mean(self, image: np.ndarray) -> np.ndarray:
        """(h, w) at this plane's sampling -> (rows, cols) float32 mean over each macroblock. A partial bottom row of
        macroblocks (1080 lines) is averaged over its lines, without padding the whole plane; other edges are padded
        by replication."""
        cv2 = self._cv2
        ph, pw = self.padded
        h, w = image.shape
        rows, cols = self.rows, self.cols
        image = image.astype(np.float32, copy=False)
        if w != pw:
            image = cv2.copyMakeBorder(image, 0, ph - h, 0, pw - w, cv2.BORDER_REPLICATE)
        elif h != ph:
            full = (rows - 1) * self.cell
            out = np.empty((rows, cols), np.float32)
            out[:-1] = cv2.resize(image[:full], (cols, rows - 1), interpolation=cv2.INTER_AREA)
            out[-1] = cv2.resize(image[full:], (cols, 1), interpolation=cv2.INTER_AREA)[0]
            return out
        return cv2.resize(image, (cols, rows), interpolation=cv2.INTER_AREA)


class MacroblockMap:
    """Maps (mb_rows, mb_cols) macroblock values onto a canvas' 2x2 blocks as the official tool does (extra zero
    column, nearest resize, sum over each block): ``blocks = rows.T @ map @ cols``."""

    def __init__(self, src_height: int, src_width: int, grid: CanvasGrid):
        import cv2

        self.mb_rows, self.mb_cols = -(-src_height // MV_CELL), -(-src_width // MV_CELL)
        b = 2 * grid.patch

        def counts(n_src: int, n_dst: int, n_blocks: int) -> np.ndarray:
            idx = cv2.resize(np.arange(n_src, dtype=np.float32)[None, :], (n_dst, 1),
                             interpolation=cv2.INTER_NEAREST)[0].astype(np.intp)
            out = np.zeros((n_src, n_blocks), np.float32)
            np.add.at(out, (idx, np.arange(n_dst) // b), 1.0)
            return out

        self.rows = counts(self.mb_rows, grid.height, grid.block_rows)          # (mb_rows, BR)
        self.cols = counts(self.mb_cols + 1, grid.width, grid.block_cols)[:-1]  # stride column is 0: drop its row

    def __call__(self, mb: np.ndarray) -> np.ndarray:
        return (self.rows.T @ mb.astype(np.float32) @ self.cols).astype(np.float32)


def normalise_log_bits(log_bits: np.ndarray) -> np.ndarray:
    """The official per-frame normalisation of ``log1p(bits)``: divided by its 99th percentile (linear), in [0, 1].
    The percentile is ``np.percentile``'s, from a two-element partition (10x faster than its full sort)."""
    flat = np.asarray(log_bits, dtype=np.float64).reshape(-1)
    pos = 0.99 * (len(flat) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(flat) - 1)
    part = np.partition(flat, [lo, hi])
    scale = max(float(part[lo] + (pos - lo) * (part[hi] - part[lo])), 1e-6)
    return np.clip(log_bits / scale, 0.0, 1.0)


class _Size:
    def __init__(self, height: int, width: int):
        self.height, self.width = height, width


MIN_ANALYSIS_LINES = 240     # half size (shrink) or stride 2 while this many lines remain (BitCostConfig: None)
STRIDE_4_LINES = 720         # stride 4 from this many source lines (BitCostConfig.stride None)


class BitCostEstimator:
    """Estimated official block scores of one source size on one canvas grid.

    ``score(luma, reference, mvs, intra_frame)``: full-resolution Y planes of the frame and of the frame decoded
    before it (its usual reference; None at stream start) -> (block_rows, block_cols) float32. Works at
    ``BitCostConfig.shrink`` (default: source size) and ``stride``. Measured against the tool's maps (median / mean /
    p10 per-frame Spearman): 1080p full 0.51 / 0.54 / 0.41, half 0.47 / 0.34 / -0.13, quarter 0.17 / - / -0.18;
    720p full 0.54 / 0.57 / 0.38, half 0.54 / 0.43 / -0.17. Per sampled 1080p frame: full ~8 ms, full at stride 2
    and half ~3 ms, full at stride 4 (the default from 720 lines) ~1 ms.
    """

    def __init__(self, src_height: int, src_width: int, grid: CanvasGrid, config: BitCostConfig = BitCostConfig()):
        import cv2

        self.config, self._cv2 = config, cv2
        if any(v is not None and v not in (1, 2, 4) for v in (config.shrink, config.stride)):
            raise ConfigError(f"BitCostConfig.shrink and stride must be 1, 2, 4 or None, got {config.shrink!r}, "
                              f"{config.stride!r}")
        lines = min(src_height, src_width)
        auto = 2 if lines // 2 >= MIN_ANALYSIS_LINES else 1
        self.shrink = auto if config.shrink is None else config.shrink
        auto_stride = 4 if lines >= STRIDE_4_LINES else auto
        self.stride = 1 if self.shrink > 1 else auto_stride if config.stride is None else config.stride
        ref_size = (src_height // self.shrink, src_width // self.shrink)          # the reference plane's
        self.size = (-(-ref_size[0] // self.stride), -(-ref_size[1] // self.stride))  # the residual's
        self.map = MacroblockMap(src_height, src_width, grid)
        self.motion = MotionField(src_height, src_width, _Size(*ref_size), magnitude_scale=1.0)
        rows, cols = self.map.mb_rows, self.map.mb_cols
        self._luma = _CellWarp(rows, cols, MV_CELL // (self.shrink * self.stride), self.stride, self.size)
        # chroma (4:2:0, 8 px per macroblock) at the luma's sampling step (half its density per axis), predicted from
        # the full plane
        self._chroma_step = step = max(1, self.shrink * self.stride // 2)
        ch, cw = -(-src_height // 2), -(-src_width // 2)
        self._chroma = _CellWarp(rows, cols, MV_CELL // 2 // step, step, (-(-ch // step), -(-cw // step)))
        self._log_rate: float | None = None
        self._last: tuple[np.ndarray, np.ndarray] | None = None

    def observe(self, bits: int, key_frame: bool) -> None:
        """Every decoded frame's AU size, sampled or not (keyframes left out): the running rate ``score`` scales by."""
        if key_frame or bits <= 0:
            return
        lb = float(np.log(bits))
        a = self.config.au_ema
        self._log_rate = lb if self._log_rate is None else (1 - a) * self._log_rate + a * lb

    def _analysis(self, luma: np.ndarray) -> np.ndarray:
        """The plane at analysis size (shrunk, or every stride-th pixel); the last result is kept, so a frame scored
        now and used as the next frame's reference (consecutive sampled frames) is shrunk once."""
        from ov2_ros.codec.packing import resize_plane

        if self._last is not None and self._last[0] is luma:
            return self._last[1]
        s = self.stride
        out = (resize_plane(luma, *self.size) if self.shrink > 1
               else np.ascontiguousarray(luma[: self.size[0] * s: s, ::s]))
        self._last = (luma, out)
        return out

    def _mb_mean(self, image: np.ndarray) -> np.ndarray:
        """(h, w) at analysis size -> (mb_rows, mb_cols) float32 mean over each macroblock."""
        return self._luma.mb_mean(image)

    def warp(self, ref: np.ndarray, flow: np.ndarray) -> np.ndarray:
        """Motion-compensated prediction, ``size`` uint8, from the reference plane (shrunk by ``shrink``, at full size
        with a stride) and the (mb_rows, mb_cols, 2) macroblock flow in its px (each macroblock's mean past-reference
        MV), bilinear."""
        return self._luma((ref,), flow)[0]

    def _directions(self, mvs: np.ndarray, cell: np.ndarray, ahead: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A B-frame's (mb_rows, mb_cols, 2) mean future-reference flow (analysis px) and the (mb_rows, mb_cols)
        direction of each macroblock's prediction: 0 past (or no MV), 1 future only, 2 both. ``cell``: each MV's
        macroblock (raster index), ``ahead``: which MVs point to the future."""
        rows, cols = self.map.mb_rows, self.map.mb_cols
        future_flow, _ = self.motion.cell_fields(mvs, future=True)
        has_future = np.bincount(cell[ahead], minlength=rows * cols).reshape(rows, cols) > 0
        has_past = np.bincount(cell[~ahead], minlength=rows * cols).reshape(rows, cols) > 0
        return future_flow, (has_future.astype(np.uint8) * (1 + has_past)).astype(np.uint8)

    def _ref_plane(self, plane: np.ndarray, cached: bool = False) -> np.ndarray:
        """The plane the luma warp samples: the shrunk reference (``cached``: through ``_analysis``'s cache, for the
        past reference that may be the last frame scored), or the full-size one at a stride."""
        from ov2_ros.codec.packing import resize_plane

        if self.shrink > 1:
            return self._analysis(plane) if cached else resize_plane(plane, *self.size)
        return plane[: self.size[0] * self.stride]

    def _chroma_residual(self, chroma: tuple, flow: np.ndarray, bi: tuple | None) -> np.ndarray:
        """(mb_rows, mb_cols) RMS (or mean, as ``rms``) residual over the U and V planes: ``chroma`` is ((U, V) of the
        frame, (U, V) of its past reference[, (U, V) of its future reference]), full-size planes; ``flow`` and ``bi``'s
        future flow in analysis px."""
        cv2, warp, step = self._cv2, self._chroma, self._chroma_step
        h, w = warp.size
        to_chroma = self.shrink / 2.0                                      # analysis px -> chroma px
        current, past = chroma[0], chroma[1]
        future = chroma[2] if len(chroma) > 2 else None
        bi_c = None if bi is None or future is None else (future, bi[0] * to_chroma, bi[1])
        preds = warp.predict(past, flow * to_chroma, step, bi_c)
        acc = np.zeros((h, w), np.float32)        # U and V summed before the one macroblock mean (it is linear)
        for cur, pred in zip(current, preds):
            diff = cv2.absdiff(np.ascontiguousarray(cur[: h * step: step, : w * step: step]), pred)
            (cv2.accumulateSquare if self.config.rms else cv2.accumulate)(diff, acc)
        total = warp.mb_mean(acc)
        return np.sqrt(total) if self.config.rms else total

    def log_bits(self, luma: np.ndarray, reference: np.ndarray | None, mvs: np.ndarray | None,
                 intra_frame: bool, chroma: tuple | None = None, future: np.ndarray | None = None) -> np.ndarray:
        """(mb_rows, mb_cols) estimate of ``log1p(bits)`` per macroblock. ``reference``: the luma of the picture's
        past reference; ``future``: of its future one (B-frames; None: every macroblock from the past); ``chroma``:
        ((U, V) of this frame, (U, V) of the past reference[, (U, V) of the future one]), full-size 4:2:0 planes, for
        the chroma residual term (None leaves it out). See ``ov2_ros.codec.references`` for which pictures."""
        cv2, cfg = self._cv2, self.config
        intra = intra_frame or reference is None or mvs is None or len(mvs) == 0
        # the reference first: it may be the last ``cur``, still cached
        ref = self._ref_plane(reference, cached=True) if not intra else None
        cur = self._analysis(luma)
        if intra:
            # intra: texture is what costs bits
            grad = cv2.absdiff(cur[:, 1:], cur[:, :-1])
            return np.log1p(self._mb_mean(cv2.copyMakeBorder(grad, 0, 0, 0, 1, cv2.BORDER_REPLICATE)))
        flow, _ = self.motion.cell_fields(mvs)
        rows, cols = self.map.mb_rows, self.map.mb_cols
        cell = np.clip(mvs["dst_y"] // MV_CELL, 0, rows - 1) * cols + np.clip(mvs["dst_x"] // MV_CELL, 0, cols - 1)
        ahead = mvs["source"] > 0 if future is not None else None
        bi = self._directions(mvs, cell, ahead) if ahead is not None and ahead.any() else None
        step = 1 if self.shrink > 1 else self.stride
        luma_bi = None if bi is None else ((self._ref_plane(future),), *bi)
        pred = self._luma.predict((ref,), flow, step, luma_bi)[0]
        diff = cv2.absdiff(cur, pred)
        if cfg.rms:
            residual = np.sqrt(self._mb_mean(cv2.multiply(diff, diff, dtype=cv2.CV_32F)))
        else:
            residual = self._mb_mean(diff)
        residual = np.maximum(residual - cfg.residual_noise, 0.0)
        est = np.log1p(residual)
        if cfg.chroma and chroma is not None:
            est += cfg.chroma * np.log1p(self._chroma_residual(chroma, flow, bi))
        count = np.bincount(cell, minlength=rows * cols).reshape(rows, cols)
        if cfg.intra:
            est += cfg.intra * (count == 0)
        if cfg.mvd:
            # the cell flow is in analysis px: back to source px, the unit MVs are coded in. A B-frame's macroblocks
            # predicted from the future alone are compared by their future MVs
            coded = flow if bi is None else np.where((bi[1] == 1)[..., None], bi[0], flow)
            fx, fy = coded[..., 0] * self.shrink, coded[..., 1] * self.shrink
            dx = fx - cv2.medianBlur(np.ascontiguousarray(fx, np.float32), 3)
            dy = fy - cv2.medianBlur(np.ascontiguousarray(fy, np.float32), 3)
            est += cfg.mvd * np.log2(1.0 + np.hypot(dx, dy))
        return est

    def score(self, luma: np.ndarray, reference: np.ndarray | None, mvs: np.ndarray | None,
              intra_frame: bool = False, bits: int | None = None, chroma: tuple | None = None,
              future: np.ndarray | None = None) -> np.ndarray:
        """Block scores; with ``bits`` (this frame's AU size, after ``observe``) scaled by the AU size; ``chroma`` and
        ``future`` as in ``log_bits``."""
        mb = normalise_log_bits(self.log_bits(luma, reference, mvs, intra_frame, chroma, future))
        gamma = self.config.au_scale
        if bits is not None and gamma and self._log_rate is not None and bits > 0:
            mb = mb * float(np.exp(gamma * (np.log(bits) - self._log_rate)))
            if self.config.au_cap:
                mb = np.minimum(mb, 1.0, out=mb)
        return self.map(mb)
