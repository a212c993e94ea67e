"""The official structure (codec-video-prep 0.2.5's): sampling, readiness groups and their tail rule, top-k blocks,
the bit-cost estimate's macroblock mapping, and the tokenizer built from them, on real libx264 clips."""
from dataclasses import replace

import numpy as np
import pytest

from ov2_ros.codec.grouping import ReadinessConfig, ReadinessGrouper, readiness_groups, readiness_stats, \
    readiness_threshold
from ov2_ros.codec.packing import CanvasGrid
from ov2_ros.codec.sampling import RateSampler, SetSampler, dedup_refill, official_frame_ids, shift_off_keyframes, \
    uniform_count
from ov2_ros.codec.saliency import BitCostConfig, BitCostEstimator, MacroblockMap, normalise_log_bits
from ov2_ros.codec.selection import topk_blocks
from ov2_ros.codec.tokenizer import CodecTokenizer, tokenize_file
from ov2_ros.codec.types import TokenizerConfig
from ov2_ros.errors import ConfigError

SMALL = ReadinessConfig(min_frames=8, max_frames=64, budget=6, bins=3, chunk=32)


def test_uniform_count_truncates_linspace_and_keeps_both_ends():
    assert uniform_count(10, 4) == [0, 3, 6, 9]
    assert uniform_count(250, 64)[:3] == [0, 3, 7] and uniform_count(250, 64)[-1] == 249
    assert uniform_count(1, 3) == [0, 0, 0]


def test_keyframes_move_later_first_then_earlier():
    assert shift_off_keyframes([0, 30, 59], {0, 30, 31}, 60) == [1, 29, 59]
    assert shift_off_keyframes([5], {1, 2, 3, 4, 5, 6, 7, 8, 9}, 10) == [5]      # nothing free within 4: stays


def test_duplicates_refilled_with_nearest_free_non_key_frames():
    out = dedup_refill([0, 0, 4, 4], 10, keyframes={1})
    assert out == sorted(out) and len(set(out)) == 4 and 1 not in out and {0, 4} <= set(out)
    assert dedup_refill([2, 5, 7], 10, set()) == [2, 5, 7]


def test_official_plan_size_and_short_files():
    ids = official_frame_ids(1000, 32, keyframes=range(0, 1000, 60))
    assert len(ids) == 256 and len(set(ids)) == 256 and not set(ids) & set(range(0, 1000, 60))
    assert official_frame_ids(120, 32) == list(range(120))                         # shorter than the target: all
    assert len(official_frame_ids(120, 8)) == 64


def test_rate_sampler_spacing_and_keyframe_deferral():
    s = RateSampler(4.0)
    taken = [i for i in range(90) if s.take(i, i / 30, key_frame=(i == 30))]
    assert taken[:4] == [0, 8, 15, 23] and 30 not in taken and 31 in taken
    assert len(taken) == 12
    every = RateSampler(0.0)
    assert all(every.take(i, i / 30, False) for i in range(5))
    assert SetSampler([2, 5]).take(5, 0.0, True) and not SetSampler([2, 5]).take(3, 0.0, False)


def test_readiness_stats_topk_and_time_bins():
    blocks = [np.zeros(4), np.array([9, 0, 0, 0.]), np.array([0, 0, 0, 1.]), np.array([0, 5, 0, 0.])]
    total, covered = readiness_stats(blocks, budget=2, bins=3)
    assert total == 14.0 and covered == 2            # frames 1 and 3 hold the top 2; frame 2's bin is empty
    assert readiness_stats(blocks, budget=3, bins=3) == (15.0, 3)
    assert readiness_stats(blocks[:1], 3, 3) == (0.0, 0)


def _frames(levels):
    """Block scores per sampled frame: one block at ``levels[i]``, three at 0."""
    return [np.array([float(v), 0.0, 0.0, 0.0]) for v in levels]


FADING = [1.0 - 0.001 * i for i in range(200)]     # each frame a little weaker: the top blocks are the earliest


