"""The streaming tokenizer end to end on real libx264 clips."""
import functools
from dataclasses import replace

import av
import cv2
import numpy as np
import pytest

from ov2_ros.codec.decoder import StreamDecoder, luma_view
from ov2_ros.codec.errors import BitstreamError, VideoFileNotFoundError
from ov2_ros.codec.packing import CanvasGrid, canvas_yuv, patchify, yuv_to_rgb
from ov2_ros.codec.tokenizer import CodecTokenizer, tokenize_file
from ov2_ros.codec.types import Canvas, CodecWindow, FrameGroup, TokenizerConfig
from ov2_ros.errors import ConfigError

CONFIG = TokenizerConfig(structure="seed")   # the seed's every-frame structure; the official one: test_official.py


@pytest.fixture(scope="module")
def run(clip_factory):
    @functools.lru_cache(maxsize=None)
    def _run(mode="codec", **changes):
        """Every group of the event clip through a fresh tokenizer, plus its final window and stats."""
        clip = clip_factory()
        tok = CodecTokenizer(replace(CONFIG, mode=mode, **changes), fps=clip.fps)
        groups = [g for au in clip.aus for g in tok.push(au, stamp=float(len(au)))]
        groups += tok.flush()
        return tuple(groups), tok.window(), tok.stats

    return _run


def _reference_frames(clip):
    """The clip decoded by plain PyAV (not our decoder): canvas-size RGB via the packing path, and PyAV's own RGB."""
    grid = CanvasGrid.for_source(clip.height, clip.width)
    ctx = av.CodecContext.create("h264", "r")
    ours, theirs = [], []

    def keep(frames):
        for f in frames:
            ours.append(yuv_to_rgb(canvas_yuv(luma_view(f), f, grid)))
            theirs.append(cv2.resize(f.to_ndarray(format="rgb24"), (grid.width, grid.height),
                                     interpolation=cv2.INTER_AREA))

    for au in clip.aus:
        p = av.Packet(len(au))
        p.update(au)
        keep(ctx.decode(p))
    keep(ctx.decode(None))
    return grid, ours, theirs


def _raster_patches(image, grid):
    """(H, W, 3) -> (rows, cols, p, p, 3): patch (h, w) of the image, indexed plainly (independent of patchify)."""
    p = grid.patch
    return image.reshape(grid.rows, p, grid.cols, p, 3).transpose(0, 2, 1, 3, 4)


def test_groups_cover_the_stream_and_have_four_canvases(clip, run):
    groups, window, stats = run()
    assert all(isinstance(g, FrameGroup) for g in groups)
    assert groups[0].start_frame == 0 and groups[-1].end_frame == clip.num_frames
    assert all(a.end_frame == b.start_frame for a, b in zip(groups, groups[1:]))
    assert [g.index for g in groups] == list(range(len(groups)))
    assert stats.frames == clip.num_frames and stats.groups == len(groups) and stats.canvases == 4 * len(groups)
    grid = CanvasGrid.for_source(clip.height, clip.width)
    for g in groups:
        assert len(g.frame_bits) == g.num_frames and g.threshold > 0
        assert [c.kind for c in g.canvases] == ["I", "P", "P", "P"]
        for c in g.canvases:
            assert c.pixels.shape == (grid.height, grid.width, 3) and c.pixels.dtype == np.uint8
            assert c.positions.shape == (grid.num_patches, 3) and c.positions.dtype == np.int32
            assert c.group == g.index
            t = c.positions[:, 0]
            assert ((t >= g.start_frame) & (t < g.end_frame) | (t == -1)).all()
            pad = (c.positions == -1).all(axis=1)
            assert (pad == (t == -1)).all()                          # a row is all -1 or not at all
            assert not patchify(c.pixels)[pad].any()                 # padding is black
        i_canvas = g.canvases[0]
        assert (i_canvas.positions[:, 0] == g.start_frame).all()     # the anchor, whole
        assert set(g.frame_times) >= {g.start_frame} | {int(t) for c in g.canvases for t in c.frames}
        assert set(g.frame_stamps) == set(g.frame_times)
        for t, stamp in g.frame_stamps.items():              # each frame keeps the stamp of its own AU
            assert stamp == float(len(clip.aus[t])) and g.frame_times[t] == pytest.approx(t / clip.fps)
        p_pos = np.concatenate([c.positions for c in g.canvases[1:]])
        p_pos = p_pos[p_pos[:, 0] >= 0]
        assert len({tuple(p) for p in p_pos}) == len(p_pos)           # no position packed twice
        assert g.start_frame not in set(p_pos[:, 0].tolist())          # the anchor's blocks are taken


