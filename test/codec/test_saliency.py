"""Saliency: MV rasterisation, motion compensation, and scores on real libx264 frames."""
import numpy as np
import pytest

from ov2_ros.codec.decoder import MV_DTYPE, StreamDecoder
from ov2_ros.codec.packing import CanvasGrid, resize_plane
from ov2_ros.codec.saliency import MotionField, SaliencyScorer, block_sum, patch_mean, robust_normalise


def _mvs(rows):
    """Structured MV array (FFmpeg AVMotionVector layout) from (w, h, dst_x, dst_y, motion_x, motion_y, scale)."""
    out = np.zeros(len(rows), dtype=MV_DTYPE)
    for i, (w, h, dx, dy, mx, my, sc) in enumerate(rows):
        out[i]["source"], out[i]["w"], out[i]["h"] = -1, w, h
        out[i]["dst_x"], out[i]["dst_y"] = dx, dy
        out[i]["src_x"], out[i]["src_y"] = dx + mx // sc, dy + my // sc
        out[i]["motion_x"], out[i]["motion_y"], out[i]["motion_scale"] = mx, my, sc
    return out


def test_motion_field_places_vectors_on_their_blocks():
    grid = CanvasGrid(56, 56, 14)                  # source 64x64 -> canvas 56x56
    field = MotionField(64, 64, grid)
    # one 16x16 macroblock centred at (24, 8) moved by (+8, -4) quarter-pel -> (2, -1) source px
    flow, mag = field(_mvs([(16, 16, 24, 8, 8, -4, 4), (16, 16, 8, 40, 0, 0, 4)]))
    assert flow.shape == (56, 56, 2) and mag.shape == (56, 56)
    scale = 56 / 64
    inside = flow[2:12, 18:26]                      # canvas pixels whose centres fall in source x 16..31, y 0..15
    np.testing.assert_allclose(inside[..., 0], 2 * scale, rtol=1e-6)
    np.testing.assert_allclose(inside[..., 1], -1 * scale, rtol=1e-6)
    np.testing.assert_allclose(mag[2:12, 18:26], np.hypot(2, 1) * scale, rtol=1e-6)
    assert np.abs(flow[40:, :]).max() == 0 and mag[40:, :].max() == 0     # the zero-motion block and empty cells


def test_motion_field_partitions_and_future_refs():
    grid = CanvasGrid(56, 56, 14)
    field = MotionField(56, 56, grid)
    # macroblock 0: two 8x8 partitions (averaged); macroblock 1: a future-reference MV (B-frame)
    mvs = _mvs([(8, 8, 4, 4, 4, 0, 1), (8, 8, 12, 4, 8, 0, 1), (16, 16, 24, 8, -4, 0, 1)])
    mvs[2]["source"] = 1
    flow, mag = field(mvs)
    assert (flow[0:16, 0:16, 0] == 6).all() and (mag[0:16, 0:16] == 6).all()
    assert flow[0:16, 16:32].max() == 0 and (mag[0:16, 16:32] == 4).all()      # magnitude yes, warp no


def test_motion_field_blocks_larger_than_a_cell():
    grid = CanvasGrid(112, 112, 14)
    flow, mag = MotionField(112, 112, grid)(_mvs([(32, 32, 48, 16, 8, 8, 4)]))   # 32x32 block at x 32..63
    assert (flow[0:32, 32:64] == 2).all() and flow[32:, :].max() == 0 and flow[:, :32].max() == 0


def test_empty_mvs_give_zero_field():
    grid = CanvasGrid(28, 28, 14)
    flow, mag = MotionField(28, 28, grid)(np.zeros(0, MV_DTYPE))
    assert not flow.any() and not mag.any()


def test_warp_compensates_a_known_shift():
    grid = CanvasGrid(112, 112, 14)
    scorer = SaliencyScorer(112, 112, grid)
    assert scorer.analysis.size == (56, 56) and scorer.analysis.patch == 7        # saliency works at half size
    rng = np.random.default_rng(0)
    prev = rng.integers(0, 255, (56, 56), dtype=np.uint8)
    cur = np.roll(prev, 3, axis=1)                  # content moved 3 px right: cur(x) = prev(x - 3)
    flow = np.zeros((56, 56, 2), np.float32)
    flow[..., 0] = -3
    warped = scorer.warp(prev, flow)
    np.testing.assert_array_equal(warped[:, 3:], cur[:, 3:])