def test_groups_close_on_low_gain_and_never_exceed_max():
    # the budget (6 blocks) is full of the earliest frames by length 8 (ready: they cover the 3 time bins); frame 9
    # adds nothing (gain < 5%): every group closes at 9 sampled frames
    assert readiness_groups(_frames(FADING[:36]), SMALL, threshold=1.0) == [(0, 9), (9, 18), (18, 27), (27, 36)]
    # an unreachable threshold: groups of max_frames, then the tail as one group (>= min_frames)
    assert readiness_groups(_frames(FADING[:150]), SMALL, threshold=1e9) == [(0, 64), (64, 128), (128, 150)]


def test_tail_of_fewer_than_min_frames_is_dropped():
    assert readiness_groups(_frames(FADING[:40]), SMALL, threshold=1.0)[-1] == (27, 36)   # 36..39 (4 < 8) dropped
    assert readiness_groups(_frames(FADING[:5]), SMALL, threshold=1.0) == [(0, 5)]   # a short clip still gives one


def test_growing_content_keeps_a_group_open_and_leftovers_restart():
    # each frame doubles the score: the gain stays high, the group runs to max_frames and closes at its last ready
    # length; the leftovers are scanned again as the next group
    levels = [2.0 ** (i % 20) for i in range(60)]
    cfg = replace(SMALL, max_frames=20)
    groups = readiness_groups(_frames(levels), cfg, threshold=1.0)
    assert all(8 <= e - s <= 20 for s, e in groups) and groups[0][0] == 0
    assert all(a[1] == b[0] for a, b in zip(groups, groups[1:]))