def test_p_canvas_blocks_are_sorted_and_2x2_aligned(run):
    groups, _, _ = run()
    for c in (c for g in groups for c in g.canvases if c.kind == "P"):
        pos = c.positions[c.positions[:, 0] >= 0].reshape(-1, 4, 3)
        blocks = pos[:, 0]
        assert (blocks[:, 1] % 2 == 0).all() and (blocks[:, 2] % 2 == 0).all()
        np.testing.assert_array_equal(pos[:, :, 1] - blocks[:, None, 1], np.tile([0, 0, 1, 1], (len(pos), 1)))
        np.testing.assert_array_equal(pos[:, :, 2] - blocks[:, None, 2], np.tile([0, 1, 0, 1], (len(pos), 1)))
        keys = [tuple(b) for b in blocks]
        assert keys == sorted(keys)                                  # (frame, row, col) order


def test_every_patch_is_its_source_frame_patch(run, clip):
    groups, _, _ = run()
    grid, ours, theirs = _reference_frames(clip)
    checked = 0
    for c in (c for g in groups for c in g.canvases):
        patches = patchify(c.pixels, grid.patch)
        for t in np.unique(c.positions[:, 0]):
            if t < 0:
                continue
            rows = np.flatnonzero(c.positions[:, 0] == t)
            h, w = c.positions[rows, 1], c.positions[rows, 2]
            np.testing.assert_array_equal(patches[rows], _raster_patches(ours[t], grid)[h, w])
            # and close to PyAV's own RGB conversion, resized independently
            alt = _raster_patches(theirs[t], grid)[h, w]
            assert np.abs(patches[rows].astype(int) - alt).mean() < 6   # two resamplers differ by ~3 here
            checked += len(rows)
    assert checked > 4000


def test_cut_opens_a_group_and_motion_gets_more_patches(clip, run):
    groups, _, _ = run()
    assert 90 in [g.start_frame for g in groups]
    per_frame = np.zeros(clip.num_frames)
    for c in (c for g in groups for c in g.canvases if c.kind == "P"):
        t = c.positions[:, 0]
        np.add.at(per_frame, t[t >= 0], 1)
    assert per_frame[31:60].mean() > 3 * per_frame[15:30].mean()
    assert per_frame[31:60].mean() > 3 * per_frame[75:90].mean()


def test_same_bytes_same_output(run, clip_factory):
    a, _, _ = run()
    clip = clip_factory()
    tok = CodecTokenizer(CONFIG, fps=clip.fps)
    b = [g for au in clip.aus for g in tok.push(au)] + tok.flush()
    assert len(a) == len(b)
    for ga, gb in zip(a, b):
        assert (ga.start_frame, ga.end_frame, ga.threshold) == (gb.start_frame, gb.end_frame, gb.threshold)
        for ca, cb in zip(ga.canvases, gb.canvases):
            np.testing.assert_array_equal(ca.pixels, cb.pixels)
            np.testing.assert_array_equal(ca.positions, cb.positions)


def test_push_frame_matches_push(run, clip_factory):
    clip = clip_factory()
    dec = StreamDecoder("h264", fps=clip.fps)
    tok = CodecTokenizer(CONFIG)
    groups = [g for au in clip.aus for f in dec.decode(au) for g in tok.push_frame(f)]
    groups += [g for f in dec.flush() for g in tok.push_frame(f)] + tok.flush()
    ref, _, _ = run()
    assert [(g.start_frame, g.end_frame) for g in groups] == [(g.start_frame, g.end_frame) for g in ref]
    np.testing.assert_array_equal(np.concatenate([c.positions for g in groups for c in g.canvases]),
                                  np.concatenate([c.positions for g in ref for c in g.canvases]))


