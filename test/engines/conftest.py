"""One SAM2 export per session (tiny-random), shared by the engine tests."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="package")
def one_torch_thread():
    """Tiny graphs gain nothing from intra-op threads; on a loaded 2-core box spinning threads cost ~50x."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def sam2_export(tmp_path_factory):
    from ov2_ros.engines.export import export_model

    out = tmp_path_factory.mktemp("sam2_export")
    return out, export_model("tiny-random", out, parts=("sam2",))
