"""The baselines that share the codec path's output type: uniform full frames, and hybrid (some full frames + codec
P-canvases). Both produce the same ``Canvas`` tuples as codec mode, so everything downstream compares at equal
canvases (= equal tokens).
"""
from __future__ import annotations

import numpy as np

from ov2_ros.codec.packing import CanvasGrid
from ov2_ros.codec.selection import FrameRecord, full_canvas, p_canvases
from ov2_ros.codec.types import Canvas


def evenly_spaced(n_frames: int, k: int) -> np.ndarray:
    """Positions of ``k`` frames spread evenly over ``n_frames`` (centre of each of ``k`` equal slices), distinct
    and sorted; fewer than ``k`` when the group is shorter than ``k``. Position 0 is always included, so the
    group's anchor frame is always shown whole."""
    if n_frames <= 0 or k <= 0:
        return np.zeros(0, np.int64)
    if k == 1:
        return np.zeros(1, np.int64)
    pos = np.floor(np.arange(k) * n_frames / k).astype(np.int64)
    return np.unique(np.minimum(pos, n_frames - 1))


def uniform_canvases(records: list[FrameRecord], grid: CanvasGrid, group: int, k: int) -> list[Canvas]:
    """Uniform mode: ``k`` evenly spaced frames of the group, whole."""
    return [full_canvas(records[i], grid, group) for i in evenly_spaced(len(records), k)]


def hybrid_canvases(records: list[FrameRecord], grid: CanvasGrid, group: int, k: int, full: int,
                    lam: float) -> list[Canvas]:
    """Hybrid mode: ``full`` evenly spaced frames whole, then ``k - full`` codec P-canvases over the other frames."""
    full = min(full, k)
    whole = set(evenly_spaced(len(records), full).tolist())
    canvases = [full_canvas(records[i], grid, group) for i in sorted(whole)]
    rest = [r for i, r in enumerate(records) if i not in whole]
    return canvases + p_canvases(rest, k - full, grid, group, lam)
