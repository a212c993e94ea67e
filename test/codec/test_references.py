"""Prediction references for the bit-cost estimate (``ov2_ros.codec.references``), on a real libx264 clip with
B-frames: the decoder's decode order and reference flags, each picture's past and future reference, bi-prediction in
the estimate, and the tokenizer scoring a B-frame once its future reference is out, in display order."""
import numpy as np
import pytest

from ov2_ros.codec.decoder import StreamDecoder
from ov2_ros.codec.nal import is_reference_picture
from ov2_ros.codec.packing import CanvasGrid
from ov2_ros.codec.references import ReferenceHistory, future_reference
from ov2_ros.codec.saliency import BitCostConfig, BitCostEstimator


@pytest.fixture(scope="module")
def b_frames(clip_factory):
    clip = clip_factory(bframes=2)
    dec = StreamDecoder("h264", threads="none")
    return clip, [f for au in clip.aus for f in dec.decode(au)] + dec.flush()


def test_reference_flag_from_the_nal_header():
    assert is_reference_picture([b"\x41\x9a"], "h264") and is_reference_picture([b"\x65\x88"], "h264")
    assert not is_reference_picture([b"\x06\x05", b"\x01\x9e"], "h264")          # SEI, then a non-reference slice
    assert is_reference_picture([b"\x06\x05"], "h264")                              # no slice: nothing says otherwise
    assert not is_reference_picture([b"\x00\x01\xaf"], "hevc")                      # TRAIL_N
    assert is_reference_picture([b"\x02\x01\xaf"], "hevc")                          # TRAIL_R


def test_decoded_frames_carry_decode_order_and_reference_flags(b_frames):
    _, frames = b_frames
    order = [f.decode_index for f in frames]
    assert sorted(order) == list(range(len(frames))) and order != sorted(order)    # B-frames come out reordered
    assert all(f.reference for f in frames if f.pict_type in "IP")
    assert any(not f.reference for f in frames if f.pict_type == "B")


def test_past_and_future_references_follow_decode_order(b_frames):
    """A picture's past reference is the latest-shown reference decoded before it (for a P-frame after B-frames not
    the B-frame shown just before it); a B-frame's future reference is shown after it and decoded before it."""
    _, frames = b_frames
    history = ReferenceHistory()
    skipped_a_b_frame = 0
    for i, f in enumerate(frames):
        past = history.past(f)
        if i:
            assert past is not None and past.reference and past.decode_index < f.decode_index
            between = [r for r in frames[past.index + 1:i] if r.reference and r.decode_index < f.decode_index]
            assert not between
            skipped_a_b_frame += past.index < i - 1
        future = future_reference(frames, i)
        if f.pict_type == "B":
            assert future is not None and future.index > i and future.decode_index < f.decode_index
        else:
            assert future is None
        history.add(f)
    assert skipped_a_b_frame                       # some picture's reference is not the frame shown before it


def test_bi_prediction_lowers_the_b_frames_residual(b_frames):
    """With their future reference, B-frames' residual estimate (luma only) drops: their future-predicted and
    bi-predicted macroblocks are no longer predicted from the past alone."""
    _, frames = b_frames
    h, w = frames[0].height, frames[0].width
    est = BitCostEstimator(h, w, CanvasGrid.for_source(h, w), BitCostConfig(chroma=0.0, intra=0.0, mvd=0.0))
    history, with_future, past_only = ReferenceHistory(), [], []
    for i, f in enumerate(frames):
        past, future = history.past(f), future_reference(frames, i)
        history.add(f)
        if future is None or past is None or not (f.mvs["source"] > 0).any():
            continue
        with_future.append(est.log_bits(f.luma, past.luma, f.mvs, False, future=future.luma).sum())
        past_only.append(est.log_bits(f.luma, past.luma, f.mvs, False).sum())
    assert len(with_future) >= 5
    assert np.mean(with_future) < 0.9 * np.mean(past_only)


