"""Canvas geometry and the 2x2-block packing layout."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ov2_ros.codec.packing import (CanvasGrid, block_positions, frame_blocks, i420_planes, pack_blocks, pack_blocks_yuv,
                                   pack_frame, patchify, resize_plane, smart_resize, yuv_to_rgb)
from ov2_ros.errors import ConfigError


@pytest.mark.parametrize("size, expected", [
    ((1080, 1920), (280, 504)),      # 16:9 -> 720 patches = 180 tokens (DESIGN.md)
    ((720, 1280), (280, 504)),
    ((240, 320), (252, 308)),        # small sources round to the nearest multiple, up or down
    ((120, 160), (112, 168)),
    ((10, 10), (28, 28)),
])
def test_smart_resize_known_sizes(size, expected):
    assert smart_resize(*size, factor=28, max_pixels=150_000) == expected


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4000), st.integers(1, 4000), st.integers(28 * 28, 400_000))
def test_smart_resize_invariants(h, w, max_pixels):
    ch, cw = smart_resize(h, w, 28, max_pixels)
    assert ch % 28 == 0 and cw % 28 == 0 and ch >= 28 and cw >= 28
    assert ch * cw <= max(max_pixels, 28 * 28)


def test_smart_resize_rejects_bad_input():
    with pytest.raises(ConfigError, match="positive"):
        smart_resize(0, 10)
    with pytest.raises(ValueError, match="max_pixels"):
        smart_resize(100, 100, max_pixels=100)


def test_grid_counts_and_bad_grid():
    g = CanvasGrid.for_source(1080, 1920)
    assert (g.rows, g.cols, g.num_patches, g.block_rows, g.block_cols, g.num_blocks) == (20, 36, 720, 10, 18, 180)
    with pytest.raises(ConfigError, match="multiple"):
        CanvasGrid(30, 28)


def test_block_positions_follow_2x2_block_order():
    pos = block_positions(np.array([[7, 1, 2], [9, 0, 0]]))
    np.testing.assert_array_equal(pos, [[7, 2, 4], [7, 2, 5], [7, 3, 4], [7, 3, 5],
                                        [9, 0, 0], [9, 0, 1], [9, 1, 0], [9, 1, 1]])


def _frame(grid, t):
    """A canvas-size RGB image whose every patch encodes (t, patch row, patch col), so patches are traceable."""
    img = np.zeros((grid.height, grid.width, 3), np.uint8)
    rows = np.repeat(np.arange(grid.rows), grid.patch)
    cols = np.repeat(np.arange(grid.cols), grid.patch)
    img[..., 0] = t
    img[..., 1] = rows[:, None]
    img[..., 2] = cols[None, :]
    return img


def test_i_canvas_patchifies_to_its_positions():
    grid = CanvasGrid(56, 84, 14)
    pixels, positions = pack_frame(5, _frame(grid, 5), grid)
    patches = patchify(pixels, 14)
    assert positions.shape == (grid.num_patches, 3)
    np.testing.assert_array_equal(patches[:, 0, 0, :], positions)
    # every patch of the frame exactly once
    assert len({tuple(p) for p in positions}) == grid.num_patches


def test_p_canvas_layout_sorting_and_padding():
    grid = CanvasGrid(56, 84, 14)                    # 2 x 3 blocks = capacity 6
    images = {t: _frame(grid, t) for t in (3, 4)}
    blocks = np.array([[4, 0, 2], [3, 1, 1], [3, 0, 0]])   # unsorted on purpose
    pixels, positions = pack_blocks(blocks, images, grid)
    assert pixels.shape == (56, 84, 3) and positions.shape == (24, 3) and positions.dtype == np.int32
    patches = patchify(pixels, 14)
    real = positions[:, 0] >= 0
    assert real.sum() == 12
    np.testing.assert_array_equal(positions[:4], block_positions(np.array([[3, 0, 0]])))   # (t, r, c) order
    np.testing.assert_array_equal(patches[real][:, 0, 0, :], positions[real])
    np.testing.assert_array_equal(positions[~real], -1)
    assert not patches[~real].any()                 # padding is black


def test_pack_rejects_overflow_and_wrong_size():
    grid = CanvasGrid(28, 28, 14)
    with pytest.raises(ConfigError, match="do not fit"):
        pack_blocks(np.array([[0, 0, 0], [1, 0, 0]]), {0: _frame(grid, 0), 1: _frame(grid, 1)}, grid)
    with pytest.raises(ConfigError, match="frame 2"):
        pack_frame(2, np.zeros((10, 10, 3), np.uint8), grid)


def test_frame_blocks_cover_grid():
    grid = CanvasGrid(56, 84, 14)
    fb = frame_blocks(1, grid)
    assert fb.shape == (6, 3) and (fb[:, 0] == 1).all()
    assert len({(r, c) for _, r, c in fb}) == 6


def test_yuv_packing_equals_rgb_packing():
    """Packing I420 planes and converting once gives the same canvas as converting every frame first."""
    grid = CanvasGrid(56, 84, 14)
    rng = np.random.default_rng(1)
    yuvs = {t: rng.integers(0, 256, (84, 84), dtype=np.uint8) for t in (2, 5)}
    blocks = np.array([[5, 1, 2], [2, 0, 1], [5, 0, 0]])
    a_pix, a_pos = pack_blocks_yuv(blocks, yuvs, grid)
    b_pix, b_pos = pack_blocks(blocks, {t: yuv_to_rgb(v) for t, v in yuvs.items()}, grid)
    np.testing.assert_array_equal(a_pix, b_pix)
    np.testing.assert_array_equal(a_pos, b_pos)
    assert not a_pix[28:, 28:].any()                # padding tiles are black after the conversion too
    y, u, v = i420_planes(yuvs[2])
    assert y.shape == (56, 84) and u.shape == v.shape == (28, 42)
    assert np.shares_memory(u, yuvs[2]) and np.shares_memory(v, yuvs[2])


def test_resize_plane_sizes():
    plane = np.arange(1080 * 1920, dtype=np.uint32).astype(np.uint8).reshape(1080, 1920)
    assert resize_plane(plane, 280, 504).shape == (280, 504)
    assert resize_plane(plane[:121, :161], 112, 168).shape == (112, 168)     # odd sizes, upscale
    flat = np.full((720, 1280), 77, np.uint8)
    assert (resize_plane(flat, 280, 504) == 77).all()                        # averaging keeps a flat level


@pytest.mark.parametrize("src, dst", [((1080, 1920), (280, 504)), ((560, 1008), (280, 504)), ((121, 161), (112, 168)),
                                      ((112, 168), (112, 168))])
def test_resize_plane_into_out_equals_a_fresh_result(src, dst):
    plane = np.random.default_rng(1).integers(0, 255, src, dtype=np.uint8)
    out = np.zeros((dst[0] + 5, dst[1]), np.uint8)[2: 2 + dst[0]]        # a contiguous slice of a larger buffer
    got = resize_plane(plane, *dst, out=out)
    assert got is out or np.shares_memory(got, out)
    np.testing.assert_array_equal(out, resize_plane(plane, *dst))


def test_attenuation_ranks_within_each_frame():
    from ov2_ros.codec.selection import attenuated_scores

    scores = np.array([[[4.0, 1.0], [2.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]])
    att = attenuated_scores(scores, 0.5)
    np.testing.assert_allclose(att[0], [4 / 1, 1 / 2, 2 / 1.5, 0])          # ranks 0, 2, 1, 3
    np.testing.assert_allclose(sorted(att[1], reverse=True), [1, 1 / 1.5, 1 / 2, 1 / 2.5])


def test_select_blocks_splits_mass_into_canvases():
    from ov2_ros.codec.selection import select_blocks

    # 4 frames, 1x4 blocks each. Frames 10 and 11 are busy (one strong block each), 12 and 13 quiet.
    blocks = np.zeros((4, 1, 4), np.float32)
    blocks[0, 0] = [3.0, 0.2, 0, 0]
    blocks[1, 0] = [0, 0, 3.0, 0.1]
    blocks[2, 0] = [0.3, 0, 0, 0]
    chosen = select_blocks(np.array([10, 11, 12, 13]), blocks, n_canvases=2, capacity=2, block_cols=4)
    # the strong mass splits in two equal parts: frame 10's block opens canvas 0, frame 11's opens canvas 1;
    # weak blocks fill the room left in the canvas of the strong block before them, best A first (frame 12's 0.3
    # beats frame 11's second block, 0.1 / 1.5); frame 13 has nothing
    assert [c.tolist() for c in chosen] == [[[10, 0, 0], [10, 0, 1]], [[11, 0, 2], [12, 0, 0]]]
    # with more room, zero-score blocks of the part's busiest frame fill it (frame 11 before 12 and 13)
    roomy = select_blocks(np.array([10, 11, 12, 13]), blocks, n_canvases=2, capacity=4, block_cols=4)
    assert [c.tolist() for c in roomy] == [[[10, 0, 0], [10, 0, 1], [10, 0, 2], [10, 0, 3]],
                                           [[11, 0, 0], [11, 0, 2], [11, 0, 3], [12, 0, 0]]]
    assert all(len(c) == 0 for c in select_blocks(np.array([1]), np.zeros((1, 1, 4)), 3, 4, 4))   # frozen picture


def test_thin_parts_take_the_neighbours_leftovers():
    from ov2_ros.codec.selection import select_blocks

    blocks = np.zeros((2, 1, 4), np.float32)
    blocks[0, 0, 0] = 5.0                     # all the mass in one block: its midpoint falls in the second part
    chosen = select_blocks(np.array([7, 8]), blocks, n_canvases=2, capacity=2, block_cols=4)
    assert [c.tolist() for c in chosen] == [[[7, 0, 2], [7, 0, 3]], [[7, 0, 0], [7, 0, 1]]]
