"""Decoded RGB frames of the shared real-H.264 clips, and a factory for tiny-random trackers."""
from __future__ import annotations

import functools

import numpy as np
import pytest

from ov2_ros.codec.decoder import StreamDecoder


@functools.lru_cache(maxsize=None)
def _decode(aus: tuple[bytes, ...]) -> tuple[np.ndarray, ...]:
    frames = []
    with StreamDecoder(threads="none") as dec:
        for au in aus:
            frames.extend(f.rgb() for f in dec.decode(au))
        frames.extend(f.rgb() for f in dec.flush())
    return tuple(frames)


@pytest.fixture(scope="session")
def small_frames(small_clip) -> tuple[np.ndarray, ...]:
    """The 160x120 event clip decoded from H.264: 120 (120, 160, 3) uint8 RGB frames."""
    return _decode(small_clip.aus)


@pytest.fixture(autouse=True, scope="package")
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a loaded 2-core box spinning threads make each
    SAM2 step ~50x slower; restore the setting afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
