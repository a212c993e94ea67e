"""The release's bad-frame rule (codec-video-prep 0.2.5): black, flat and green-corrupt frames give no blocks, and a
bad first frame of a group hands its I-canvas to the group's first good frame; on real libx264 H.264."""
import functools

import numpy as np

from ov2_ros.codec.badframe import is_bad_frame
from ov2_ros.codec.sampling import official_frame_ids
from ov2_ros.codec.synth import encode_frames, event_frames
from ov2_ros.codec.tokenizer import tokenize_file
from ov2_ros.codec.types import TokenizerConfig

FRAMES = 40


def _noise(h=120, w=160, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_bad_frame_predicate_thresholds():
    black = np.zeros((120, 160, 3), np.uint8)
    assert is_bad_frame(black) and is_bad_frame(black + 8)             # RGB 8: Y 8, still black
    assert is_bad_frame(black + 40)                                    # flat grey: one solid colour
    assert is_bad_frame(np.full((120, 160, 3), (40, 90, 200), np.uint8))       # one flat colour
    dim = black.copy()
    dim[::2] = 14                                                      # Y std 7 > 6: not black; range 14 > 12
    assert not is_bad_frame(dim)
    green = _noise()
    green[:60] = (20, 230, 30)                                         # half the picture green blocks
    assert is_bad_frame(green)
    green[:60] = (200, 230, 200)                                       # bright but not green-only
    assert not is_bad_frame(green) and not is_bad_frame(_noise())
    assert is_bad_frame(np.zeros((0, 0, 3), np.uint8))


@functools.lru_cache(maxsize=None)
def _clip_bytes(black_until: int) -> bytes:
    """The event clip's moving stretch (frames 30-69), frames ``0 .. black_until`` black, as Annex-B H.264."""
    frames = [img for i, (img, _) in enumerate(event_frames(320, 240)) if 30 <= i < 30 + FRAMES]
    frames = [np.zeros_like(f) if i <= black_until else f for i, f in enumerate(frames)]
    return b"".join(encode_frames(frames, gop=60))


def _first_group(tmp_path, black_until: int):
    path = tmp_path / f"black{black_until}.h264"
    path.write_bytes(_clip_bytes(black_until))
    return tokenize_file(path, TokenizerConfig(), canvases=4).groups[0]


def test_black_first_sampled_frame_swaps_the_i_canvas(tmp_path):
    plan = official_frame_ids(FRAMES, 4, keyframes=[0])
    clean = _first_group(tmp_path, black_until=-1)
    assert clean.canvases[0].frames.tolist() == [plan[0]]
    group = _first_group(tmp_path, black_until=plan[0])        # the group's first sampled frame is black
    assert group.start_frame == plan[0]
    i_canvas, p_canvases = group.canvases[0], group.canvases[1:]
    assert i_canvas.kind == "I" and i_canvas.frames.tolist() == [plan[1]]     # the first good sampled frame
    shown = {int(t) for c in p_canvases for t in c.frames}
    assert p_canvases and plan[0] not in shown and plan[1] not in shown     # the black frame gives no blocks
    assert shown <= set(plan[2:])
    assert plan[0] not in group.frame_times and plan[1] in group.frame_times