@pytest.mark.parametrize("mode", ["uniform", "hybrid"])
def test_other_modes_same_types(mode, clip, run):
    groups, window, _ = run(mode)
    assert isinstance(window, CodecWindow)
    assert groups[-1].end_frame == clip.num_frames
    for g in groups:
        assert isinstance(g, FrameGroup) and all(isinstance(c, Canvas) for c in g.canvases)
        assert len(g.canvases) in range(1, 5)
    if mode == "uniform":
        assert [g.num_frames for g in groups] == [32, 32, 32, 24]
        assert all(c.kind == "I" for g in groups for c in g.canvases)
        assert [c.frames.tolist() for c in groups[0].canvases] == [[0], [8], [16], [24]]
    else:
        assert [c.kind for c in groups[0].canvases] == ["I", "I", "P", "P"]
        full = {int(c.frames[0]) for c in groups[0].canvases if c.kind == "I"}
        p = {int(t) for c in groups[0].canvases if c.kind == "P" for t in c.frames}
        assert not full & p


def test_window_respects_the_budget(run, clip_factory):
    groups, window, _ = run()
    assert len(window.canvases) <= CONFIG.window_canvases
    assert window.groups == groups[-len(window.groups):]
    assert window.pixels.shape == (len(window.canvases), 252, 308, 3)
    assert window.patch_positions.shape == (len(window.canvases) * 396, 3)
    assert window.fps == 30.0 and window.source_size == (240, 320) and window.canvas_size == (252, 308)
    small = CodecTokenizer(replace(CONFIG, window_canvases=8))
    for au in clip_factory().aus:
        small.push(au)
        w = small.window()
        assert w is None or len(w.canvases) <= 8


def test_variable_p_canvases_favour_heavy_groups(run):
    groups, window, _ = run(variable_p_canvases=True)
    counts = {g.start_frame: len(g.canvases) for g in groups}
    motion = [n for s, n in counts.items() if 30 <= s < 60]
    still = [len(g.canvases) for g in groups if g.start_frame >= 67 and g.end_frame <= 90]
    assert max(motion) > min(still)
    assert all(2 <= n <= 7 for n in counts.values())
    assert len(window.canvases) <= CONFIG.window_canvases


def test_memory_stays_bounded_on_a_still_stream():
    """A frozen picture never crosses the bit-cost threshold: groups close at max_group_frames, and the frames
    waiting for their group never exceed that (plus the cut grace)."""
    from ov2_ros.codec.synth import encode_frames

    still = np.random.default_rng(5).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    aus = encode_frames([still] * 100, gop=250)
    config = replace(CONFIG, max_group_frames=16, min_group_frames=4)
    tok = CodecTokenizer(config)
    peak, groups = 0, []
    for au in aus:
        groups += tok.push(au)
        peak = max(peak, tok.pending_frames)
    groups += tok.flush()
    assert peak <= config.max_group_frames + tok.cut_grace
    assert max(g.num_frames for g in groups) == config.max_group_frames
    assert sum(g.num_frames for g in groups) == 100


def test_resolution_change_closes_group_and_resets_window(clip_factory):
    big, small = clip_factory(), clip_factory(160, 120)
    tok = CodecTokenizer(CONFIG, fps=30.0)
    groups = [g for au in big.aus[:40] for g in tok.push(au)]
    groups += [g for au in small.aus[:50] for g in tok.push(au)] + tok.flush()
    assert tok.stats.resolution_changes == 1
    sizes = [g.canvases[0].pixels.shape[:2] for g in groups]
    switch = sizes.index((112, 168))
    assert set(sizes[:switch]) == {(252, 308)} and set(sizes[switch:]) == {(112, 168)}
    assert groups[switch - 1].end_frame == 40 and groups[switch].start_frame == 40
    w = tok.window()
    assert w.canvas_size == (112, 168) and w.source_size == (120, 160)
    assert {c.pixels.shape[:2] for c in w.canvases} == {(112, 168)}


