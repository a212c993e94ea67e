"""Segment tests run tiny models: one torch thread (see the fixture)."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="package")
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a loaded 2-core box spinning threads make each
    SAM2 step ~50x slower; restore the setting afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
