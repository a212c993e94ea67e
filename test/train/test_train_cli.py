"""``ov2-ros train`` on annotated bags and videos: it trains; bad input is one clear line and no half checkpoint."""
from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys

import pytest

from ov2_ros.cli import main
from ov2_ros.codec.synth import make_scene
from ov2_ros.train.evalset import write_eval_set


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return write_eval_set(root, [7], tasks=("track", "ground"), num_frames=16), root


def _train(args, capsys):
    rc = main(["train", "--model", "tiny-random", "--quiet", *args])
    return rc, capsys.readouterr()


def test_trains_on_annotated_bags(dataset, tmp_path, capsys):
    gt, root = dataset
    rc, out = _train(["--gt", str(gt), "--data", str(root), "--out", str(tmp_path / "run"), "--steps", "2",
                      "--batch-size", "2"], capsys)
    assert rc == 0, out.err
    assert "trained 2 steps on" in out.out
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "run" / "loss.json").read_text())["examples"] >= 2   # a window per video at least


def _one_line_error(rc, out, *needles):
    lines = [ln for ln in out.err.splitlines() if ln.startswith("ov2-ros train: error:")]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in out.err, out.err
    for n in needles:
        assert n in lines[0], lines[0]


def test_annotation_naming_no_video(tmp_path, capsys):
    gt = tmp_path / "annotations.json"
    gt.write_text(json.dumps({"version": 1, "videos": [{"name": "kitchen", "task": "ground", "query": "when: x",
                                                        "spans_s": [[0.0, 1.0]]}]}))
    rc, out = _train(["--gt", str(gt), "--data", str(tmp_path), "--out", str(tmp_path / "run")], capsys)
    _one_line_error(rc, out, "'kitchen' names no video")
    assert not (tmp_path / "run").exists()


def _ground_gt(tmp_path, name):
    gt = tmp_path / "annotations.json"
    gt.write_text(json.dumps({"version": 1, "videos": [{"name": name, "task": "ground", "query": "when: x",
                                                        "spans_s": [[0.0, 0.1]]}]}))
    return gt


def test_empty_clip(tmp_path, capsys):
    from ov2_ros.eval.bags import write_image_bag

    write_image_bag(tmp_path / "clip", range(1, 6), [b""] * 5)     # five messages, no picture in any
    rc, out = _train(["--gt", str(_ground_gt(tmp_path, "clip")), "--data", str(tmp_path), "--out",
                      str(tmp_path / "run")], capsys)
    _one_line_error(rc, out, "empty clip")
    assert not (tmp_path / "run").exists()


def test_budget_that_fits_no_window(tmp_path, capsys):
    scene = make_scene(1, num_frames=1)       # one IDR: the live sampler defers keyframes, so no group closes
    (tmp_path / "short.h264").write_bytes(b"".join(scene.aus))
    rc, out = _train(["--gt", str(_ground_gt(tmp_path, "short")), "--data", str(tmp_path), "--out",
                      str(tmp_path / "run")], capsys)
    _one_line_error(rc, out, "fits no window", "1 decoded frame")
    assert not (tmp_path / "run").exists()


def test_zero_steps_is_refused_before_anything_is_written(dataset, tmp_path, capsys):
    gt, root = dataset
    rc, out = _train(["--gt", str(gt), "--data", str(root), "--out", str(tmp_path / "run"), "--steps", "0"], capsys)
    _one_line_error(rc, out, "--steps must be at least 1")
    assert not (tmp_path / "run").exists()


def test_out_of_disk_leaves_no_half_written_checkpoint(dataset, tmp_path):
    """A real write failure from the kernel: the file-size limit makes write() fail with EFBIG, as a full disk
    fails with ENOSPC, partway through the first checkpoint."""
    gt, root = dataset
    run = tmp_path / "run"

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)       # get the error from write(), not a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    proc = subprocess.run([sys.executable, "-m", "ov2_ros.cli", "train", "--model", "tiny-random", "--quiet",
                           "--gt", str(gt), "--data", str(root), "--out", str(run), "--steps", "1",
                           "--batch-size", "2"], capture_output=True, text=True, preexec_fn=limit, timeout=600)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("ov2-ros train: error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "cannot write" in errors[0] and "File too large" in errors[0]
    left = sorted(p.name for p in run.iterdir()) if run.exists() else []
    assert "checkpoint" not in left and "model" not in left and not [n for n in left if n.startswith(".")]