def test_zero_flow_warp_is_the_identity():
    # the still-frame shortcut in SaliencyScorer.score (all MVs zero: prediction = previous) relies on this
    grid = CanvasGrid(112, 168, 14)
    scorer = SaliencyScorer(120, 160, grid)
    prev = np.random.default_rng(2).integers(0, 255, scorer.analysis.size, dtype=np.uint8)
    np.testing.assert_array_equal(scorer.warp(prev, np.zeros((*scorer.analysis.size, 2), np.float32)), prev)


@pytest.mark.parametrize("src", [(272, 640), (1080, 1920), (240, 320)])
def test_motion_field_sampling_equals_nearest_cell_remap(src):
    import cv2

    grid = CanvasGrid.for_source(*src)
    field = MotionField(*src, grid)
    cells = np.random.default_rng(3).random((*field.cells, 2), dtype=np.float32)
    ys = ((np.arange(grid.height) + 0.5) * src[0] / grid.height // 16).astype(np.float32)
    xs = ((np.arange(grid.width) + 0.5) * src[1] / grid.width // 16).astype(np.float32)
    map_x, map_y = np.meshgrid(xs, ys)
    np.testing.assert_array_equal(field.sample(cells), cv2.remap(cells, map_x, map_y, cv2.INTER_NEAREST))


def test_reductions_and_normalisation():
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_allclose(patch_mean(x, 2), [[2.5, 4.5], [10.5, 12.5]])
    np.testing.assert_allclose(block_sum(x), [[0 + 1 + 4 + 5, 2 + 3 + 6 + 7], [8 + 9 + 12 + 13, 10 + 11 + 14 + 15]])
    quiet = np.full((4, 4), 0.1, np.float32)
    assert robust_normalise(quiet, 95, floor=2.0, clip=4).max() == pytest.approx(0.05)   # the floor keeps it small
    loud = np.zeros((10, 10), np.float32)
    loud[0, 0] = 1000
    assert robust_normalise(loud, 95, floor=1.0, clip=4).max() == 4                       # one outlier is capped


def _scores(clip):
    """Block scores and change for every frame of a clip, through the real decoder."""
    grid = CanvasGrid.for_source(clip.height, clip.width)
    scorer = SaliencyScorer(clip.height, clip.width, grid)
    dec = StreamDecoder("h264", threads="none")
    frames = [f for au in clip.aus for f in dec.decode(au)] + dec.flush()
    prev, out = None, []
    for f in frames:
        luma = scorer.analysis_luma(resize_plane(f.luma, grid.height, grid.width))
        out.append(scorer.score(luma, prev, f.mvs))
        prev = luma
    return grid, out


def test_scores_on_the_event_clip(clip):
    grid, sal = _scores(clip)
    assert len(sal) == clip.num_frames
    assert sal[0].blocks.max() == 0                                   # stream start: nothing to compare
    static = [s.blocks.max() for s in sal[15:30]] + [s.blocks.max() for s in sal[75:90]]
    assert max(static) < 0.2                                         # a still picture scores ~0
    sy, sx = grid.height / clip.height, grid.width / clip.width
    block = 2 * grid.patch
    hits = 0
    for t in range(31, 60):
        x0, y0, x1, y1 = clip.boxes[t]
        r, c = np.unravel_index(np.argmax(sal[t].blocks), sal[t].blocks.shape)
        # best block overlaps the moving square (a block of slack for the uncovered background behind it)
        if (y0 * sy - block <= r * block + block and r * block <= y1 * sy + block
                and x0 * sx - block <= c * block + block and c * block <= x1 * sx + block):
            hits += 1
        assert sal[t].blocks.max() > 1.0
    assert hits >= 27
    cut = sal[90]
    assert cut.change > 10 > max(s.change for i, s in enumerate(sal) if i != 90)   # IDR at 60 is not a change
    assert (cut.blocks > 0.5).mean() > 0.8                           # a cut is new everywhere


def test_camera_motion_is_discounted():
    """A pan moves every macroblock by the same vector: relative to it only the object that moves differently
    has motion; the warp still follows the true vectors."""
    grid = CanvasGrid(64, 64, 16)
    rows = [(16, 16, 8 + 16 * (i % 4), 8 + 16 * (i // 4), 16, 0, 4) for i in range(16)]    # 4x4 MBs, pan (4, 0)
    rows[5] = (16, 16, 24, 24, -16, 0, 4)                                                  # object: (-4, 0)
    pan = _mvs(rows)
    flow, mag = MotionField(64, 64, grid, relative=True)(pan)
    background = mag.copy()
    background[16:32, 16:32] = 0
    assert mag[16:32, 16:32].min() == 8 and background.max() == 0
    assert (flow[0:16, :, 0] == 4).all() and (flow[16:32, 16:32, 0] == -4).all()
    _, absolute = MotionField(64, 64, grid)(pan)
    assert absolute.min() == 4
