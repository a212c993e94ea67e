"""A small, fast sample of ``bench/fuzz.py`` (the full run, with RSS and timing goals, is the benchmark): hostile AUs
through push/flush, hostile strings through the answer parsers, and bad bags through ``ov2-ros replay``."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "bench" / "fuzz.py"


@pytest.fixture(scope="module")
def fuzz():
    spec = importlib.util.spec_from_file_location("ov2_bench_fuzz", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hostile_access_units_never_raise_and_every_stretch_recovers(fuzz):
    p = fuzz.run_fuzz(seed=7, episodes=12, parts=("pipeline",), hang_s=120)["pipeline"]
    assert p["episodes"] == 12 and p["hostile_aus"] >= 12 and not p["hangs"] and not p["worker_crashes"]
    assert p["exceptions"] == 0, p["exception_samples"]
    assert p["recovered_episodes"] == 12 and p["episodes_with_flush_after_hostile"] >= 1


def test_hostile_strings_never_raise_out_of_the_parsers(fuzz):
    q = fuzz.run_fuzz(seed=7, strings=64, parts=("parsers",), hang_s=120, max_chars=2_000,
                      megabyte=False)["parsers"]
    assert q["strings"] == 64 and not q["hangs"] and not q["worker_crashes"]
    assert q["exceptions"] == 0, q["exception_samples"]


def test_bad_bags_exit_non_zero_with_one_line(fuzz, tmp_path):
    b = fuzz.run_fuzz(seed=7, bags=10, parts=("bags",), hang_s=300, work_dir=tmp_path)["bags"]
    assert b["replayed"] == 10 and not b["hangs"] and not b["worker_crashes"]
    assert b["nonzero_exit_one_line"] == 10 and not b["exit_0"], b["not_ok"]
