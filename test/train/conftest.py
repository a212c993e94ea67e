"""Training fixtures: a few examples from one synthetic scene through the real tokenizer, cached per session."""
from __future__ import annotations

import functools

import pytest


@functools.lru_cache(maxsize=None)
def scene_examples(seed: int = 3, tasks: tuple[str, ...] = ("track", "point", "ground")):
    from ov2_ros.model.loading import load_tokenizer
    from ov2_ros.train.scenes import build_scene_examples
    from ov2_ros.train.toy import toy_tokenizer_config

    return tuple(build_scene_examples([seed], toy_tokenizer_config(), load_tokenizer("tiny-random"), tasks,
                                      num_frames=24))


@pytest.fixture(scope="session")
def examples():
    return list(scene_examples())
