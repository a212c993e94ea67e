"""Eval fixtures: real camera bags made from libx264 clips, and the tiny-random model runtime loaded once."""
from __future__ import annotations

import pytest

from ov2_ros.eval.bags import write_image_bag

T0_NS = 1_700_000_000_000_000_000
FRAME_NS = 33_333_333
TOPIC = "/camera/image/compressed"
MAX_NEW_TOKENS = 4          # the random model's answers are noise anyway; keep each window cheap
QUERY = "when: the red square moves"


def stamps_ns(n: int) -> list[int]:
    return [T0_NS + i * FRAME_NS for i in range(n)]


@pytest.fixture(scope="session")
def tiny_runtime():
    """The real tiny-random LLaVA-OV-2 runtime (random weights from models/), shared by every replay here."""
    from ov2_ros.model import load_runtime

    return load_runtime("tiny-random", max_new_tokens=MAX_NEW_TOKENS)


@pytest.fixture(scope="session")
def camera_bags(tmp_path_factory, small_clip):
    """The 160x120 event clip as an H.264 camera bag, once per storage: {"mcap": path, "sqlite3": path}."""
    root = tmp_path_factory.mktemp("bags")
    return {storage: write_image_bag(root / f"clip_{storage}", stamps_ns(small_clip.num_frames), small_clip.aus,
                                     storage=storage)
            for storage in ("mcap", "sqlite3")}


@pytest.fixture(scope="session")
def codec_replay(camera_bags, tiny_runtime, tmp_path_factory):
    """The MCAP camera bag replayed in codec mode (8-canvas windows, no SAM2): (ReplayResults, replay folder)."""
    from ov2_ros.eval.replay import ReplayConfig, replay_bag

    out = tmp_path_factory.mktemp("replay") / "codec"
    return replay_bag(camera_bags["mcap"], out, small_config(), progress=False, runtime=tiny_runtime), out


def small_config(**changes):
    """Replay settings sized for tests: 8-canvas windows, 4 new tokens, no SAM2."""
    from ov2_ros.eval.replay import ReplayConfig

    return ReplayConfig(**{"query": QUERY, "canvases": 8, "segment": False, "max_new_tokens": MAX_NEW_TOKENS,
                           **changes})


@pytest.fixture(scope="session")
def replay_config():
    """``replay_config(**changes)`` -> the test-sized ReplayConfig."""
    return small_config


@pytest.fixture(scope="session")
def stamps():
    """``stamps(n)`` -> the source stamps (ns) the camera bags carry."""
    return stamps_ns
