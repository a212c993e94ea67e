"""The tokenization figure: official-structure groups carry what their readiness was measured on, and the plot shows
it as an *estimated* bit cost (not billed bits)."""
import numpy as np
import pytest

from ov2_ros.codec.grouping import readiness_stats
from ov2_ros.codec.plot import _readiness_panel, plot_tokenization, readiness_curve
from ov2_ros.codec.tokenizer import tokenize_file
from ov2_ros.codec.types import TokenizerConfig


@pytest.fixture(scope="module")
def official(tmp_path_factory, clip_factory):
    path = tmp_path_factory.mktemp("plot") / "event.h264"
    path.write_bytes(b"".join(clip_factory().aus))
    return tokenize_file(path, TokenizerConfig(), canvases=8)


def test_official_groups_carry_their_sampled_scores(official):
    for g in official.groups:
        assert g.sampled[0] == g.start_frame and g.sampled[-1] < g.end_frame
        assert np.all(np.diff(g.sampled) > 0) and 8 <= len(g.sampled) <= 64
        grid_blocks = official.canvases[0].num_patches // 4
        assert g.sampled_blocks.shape[0] == len(g.sampled) and g.sampled_blocks[0].size == grid_blocks
        curve = readiness_curve(g)
        assert len(curve) == len(g.sampled) and np.all(np.diff(curve) >= -1e-6 * curve.max())   # float32 sums
        assert curve[-1] == pytest.approx(readiness_stats(list(g.sampled_blocks.reshape(len(curve), -1)),
                                                          3 * grid_blocks, 3)[0])
    assert any(readiness_curve(g)[-1] >= g.threshold for g in official.groups)     # groups close when ready


def test_readiness_panel_is_labelled_as_an_estimate(official, tmp_path):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    _readiness_panel(ax, official.groups)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(fig)
    assert "estimated" in ax.get_ylabel() and any("estimate" in t and "not billed" in t for t in labels)
    png = plot_tokenization(official, tmp_path / "fig.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
