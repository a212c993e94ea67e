"""Shot cuts inside moving footage, coded as P frames (zerolatency encoder, scene-cut IDRs off), open new groups.

In motion the running bit rate is already high, so a cut spikes only a few times above it; the motion-compensated
change cue is what tells a cut from motion (see ov2_ros.codec.grouping).
"""
import numpy as np

from ov2_ros.codec.encoder import EncoderConfig, H264Encoder
from ov2_ros.codec.synth import _texture
from ov2_ros.codec.tokenizer import CodecTokenizer
from ov2_ros.codec.types import TokenizerConfig

CUTS = (24, 52)


def _panning_shots(width=320, height=240, frames=80, seed=3):
    """Three shots, each a textured scene panning 3 px/frame, with a moving square; cuts at CUTS."""
    rng = np.random.default_rng(seed)
    scenes = [_texture(rng, height, width * 2) for _ in range(len(CUTS) + 1)]
    out = []
    for i in range(frames):
        shot = sum(i >= c for c in CUTS)
        x = 3 * (i - ([0, *CUTS][shot]))
        img = scenes[shot][:, x:x + width].copy()
        y0 = 40 + (5 * i) % 120
        img[y0:y0 + 40, 100:140] = (30, 200, 30)
        out.append(img)
    return out


def test_cuts_in_motion_open_groups():
    enc = H264Encoder(320, 240, EncoderConfig(gop=30))
    aus = [au for f in _panning_shots() for au in enc.encode(f)]
    tok = CodecTokenizer(TokenizerConfig(structure="seed"))
    groups = [g for i, au in enumerate(aus) for g in tok.push(au, stamp=i / 30)] + tok.flush()
    starts = [g.start_frame for g in groups]
    assert set(CUTS) <= set(starts), starts
    # and no group opens right next to a cut (the cut frame is the anchor, not the last frame of the previous group)
    assert not {c + d for c in CUTS for d in (-1, 1)} & set(starts), starts