def test_online_grouper_equals_offline_with_the_same_threshold():
    rng = np.random.default_rng(0)
    blocks = [rng.random(4) * (1 + 4 * ((i // 17) % 2)) for i in range(120)]
    thr = readiness_threshold(blocks, SMALL)
    online = ReadinessGrouper(SMALL, thr)
    lengths = [n for b in blocks for n in online.push(b)] + online.finish()
    ends = np.cumsum(lengths)
    assert [(int(e - n), int(e)) for n, e in zip(lengths, ends)] == readiness_groups(blocks, SMALL)
    running = ReadinessGrouper(SMALL)               # live: running threshold estimate, still 8..64 frames
    lengths = [n for b in blocks for n in running.push(b)] + running.finish()
    assert all(8 <= n <= 64 for n in lengths) and sum(lengths) <= 120


def test_topk_blocks_best_overall_in_t_r_c_order():
    blocks = np.zeros((3, 2, 2), np.float32)
    blocks[0, 1, 1], blocks[2, 0, 0], blocks[2, 1, 0], blocks[1, 0, 1] = 5, 4, 3, 1
    sel = topk_blocks(np.array([10, 11, 12]), blocks, budget=3, block_cols=2)
    assert sel.tolist() == [[10, 1, 1], [12, 0, 0], [12, 1, 0]]


def test_macroblock_map_has_the_stride_column():
    """The official maps are (mb_rows, mb_cols + 1) with a zero last column, resized whole onto the canvas: the
    canvas' right edge gets nothing and the rest is squeezed; MacroblockMap reproduces that."""
    import cv2

    grid = CanvasGrid.for_source(272, 640)
    mb = MacroblockMap(272, 640, grid)
    values = np.random.default_rng(1).random((17, 40)).astype(np.float32)
    padded = np.concatenate([values, np.zeros((17, 1), np.float32)], axis=1)
    canvas = cv2.resize(padded, (grid.width, grid.height), interpolation=cv2.INTER_NEAREST)
    expect = canvas.reshape(grid.block_rows, 28, grid.block_cols, 28).sum(axis=(1, 3))
    np.testing.assert_allclose(mb(values), expect, rtol=1e-5)
    assert normalise_log_bits(np.array([0.0, 1.0, 2.0, 100.0])).max() == 1.0


def test_bitcost_estimate_follows_the_moving_object(clip):
    """On a real clip, the block with the moving square scores above a static one."""
    from ov2_ros.codec.decoder import StreamDecoder

    dec = StreamDecoder("h264")
    frames = [f for au in clip.aus for f in dec.decode(au)] + dec.flush()
    grid = CanvasGrid.for_source(frames[0].height, frames[0].width)
    est = BitCostEstimator(frames[0].height, frames[0].width, grid)
    s, e = clip.events[0]
    f, prev = frames[s + 5], frames[s + 4]
    scores = est.score(f.luma, prev.luma, f.mvs)
    assert scores.shape == (grid.block_rows, grid.block_cols) and scores.max() > 0
    change = np.abs(f.luma.astype(np.int16) - prev.luma).astype(np.float32)
    import cv2

    change = cv2.resize(change, (grid.block_cols, grid.block_rows), interpolation=cv2.INTER_AREA)
    best = np.unravel_index(np.argmax(scores), scores.shape)
    assert change[best] > np.median(change)           # the top block is where the picture changed


def _run(aus, config, **kw):
    tok = CodecTokenizer(config, fps=30.0, **kw)
    return [g for au in aus for g in tok.push(au)] + tok.flush()


def test_live_official_groups_of_sampled_frames(clip):
    config = TokenizerConfig(sample_fps=10.0)
    groups = _run(clip.aus, config)
    assert groups
    sampled = RateSampler(10.0)
    take = [i for i in range(len(clip.aus)) if sampled.take(i, i / 30, key_frame=(i % 60 == 0))]
    for g in groups:
        i_canvas, p = g.canvases[0], g.canvases[1:]
        assert i_canvas.kind == "I" and set(i_canvas.frames.tolist()) == {g.start_frame}
        assert g.start_frame in take and len(g.frame_bits) == g.num_frames
        members = [t for t in take if g.start_frame <= t < g.end_frame]
        assert 8 <= len(members) <= 64 or len(groups) == 1
        for c in p:                                   # only sampled frames, (t, row, col) order, no padding canvas
            pos = c.positions[::4]
            real = pos[pos[:, 0] >= 0]
            assert len(real) > 0 and set(real[:, 0].tolist()) <= set(members) - {g.start_frame}
            key = real[:, 0] * 10_000 + real[:, 1] * 100 + real[:, 2]
            assert np.all(np.diff(key) > 0)


def test_offline_budget_samples_as_the_release(clip, tmp_path):
    clip_file = tmp_path / "event.h264"
    clip_file.write_bytes(b"".join(clip.aus))
    res = tokenize_file(clip_file, TokenizerConfig(), canvases=8)
    plan = official_frame_ids(120, 8, keyframes=range(0, 120, 60))
    shown = {int(t) for c in res.canvases for t in c.frames}
    assert shown <= set(plan) and len(plan) == 64
    assert all(g.canvases[0].frames.tolist() == [g.start_frame] for g in res.groups)
    assert all(g.start_frame in plan for g in res.groups)
    assert all(1 <= len(g.canvases) <= 4 for g in res.groups)
    # readiness groups: consecutive runs of 8-64 sampled frames from the first sampled frame on; only a tail of
    # fewer than 8 sampled frames may be left out
    sizes = [sum(g.start_frame <= f < g.end_frame for f in plan) for g in res.groups]
    assert res.groups[0].start_frame == plan[0] and all(8 <= n <= 64 for n in sizes)
    assert [g.start_frame for g in res.groups[1:]] == [plan[sum(sizes[:i + 1])] for i in range(len(sizes) - 1)]
    assert 0 <= len(plan) - sum(sizes) < 8


def test_every_frame_official_mode_and_seed_mode_differ(clip):
    every = _run(clip.aus, TokenizerConfig(sample_fps=0.0))
    seed = _run(clip.aus, TokenizerConfig(structure="seed"))
    frames_every = {int(t) for g in every for c in g.canvases for t in c.frames}
    assert len(frames_every) > 0 and seed and all(len(g.canvases) == 4 for g in seed)


def test_bad_structure_config():
    with pytest.raises(ConfigError):
        TokenizerConfig(structure="mine")
    with pytest.raises(ConfigError):
        TokenizerConfig(scorer="bits")
    with pytest.raises(ConfigError):
        TokenizerConfig(sample_fps=-1)


def test_au_size_scales_a_frames_blocks(clip):
    """A frame's estimated map is scaled by (its AU bits / the running bits)^au_scale, as the tool's maps follow
    AU size across frames; without an AU size (or before any frame was observed) it is left alone."""
    from ov2_ros.codec.decoder import StreamDecoder

    dec = StreamDecoder("h264")
    frames = [f for au in clip.aus[:40] for f in dec.decode(au)] + dec.flush()
    grid = CanvasGrid.for_source(frames[0].height, frames[0].width)
    est = BitCostEstimator(frames[0].height, frames[0].width, grid)
    f, prev = frames[30], frames[29]
    plain = est.score(f.luma, prev.luma, f.mvs)
    np.testing.assert_allclose(est.score(f.luma, prev.luma, f.mvs, bits=1000), plain)    # nothing observed yet
    for _ in range(200):
        est.observe(1000, key_frame=False)
    est.observe(10**7, key_frame=True)                                                  # keyframes do not count
    np.testing.assert_allclose(est.score(f.luma, prev.luma, f.mvs, bits=16000), plain * 16 ** est.config.au_scale,
                               rtol=1e-4)


def _pan_clip(width: int, height: int, frames: int = 12, pan: int = 5):
    """A real libx264 clip: a textured background panning ``pan`` px per frame (x264 codes it as skipped or
    MV-only macroblocks) and a bright square that moves against it and changes shade (it costs residual bits)."""
    from ov2_ros.codec.decoder import StreamDecoder
    from ov2_ros.codec.synth import encode_frames

    rng = np.random.default_rng(3)
    texture = rng.integers(0, 256, (height // 4 + 1, (width + pan * frames) // 4 + 1), dtype=np.uint8)
    texture = np.kron(texture, np.ones((4, 4), np.uint8))          # 4-px texels: sharp, cheap to predict exactly
    rgbs = []
    for t in range(frames):
        y = texture[:height, pan * t:pan * t + width].copy()
        y[40:72, 40 + 3 * t:72 + 3 * t] = 120 + 9 * t
        rgbs.append(np.repeat(y[..., None], 3, axis=2))
    dec = StreamDecoder("h264")
    return [f for au in encode_frames(rgbs, gop=60) for f in dec.decode(au)] + dec.flush()


def test_bitcost_full_size_ranks_a_pan_below_the_moving_object():
    """On a panning clip the full-size estimate gives the pan's macroblocks (predicted exactly by their MVs, which
    x264 skips or codes without residual) the lowest scores and the square the highest; at half size the 2.5-px
    half-size shift is interpolated, which leaves texture in the residual, so the background scores far higher there."""
    frames = _pan_clip(192, 160)
    h, w = frames[0].height, frames[0].width
    grid = CanvasGrid.for_source(h, w)
    full = BitCostEstimator(h, w, grid, BitCostConfig())
    half = BitCostEstimator(h, w, grid, BitCostConfig(shrink=2))
    f, prev = frames[6], frames[5]
    assert f.pict_type == "P" and len(f.mvs)
    est_full = full.log_bits(f.luma, prev.luma, f.mvs, False)
    est_half = half.log_bits(f.luma, prev.luma, f.mvs, False)
    square = np.zeros_like(est_full, bool)
    square[2:5, 3:7] = True                              # macroblocks the square covers at frame 6 (x 58-90, y 40-72)
    background = ~square
    background[:, -2:] = False                           # the right edge has no reference pixels to pan from
    assert np.median(est_full[background]) < 0.5 * np.median(est_half[background])
    assert est_full[square].max() > np.percentile(est_full[background], 90)
    assert np.argmax(est_full) in np.flatnonzero(square)


def test_bitcost_skip_macroblocks_score_lowest(clip):
    """In the real event clip, inter macroblocks with zero MV and an unchanged picture (what x264 skips) get the
    frame's lowest estimate, and the others more."""
    from ov2_ros.codec.decoder import StreamDecoder

    dec = StreamDecoder("h264")
    frames = [f for au in clip.aus for f in dec.decode(au)] + dec.flush()
    h, w = frames[0].height, frames[0].width
    est = BitCostEstimator(h, w, CanvasGrid.for_source(h, w))
    s, _ = clip.events[0]
    f, prev = frames[s + 5], frames[s + 4]
    lb = est.log_bits(f.luma, prev.luma, f.mvs, False)
    same = (f.luma.astype(np.int16) == prev.luma).reshape(h // 16, 16, w // 16, 16).all(axis=(1, 3))
    moved, inter = np.zeros_like(same), np.zeros_like(same)
    inter[f.mvs["dst_y"] // 16, f.mvs["dst_x"] // 16] = True        # intra macroblocks have no MV, and cost bits
    mv = f.mvs[(f.mvs["motion_x"] != 0) | (f.mvs["motion_y"] != 0)]
    moved[mv["dst_y"] // 16, mv["dst_x"] // 16] = True
    skip = same & inter & ~moved
    assert skip.any() and (~skip).any()
    assert lb[skip].max() <= lb.min() + 1e-6
    assert np.median(lb[~skip]) > lb[skip].max()


def test_bitcost_chroma_term_sees_a_colour_change_the_luma_misses():
    """A square that swaps between two colours of (nearly) the same luma on a still textured background: x264 codes
    its macroblocks for their chroma. The luma-only estimate barely tells them from the still ones; with the chroma
    planes (``chroma_planes`` of the decoded frames) they score highest."""
    from ov2_ros.codec.decoder import StreamDecoder
    from ov2_ros.codec.packing import chroma_planes
    from ov2_ros.codec.synth import encode_frames

    rng = np.random.default_rng(5)
    grey = np.kron(rng.integers(60, 200, (36, 48), dtype=np.uint8), np.ones((4, 4), np.uint8))
    colours = np.array([[180, 110, 85], [85, 156, 95]], np.uint8)      # BT.601 luma 128 and 128
    rgbs = []
    for t in range(8):
        rgb = np.repeat(grey[..., None], 3, axis=2)
        rgb[48:80, 64:112] = colours[t % 2]
        rgbs.append(rgb)
    dec = StreamDecoder("h264")
    frames = [f for au in encode_frames(rgbs, gop=60) for f in dec.decode(au)] + dec.flush()
    h, w = frames[0].height, frames[0].width
    est = BitCostEstimator(h, w, CanvasGrid.for_source(h, w))
    f, prev = frames[5], frames[4]
    assert f.pict_type == "P" and chroma_planes(f.frame)[0].shape == ((h + 1) // 2, (w + 1) // 2)
    uv = (chroma_planes(f.frame), chroma_planes(prev.frame))
    square = np.zeros((est.map.mb_rows, est.map.mb_cols), bool)
    square[3:5, 4:7] = True                                            # the macroblocks inside it (y 48-80, x 64-112)
    luma_only = est.log_bits(f.luma, prev.luma, f.mvs, False)
    both = est.log_bits(f.luma, prev.luma, f.mvs, False, uv)
    assert luma_only[square].min() <= np.median(luma_only[~square])          # some read as still in luma
    assert both[square].min() > both[~square].max()
    assert both[square].mean() - luma_only[square].mean() > 1.0
    np.testing.assert_allclose(both[~square], luma_only[~square], atol=0.5)
    off = BitCostEstimator(h, w, CanvasGrid.for_source(h, w), BitCostConfig(chroma=0.0))
    np.testing.assert_array_equal(off.log_bits(f.luma, prev.luma, f.mvs, False, uv), luma_only)


def test_chroma_planes_are_views_of_4_2_0_frames_only():
    import av

    from ov2_ros.codec.packing import chroma_planes

    frame = av.VideoFrame.from_ndarray(np.zeros((34, 50, 3), np.uint8), format="rgb24")
    assert chroma_planes(frame) is None and chroma_planes(None) is None
    u, v = chroma_planes(frame.reformat(format="yuv420p"))
    assert u.shape == v.shape == (17, 25) and u.dtype == np.uint8


def test_bitcost_warp_and_macroblock_means_match_the_plain_computation():
    """The fast warp (each macroblock's flow broadcast over its lines) equals cv2.remap over the per-pixel flow
    field, and macroblock means over a partial bottom row (a height that is no multiple of 16, as 1080p) average
    that row's own lines, at full and half size, on a real libx264 frame."""
    import cv2

    frames = _pan_clip(160, 136)                         # 136 lines: 8.5 macroblock rows
    h, w = frames[0].height, frames[0].width
    f, prev = frames[4], frames[3]
    for shrink in (1, 2):
        est = BitCostEstimator(h, w, CanvasGrid.for_source(h, w), BitCostConfig(shrink=shrink))
        ref = est._analysis(prev.luma)
        flow, _ = est.motion.cell_fields(f.mvs)
        assert np.abs(flow).max() > 0
        gh, gw = ref.shape
        gx, gy = np.meshgrid(np.arange(gw, dtype=np.float32), np.arange(gh, dtype=np.float32))
        plain = cv2.remap(ref, np.stack([gx, gy], -1) + est.motion.sample(flow), None, cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
        np.testing.assert_array_equal(est.warp(ref, flow), plain)
        image = ref.astype(np.float32)
        means = est._mb_mean(image)
        cell = 16 // shrink
        assert means.shape == (est.map.mb_rows, est.map.mb_cols)
        np.testing.assert_allclose(means[-1, 2], image[(est.map.mb_rows - 1) * cell:, 2 * cell:3 * cell].mean(),
                                   rtol=1e-4)
        np.testing.assert_allclose(means[1, 1], image[cell:2 * cell, cell:2 * cell].mean(), rtol=1e-4)
    # with a stride, the residual's pixels are predicted from the full-size reference: the full-size warp, subsampled
    grid = CanvasGrid.for_source(h, w)
    full = BitCostEstimator(h, w, grid, BitCostConfig(stride=1))
    flow, _ = full.motion.cell_fields(f.mvs)
    for s, size in ((2, (68, 80)), (4, (34, 40))):
        strided = BitCostEstimator(h, w, grid, BitCostConfig(stride=s))
        assert strided.size == size
        np.testing.assert_array_equal(strided.warp(prev.luma, flow), full.warp(prev.luma, flow)[::s, ::s])
        np.testing.assert_array_equal(strided._analysis(f.luma), f.luma[::s, ::s])


def test_bitcost_config_shrink_and_stride_are_checked():
    for bad in (BitCostConfig(shrink=3), BitCostConfig(stride=0)):
        with pytest.raises(ConfigError):
            BitCostEstimator(64, 64, CanvasGrid.for_source(64, 64), bad)
    big = BitCostEstimator(720, 1280, CanvasGrid.for_source(720, 1280))
    assert (big.shrink, big.stride, big.size) == (1, 4, (180, 320))      # default from 720 lines: stride 4
    mid = BitCostEstimator(480, 854, CanvasGrid.for_source(480, 854))
    assert (mid.shrink, mid.stride, mid.size) == (1, 2, (240, 427))      # from 480 lines: stride 2
    assert BitCostEstimator(272, 640, CanvasGrid.for_source(272, 640)).stride == 1
    half = BitCostEstimator(720, 1280, CanvasGrid.for_source(720, 1280), BitCostConfig(shrink=None))
    assert (half.shrink, half.stride) == (2, 1)


def test_bitcost_half_scorer_builds_groups_at_half_size(clip):
    """``scorer="bitcost_half"`` is the cheaper estimate (half size from 480 lines); it builds the same structure."""
    groups = {}
    for scorer in ("bitcost", "bitcost_half"):
        tok = CodecTokenizer(TokenizerConfig(sample_fps=10.0, scorer=scorer), fps=30.0)
        groups[scorer] = [g for au in clip.aus for g in tok.push(au)] + tok.flush()
        assert tok._estimator.config.shrink == (None if scorer == "bitcost_half" else 1)
    assert groups["bitcost_half"] and len(groups["bitcost_half"]) == len(groups["bitcost"])


def test_b_frame_files_decode_with_every_mv(tmp_path, clip_factory):
    """FFmpeg's frame threads export some B-frames' MVs from the wrong picture (run to run), so ``tokenize_file``
    decodes a B-frame file one thread per picture: the result equals a decode on the calling thread."""
    from ov2_ros.codec.source import probe

    paths = {}
    for bframes in (0, 2):
        paths[bframes] = tmp_path / f"b{bframes}.h264"
        paths[bframes].write_bytes(b"".join(clip_factory(bframes=bframes).aus))
    assert probe(paths[2]).b_frames and not probe(paths[0]).b_frames
    auto = tokenize_file(paths[2], TokenizerConfig(), canvases=8)
    single = tokenize_file(paths[2], TokenizerConfig(decoder_threads="none"), canvases=8)
    np.testing.assert_array_equal(auto.patch_positions, single.patch_positions)
    assert [g.start_frame for g in auto.groups] == [g.start_frame for g in single.groups]


def test_decoded_ahead_keeps_order_raises_the_workers_error_and_stops(clip):
    """``tokenize_file``'s decode thread: the frames of each AU in order (as ``push`` would decode them), an error of
    the AU source raised in the consumer after the frames before it, and a consumer that stops early stops it."""
    import threading

    from ov2_ros.codec.errors import VideoFileError
    from ov2_ros.codec.tokenizer import decoded_ahead

    def aus(n, fail=False):
        for i, au in enumerate(clip.aus[:n]):
            yield au, i / 30
        if fail:
            raise VideoFileError("clip.mp4: packet #10 is damaged")

    ahead = [f.index for frames in decoded_ahead(CodecTokenizer(TokenizerConfig()), aus(40)) for f in frames]
    tok = CodecTokenizer(TokenizerConfig())
    inline = [f.index for au, t in aus(40) for f in tok.decode(au, t)]
    assert ahead == inline and len(ahead) >= 38
    seen = []
    with pytest.raises(VideoFileError, match="packet #10"):
        for frames in decoded_ahead(CodecTokenizer(TokenizerConfig()), aus(10, fail=True)):
            seen += frames
    assert len(seen) >= 8
    before = threading.active_count()
    for _ in decoded_ahead(CodecTokenizer(TokenizerConfig()), aus(60), depth=2):
        break
    assert threading.active_count() <= before and not any(t.name == "ov2-decode-ahead" for t in threading.enumerate())


def test_skipped_frames_mvs_are_not_read_and_nothing_changes(clip):
    """Live official structure: the decoder copies MVs only for frames the sampler may take (``peek``); the groups
    are those of a decoder that reads every frame's MVs."""
    def run(filtered):
        tok = CodecTokenizer(TokenizerConfig(sample_fps=10.0), fps=30.0)
        if not filtered:
            tok.decoder.mv_filter = None
        frames = []
        groups = []
        for au in clip.aus:
            decoded = tok.decoder.decode(au)
            frames += decoded
            groups += [g for f in decoded for g in tok.push_frame(f)]
        return groups + tok.flush(), frames

    (lean, frames), (full, all_frames) = run(True), run(False)
    assert len(lean) == len(full) >= 2
    for a, b in zip(lean, full):
        assert (a.start_frame, a.end_frame) == (b.start_frame, b.end_frame)
        for ca, cb in zip(a.canvases, b.canvases):
            np.testing.assert_array_equal(ca.positions, cb.positions)
    sampled = {int(t) for g in lean for t in g.sampled}
    skipped = [f for f in frames if f.index not in sampled and f.pict_type == "P"]
    # peek is conservative (frames decoded in one call are peeked before the first is taken) and a dropped tail was
    # sampled: almost every other P frame goes without its MVs
    assert skipped and sum(len(f.mvs) == 0 for f in skipped) >= 0.9 * len(skipped)
    assert all(len(f.mvs) > 0 for f in all_frames if f.pict_type == "P")


def test_rate_sampler_peek_is_take_without_advancing():
    s, shadow = RateSampler(4.0), RateSampler(4.0)
    for i in range(120):
        key = i % 60 == 0
        seen = s.peek(i, i / 30, key)
        assert s.peek(i, i / 30, key) == seen                  # no state change
        assert seen == shadow.take(i, i / 30, key) == s.take(i, i / 30, key)
    assert SetSampler([3]).peek(3, 0.0, False) and not SetSampler([3]).peek(4, 0.0, False)
