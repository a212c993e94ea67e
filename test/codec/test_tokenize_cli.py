"""``ov2-ros tokenize``: the DESIGN.md contract 2 outputs, and clear one-line errors."""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from ov2_ros.cli import main
from ov2_ros.codec.sampling import official_frame_ids


@pytest.fixture(scope="module")
def video(tmp_path_factory, clip_factory):
    path = tmp_path_factory.mktemp("cli") / "event.h264"
    path.write_bytes(b"".join(clip_factory().aus))
    return path


def _json_line(capsys):
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    return json.loads(out[0])


@pytest.mark.parametrize("mode", ["codec", "uniform", "hybrid"])
def test_json_contract(video, capsys, mode):
    """The fixed-budget contract of the every-frame modes (codec: the seed structure)."""
    assert main(["tokenize", str(video), "--mode", mode, "--structure", "seed", "--canvases", "8", "--json"]) == 0
    s = _json_line(capsys)
    assert isinstance(s["frames_total"], int) and s["frames_total"] == 120
    assert isinstance(s["fps"], float) and s["fps"] > 0
    assert s["canvases"] == 8 and s["tokens"] == 8 * 396 // 4 and isinstance(s["tokens"], int)
    sel = s["selected_frames"]
    assert sel == sorted(set(sel)) and all(isinstance(t, int) and 0 <= t < 120 for t in sel)
    groups = s["groups"]
    assert [set(g) for g in groups] == [{"start_frame", "end_frame"}] * len(groups) and len(groups) == 2
    assert groups[0]["start_frame"] == 0 and groups[-1]["end_frame"] == 120
    assert all(a["end_frame"] == b["start_frame"] for a, b in zip(groups, groups[1:]))
    assert set(s["timings"]) >= {"decode_s", "tokenize_s", "total_s"}
    assert all(isinstance(v, float) and v >= 0 for v in s["timings"].values())


def test_json_contract_official(video, capsys):
    """Official structure: 64 sampled frames for 8 canvases, readiness groups of sampled frames, no padding canvas."""
    assert main(["tokenize", str(video), "--canvases", "8", "--json"]) == 0
    s = _json_line(capsys)
    assert s["frames_total"] == 120 and s["structure"] == "official"
    groups = s["groups"]
    plan = official_frame_ids(120, 8, keyframes=range(0, 120, 60))     # the clip's IDRs are every 60 frames
    sizes = [sum(g["start_frame"] <= f < g["end_frame"] for f in plan) for g in groups]
    assert groups[0]["start_frame"] == plan[0] and all(8 <= n <= 64 for n in sizes)
    assert [g["start_frame"] for g in groups[1:]] == [plan[sum(sizes[:i + 1])] for i in range(len(sizes) - 1)]
    assert 0 <= len(plan) - sum(sizes) < 8                             # only a short tail may be dropped
    assert s["canvases"] <= 4 * len(groups) and s["tokens"] == s["canvases"] * 396 // 4
    assert len(groups) * 396 <= s["selected_patches"] <= s["canvases"] * 396    # every I-canvas is whole
    assert set(s["selected_frames"]) <= set(range(120))


def test_out_dir_and_plot(video, tmp_path, capsys):
    out, plot = tmp_path / "out", tmp_path / "fig" / "tokens.png"
    assert main(["tokenize", str(video), "--out", str(out), "--plot", str(plot), "--json"]) == 0
    s = _json_line(capsys)
    pngs = sorted(p.name for p in out.glob("canvas_*.png"))
    assert pngs == [f"canvas_{i:03d}.png" for i in range(s["canvases"])]
    pos = np.load(out / "patch_positions.npy")
    assert pos.shape == (s["canvases"] * 396, 3) and np.issubdtype(pos.dtype, np.integer)
    assert sorted(int(t) for t in np.unique(pos[:, 0]) if t >= 0) == s["selected_frames"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["groups"] == s["groups"] and len(meta["canvas_files"]) == s["canvases"]
    import cv2

    first = cv2.imread(str(out / pngs[0]))
    assert first.shape == (252, 308, 3)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 20_000


def test_unwritable_canvas_is_one_clear_error(video, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "canvas_001.png").mkdir(parents=True)          # a directory where a canvas must go: imwrite fails
    assert main(["tokenize", str(video), "--canvases", "8", "--out", str(out), "--json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "could not write" in err[0] and "canvas_001.png" in err[0]


def test_human_summary(video, capsys):
    assert main(["tokenize", str(video), "--mode", "uniform"]) == 0
    out = capsys.readouterr().out
    assert "120 frames" in out and "canvases" in out


@pytest.mark.parametrize("make, expect", [
    (lambda d: d / "missing.mp4", "not found"),
    (lambda d: (d / "junk.mp4").write_bytes(b"this is not a video" * 100) and d / "junk.mp4", "not a readable video"),
])
def test_bad_file_one_line_nonzero(tmp_path, capsys, make, expect):
    assert main(["tokenize", str(make(tmp_path)), "--json"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0] and err[0].startswith("ov2-ros tokenize: error:")


def test_stream_without_an_entry_point(tmp_path, capsys, clip_factory):
    """P frames only (the IDR cut off): nothing can be decoded, and the command says so, naming the file."""
    path = tmp_path / "no_idr.h264"
    path.write_bytes(b"".join(clip_factory().aus[1:30]))
    assert main(["tokenize", str(path)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no_idr.h264" in err[0] and "no" in err[0] and "frames" in err[0]


def test_bad_budget(video, capsys):
    assert main(["tokenize", str(video), "--canvases", "6"]) != 0
    assert "multiple" in capsys.readouterr().err


def test_console_script(video):
    exe = pathlib.Path(sys.executable).with_name("ov2-ros")
    proc = subprocess.run([str(exe), "tokenize", str(video), "--canvases", "4", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["canvases"] == 4
