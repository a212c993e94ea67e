"""Online bit-cost grouping, keyframe/cut handling, and the offline budget plan."""
import numpy as np
import pytest

from ov2_ros.codec.grouping import (BitCostGrouper, Boundary, FixedGrouper, GroupingConfig, PlannedGrouper, billed_bits,
                                    plan_group_ends, scene_cut_keyframes)


def _groups(grouper, bits, keys=None, changes=None):
    """Feed a sequence; return [start, end) groups (the open one included at the end)."""
    keys = keys or [False] * len(bits)
    changes = changes or [0.0] * len(bits)
    starts = [0]
    for i, (b, k, c) in enumerate(zip(bits, keys, changes)):
        d = grouper.push(b, k, c)
        if d.boundary is Boundary.BEFORE and i != starts[-1]:
            starts.append(i)
        elif d.boundary is Boundary.AFTER and i + 1 < len(bits):
            starts.append(i + 1)
    return list(zip(starts, starts[1:] + [len(bits)]))


def test_constant_rate_gives_ratio_length_groups():
    g = BitCostGrouper(GroupingConfig(min_frames=2, max_frames=64, ratio=10))
    groups = _groups(g, [1000] * 100)
    lengths = [e - s for s, e in groups[:-1]]
    assert set(lengths) == {11}                     # anchor (unbilled) + 10 frames of cost


def test_static_then_motion_shortens_groups():
    g = BitCostGrouper(GroupingConfig(min_frames=4, max_frames=64, ratio=16))
    bits = [300] * 120 + [4000] * 60
    groups = _groups(g, bits)
    static = [e - s for s, e in groups if e <= 120]
    motion = [e - s for s, e in groups if s >= 122]
    assert min(static) > max(motion[:2])            # the rate lags: motion right after a still scene closes fast


def test_length_is_clamped():
    g = BitCostGrouper(GroupingConfig(min_frames=5, max_frames=12, ratio=16))
    lengths = [e - s for s, e in _groups(g, [100] * 30 + [100_000] * 30)[:-1]]
    assert all(5 <= n <= 12 for n in lengths)
    assert 12 in lengths and 5 in lengths


def test_cut_needs_spike_and_change():
    cfg = GroupingConfig(min_frames=8, max_frames=64, ratio=40)
    bits = [500] * 20 + [40_000] + [500] * 10
    changes = [0.5] * 31
    assert _groups(BitCostGrouper(cfg), bits, changes=changes)[0] == (0, 21)       # spike only (x264 ramp): no cut
    changes[20] = 30.0
    groups = _groups(BitCostGrouper(cfg), bits, changes=changes)
    assert (20, 31) == groups[-1] and groups[-2][1] == 20                            # the cut opens the next group


def test_periodic_keyframe_is_billed_as_one_frame_and_is_no_cut():
    cfg = GroupingConfig(min_frames=2, max_frames=64, ratio=10)
    bits = [1000] * 30
    keys = [False] * 30
    bits[5], keys[5] = 100_000, True
    g = BitCostGrouper(cfg)
    decisions = [g.push(b, k, 0.5) for b, k in zip(bits, keys)]
    assert decisions[5].boundary is Boundary.NONE
    assert decisions[5].billed_bits == pytest.approx(1000)
    assert g.rate == pytest.approx(1000)                                            # the IDR did not move the rate
    g2 = BitCostGrouper(cfg)
    d2 = [g2.push(b, k, 40.0 if i == 5 else 0.5) for i, (b, k) in enumerate(zip(bits, keys))]
    assert d2[5].boundary is Boundary.BEFORE                                         # an IDR that changed the picture


def test_real_clip_groups(clip):
    """On the scripted clip: the cut at 90 opens a group; motion groups are shorter than still ones."""
    from ov2_ros.codec.tokenizer import CodecTokenizer
    from ov2_ros.codec.types import TokenizerConfig

    tok = CodecTokenizer(TokenizerConfig(structure="seed"))
    groups = [g for au in clip.aus for g in tok.push(au)] + tok.flush()
    spans = [(g.start_frame, g.end_frame) for g in groups]
    assert 90 in [s for s, _ in spans]

    def length_at(frame):
        return next(e - s for s, e in spans if s <= frame < e)

    assert length_at(45) < length_at(80) and length_at(45) < length_at(110)
    assert all(e - s <= 64 for s, e in spans)