def test_bad_access_unit_raises_and_loses_nothing(run, clip_factory):
    clip = clip_factory()
    tok = CodecTokenizer(CONFIG, fps=clip.fps)
    groups = []
    for i, au in enumerate(clip.aus):
        if i == 50:
            with pytest.raises(BitstreamError):
                tok.push(b"\x00\x00\x01" + bytes(range(7, 40)))
            with pytest.raises(ValueError):                        # also catchable as the builtin
                tok.push(b"not h264 at all")
        groups += tok.push(au)
    groups += tok.flush()
    ref, _, _ = run()
    assert [(g.start_frame, g.end_frame) for g in groups] == [(g.start_frame, g.end_frame) for g in ref]


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory, clip_factory):
    path = tmp_path_factory.mktemp("video") / "event.h264"
    path.write_bytes(b"".join(clip_factory().aus))
    return path


@pytest.mark.parametrize("budget", [12, 32])
def test_tokenize_file_budget_codec_beats_uniform_on_events(clip_file, clip, budget):
    def event_patches(result):
        t = result.patch_positions[:, 0]
        return sum(int(((t >= a) & (t < b)).sum()) for a, b in clip.events)

    res = {m: tokenize_file(clip_file, replace(CONFIG, mode=m), canvases=budget) for m in ("codec", "uniform")}
    for r in res.values():
        assert len(r.canvases) == budget and r.tokens == budget * 396 // 4 and len(r.groups) == budget // 4
        assert r.frames_total == clip.num_frames and len(r.frame_bits) == clip.num_frames
        assert set(r.timings) == {"decode_s", "tokenize_s", "total_s"} and r.timings["total_s"] > 0
    assert event_patches(res["codec"]) > 1.1 * event_patches(res["uniform"])
    if budget == 12:
        assert res["uniform"].selected_frames == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110]


def test_tokenize_file_bad_input(clip_file, tmp_path):
    with pytest.raises(ConfigError, match="multiple"):
        tokenize_file(clip_file, CONFIG, canvases=10)
    with pytest.raises(VideoFileNotFoundError):
        tokenize_file(tmp_path / "missing.mp4")


def _frames(n_before_cut, n_after, cut_bits=50_000):
    """Decoded frames (real DecodedFrame values, luma only) of a still shot, then a cut to another still shot."""
    from ov2_ros.codec.decoder import EMPTY_MVS
    from ov2_ros.codec.types import DecodedFrame

    rng = np.random.default_rng(3)
    shots = [rng.integers(0, 256, (120, 160), dtype=np.uint8) for _ in range(2)]
    out = []
    for i in range(n_before_cut + n_after):
        cut = i == n_before_cut
        out.append(DecodedFrame(index=i, time_s=i / 30, stamp=None, bits=cut_bits if cut else 1000, pict_type="P",
                                key_frame=False, width=160, height=120, luma=shots[i >= n_before_cut],
                                mvs=EMPTY_MVS))
    return out


@pytest.mark.parametrize("grace, spans", [(2, [(0, 12), (12, 20)]), (0, [(0, 11), (11, 12), (12, 20)])])
def test_a_cut_just_after_a_group_completes_joins_it(grace, spans):
    config = replace(CONFIG, bitcost_ratio=10, min_group_frames=2)
    tok = CodecTokenizer(config, cut_grace=grace)
    groups = [g for f in _frames(12, 8) for g in tok.push_frame(f)] + tok.flush()
    assert [(g.start_frame, g.end_frame) for g in groups] == spans
    assert all(c.pixels.shape == (112, 168, 3) for g in groups for c in g.canvases)


def test_hevc_stream(hevc_aus):
    """HEVC goes through the same path (FFmpeg exports no HEVC MVs: saliency falls back to the unwarped residual)."""
    tok = CodecTokenizer(replace(CONFIG, min_group_frames=4), codec="hevc")
    groups = [g for au in hevc_aus for g in tok.push(au)] + tok.flush()
    assert groups[0].start_frame == 0 and groups[-1].end_frame == len(hevc_aus)
    assert all(len(g.canvases) == 4 and g.canvases[0].pixels.shape == (112, 168, 3) for g in groups)
    assert tok.window().source_size == (120, 160)