def test_tokenizer_scores_b_frames_with_both_references_in_display_order(b_frames):
    """Every frame sampled: the groups hold the sampled frames in display order, and each frame's block scores are
    the estimate from its own references (a B-frame's taken once its future reference came out), up to the AU-size
    scale the running rate sets."""
    from ov2_ros.codec.packing import chroma_planes
    from ov2_ros.codec.sampling import SetSampler
    from ov2_ros.codec.tokenizer import CodecTokenizer
    from ov2_ros.codec.types import TokenizerConfig

    clip, frames = b_frames
    tok = CodecTokenizer(TokenizerConfig(decoder_threads="none"), sampler=SetSampler(range(len(frames))),
                         offline=True)
    groups = [g for au in clip.aus for g in tok.push(au)] + tok.flush()
    sampled = np.concatenate([g.sampled for g in groups])
    assert np.all(np.diff(sampled) > 0) and len(sampled) > len(frames) // 2
    blocks = {int(t): b for g in groups for t, b in zip(g.sampled, g.sampled_blocks)}
    h, w = frames[0].height, frames[0].width
    est = BitCostEstimator(h, w, CanvasGrid.for_source(h, w))
    history, checked_b = ReferenceHistory(), 0
    for i, f in enumerate(frames):
        past, future = history.past(f), future_reference(frames, i)
        history.add(f)
        if past is None or f.index not in blocks or f.pict_type == "I":
            continue
        uv = (chroma_planes(f.frame), chroma_planes(past.frame)) + \
            ((chroma_planes(future.frame),) if future is not None else ())
        expect = est.score(f.luma, past.luma, f.mvs, chroma=uv, future=None if future is None else future.luma)
        got = blocks[f.index]
        if expect.max() > 0:
            np.testing.assert_allclose(got / got.max(), expect / expect.max(), atol=1e-5)
            checked_b += f.pict_type == "B"
    assert checked_b >= 5


def test_a_b_frame_whose_future_reference_never_comes_is_scored_from_its_past(b_frames):
    """A live stream that loses the B-frame's future reference (here: every later picture marked non-reference)
    holds the B-frame at most ``MAX_FUTURE_WAIT`` frames, then scores it from its past alone; nothing is lost."""
    from dataclasses import replace

    from ov2_ros.codec.sampling import SetSampler
    from ov2_ros.codec.tokenizer import MAX_FUTURE_WAIT, CodecTokenizer
    from ov2_ros.codec.types import TokenizerConfig

    _, frames = b_frames
    b = next(i for i, f in enumerate(frames) if f.pict_type == "B" and i > 2)
    stream = frames[:b + 1] + [replace(f, reference=False, pict_type="P", index=b + 1 + k)
                               for k, f in enumerate(frames[b + 1:b + 2 + MAX_FUTURE_WAIT])]
    tok = CodecTokenizer(TokenizerConfig(), sampler=SetSampler(range(len(stream))), offline=True)
    for f in stream[:b + 1 + MAX_FUTURE_WAIT]:
        tok.push_frame(f)
    assert tok._waiting and tok._waiting[0].frame.index == b           # still waiting for its future reference
    tok.push_frame(stream[b + 1 + MAX_FUTURE_WAIT])
    assert not tok._waiting
    groups = tok.flush()
    assert sum(len(g.sampled) for g in groups) == len(stream)


def test_hevc_b_pyramid_references_and_tokenizer(hevc_factory):
    """The same rules on HEVC: x265's B-pyramid marks its middle B-pictures as references and the others as
    sub-layer non-reference; every B-frame finds a future reference, and the tokenizer keeps display order."""
    from ov2_ros.codec.sampling import SetSampler
    from ov2_ros.codec.tokenizer import CodecTokenizer
    from ov2_ros.codec.types import TokenizerConfig

    aus = hevc_factory(frames=40, bframes=3)
    dec = StreamDecoder("hevc", threads="none")
    frames = [f for au in aus for f in dec.decode(au)] + dec.flush()
    assert sorted(f.decode_index for f in frames) == list(range(len(frames)))
    b = [i for i, f in enumerate(frames) if f.pict_type == "B"]
    assert b and any(frames[i].reference for i in b) and any(not frames[i].reference for i in b)
    assert all(future_reference(frames, i) is not None for i in b if i < len(frames) - 4)
    tok = CodecTokenizer(TokenizerConfig(decoder_threads="none"), codec="hevc",
                         sampler=SetSampler(range(len(frames))), offline=True)
    groups = [g for au in aus for g in tok.push(au)] + tok.flush()
    sampled = np.concatenate([g.sampled for g in groups])
    assert np.all(np.diff(sampled) > 0) and len(sampled) >= len(frames) - 8