def test_plan_splits_cost_evenly():
    billed = np.array([1.0] * 50 + [10.0] * 50)
    ends = plan_group_ends(billed, 4, min_frames=4)
    assert len(ends) == 4 and ends[-1] == 100
    cost = np.diff(np.concatenate([[0], np.cumsum(billed)[np.array(ends) - 1]]))
    assert cost.max() / cost.min() < 1.3
    assert ends[0] > 50                    # the cheap still half is one long group


def test_plan_edge_cases():
    assert plan_group_ends(np.ones(3), 8) == [1, 2, 3]          # fewer frames than groups
    assert plan_group_ends(np.zeros(10), 2) == [5, 10]           # no cost at all: equal lengths
    ends = plan_group_ends(np.array([1000.0] + [1.0] * 99), 4, min_frames=8)
    assert all(b - a >= 8 for a, b in zip([0] + ends[:-1], ends))
    assert plan_group_ends(np.zeros(0), 3) == []


def test_billed_bits_bills_keyframes_as_median_frame():
    out = billed_bits(np.array([9000, 100, 200, 300, 9000]), np.array([True, False, False, False, True]))
    np.testing.assert_allclose(out, [200, 100, 200, 300, 200])


def test_fixed_and_planned_groupers():
    f = FixedGrouper(3)
    assert [f.push(1, False).boundary for _ in range(6)].count(Boundary.AFTER) == 2
    p = PlannedGrouper([2, 5], [10.0, 20.0], billed=np.array([0, 1, 0, 2, 3.0]))
    ds = [p.push(1, False) for _ in range(5)]
    assert [d.boundary for d in ds] == [Boundary.NONE, Boundary.AFTER, Boundary.NONE, Boundary.NONE, Boundary.AFTER]
    assert [d.billed_bits for d in ds] == [0, 1, 0, 2, 3]
    assert ds[1].threshold == 10.0 and ds[4].threshold == 20.0


def test_scheduled_keyframes_are_never_cuts_scene_cut_keyframes_are():
    """IDRs every 30 frames during a pan (big unwarped change) keep the period: only the first can be mistaken;
    an IDR off the period with a changed picture is a cut."""
    g = BitCostGrouper(GroupingConfig(min_frames=4, max_frames=64, ratio=16))
    keys = {0, 30, 60, 90, 105, 135}
    decisions = [g.push(50_000 if i in keys else 2_000, i in keys, 25.0 if i in keys else 1.0) for i in range(150)]
    cuts = [i for i, d in enumerate(decisions) if d.boundary is Boundary.BEFORE]
    assert 60 not in cuts and 90 not in cuts      # the period (30) is known from the second interval on
    assert 105 in cuts                            # off the period, picture changed
    assert 135 not in cuts                        # the schedule restarts at the scene-cut IDR


def test_scene_cut_keyframes_from_positions_alone():
    key = np.zeros(200, bool)
    key[[0, 30, 60, 75, 105, 135, 150]] = True      # period 30; scene-cut IDRs at 75 and 150 restart the count
    assert scene_cut_keyframes(key) == [75, 150]
    irregular = np.zeros(250, bool)
    irregular[[0, 30, 76, 137, 187, 242]] = True    # bikes.mp4: every keyframe is a cut
    assert scene_cut_keyframes(irregular) == [30, 76, 137, 187, 242]


def test_plan_with_cuts_opens_a_group_at_each_cut():
    billed = np.ones(100)
    billed[60:] = 3.0                                            # the second shot costs 3x per frame
    ends = plan_group_ends(billed, 4, min_frames=1, cuts=[40])
    assert 40 in ends and ends[-1] == 100
    assert sum(e > 40 for e in ends) == 3                        # the costlier shot gets more groups
    assert plan_group_ends(billed, 2, cuts=[10, 40, 70]) == [70, 100]   # too many cuts: the costliest cut frame stays
    assert plan_group_ends(np.ones(6), 6, cuts=[2, 3]) == [1, 2, 3, 4, 5, 6]   # never more groups than frames
