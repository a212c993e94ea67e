"""StreamDecoder on real libx264 access units: counts, order, stamps/bits mapping, MVs, luma, gating, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from ov2_ros.codec.decoder import MV_DTYPE, StreamDecoder


def decode_all(aus, stamps=None, **kwargs):
    frames = []
    with StreamDecoder(**kwargs) as dec:
        for i, au in enumerate(aus):
            frames += dec.decode(au, stamp=i if stamps is None else stamps[i])
        frames += dec.flush()
        return frames, dec.stats


@pytest.mark.parametrize("bframes", [0, 2])
def test_decodes_every_frame_with_its_own_stamp_and_bits(clip_factory, bframes):
    clip = clip_factory(160, 120, bframes=bframes)
    frames, stats = decode_all(clip.aus)
    assert len(frames) == clip.num_frames == stats.frames_out
    assert [f.index for f in frames] == list(range(clip.num_frames))
    # stamps are decode-order AU numbers: each comes back exactly once, with that AU's size
    assert sorted(f.stamp for f in frames) == list(range(clip.num_frames))
    assert all(f.bits == 8 * len(clip.aus[f.stamp]) for f in frames)
    assert all((f.width, f.height) == (160, 120) and f.luma.shape == (120, 160) for f in frames)
    assert frames[0].pict_type == "I" and frames[0].key_frame
    types = {f.pict_type for f in frames}
    assert ("B" in types) == (bframes > 0)
    if bframes:  # reordering happened: some output frame came from a later AU than its successor
        assert any(a.stamp > b.stamp for a, b in zip(frames, frames[1:]))
    else:
        assert [f.stamp for f in frames] == list(range(clip.num_frames))


def test_motion_vectors_on_p_frames_and_deterministic_across_decoders(small_clip):
    clip = small_clip
    a, _ = decode_all(clip.aus)
    b, _ = decode_all(clip.aus, threads="none")
    for fa, fb in zip(a, b, strict=True):
        assert fa.mvs.dtype == MV_DTYPE
        np.testing.assert_array_equal(fa.luma, fb.luma)
        for name in MV_DTYPE.names:            # field by field: the struct has uninitialised padding
            np.testing.assert_array_equal(fa.mvs[name], fb.mvs[name])
    p_frames = [f for f in a if f.pict_type == "P"]
    assert p_frames and all(len(f.mvs) > 0 for f in p_frames)
    assert all(len(f.mvs) == 0 for f in a if f.pict_type == "I")
    moving = a[45]                              # the red square moves fast through frames 30..59
    assert np.abs(moving.mvs["motion_x"]).max() > 0
