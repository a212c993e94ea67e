"""``ov2-ros replay`` / ``ov2-ros eval`` through the real CLI: outputs, and one clear error line + exit 2."""
import json

import numpy as np
import pytest

from ov2_ros.cli import main
from ov2_ros.eval.bags import BagWriter, write_image_bag

SMALL = ["--canvases", "8", "--max-new-tokens", "4", "--no-segment", "--quiet"]


def _one_error_line(capsys, *fragments):
    err = capsys.readouterr().err.strip().splitlines()
    err = [ln for ln in err if not ln.startswith("[transformers]")]   # model-loading chatter from transformers
    assert len(err) == 1, err
    for f in fragments:
        assert f in err[0], err[0]
    return err[0]


def _annotations(tmp_path, name="clip", **video):
    path = tmp_path / "annotations.json"
    video = video or {"task": "ground", "spans_s": [[1.0, 2.0]]}
    path.write_text(json.dumps({"version": 1, "videos": [{"name": name, "query": "when: the red square moves",
                                                           **video}]}))
    return path


def test_eval_scores_a_replay_and_writes_the_report(codec_replay, tmp_path, capsys):
    results, replay_dir = codec_replay
    gt = _annotations(tmp_path, name=results.name)
    assert main(["eval", str(replay_dir), "--gt", str(gt), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "miou" in out and "onsets_on_selected" in out and "latency_p50_s" in out
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text())["metrics"]
    assert metrics["windows"] == len(results.windows) and 0 <= metrics["miou"] <= 1
    assert {"report.html", "timeline.png", "tokens.png"} <= {p.name for p in (tmp_path / "rep").iterdir()}


def test_compare_codec_uniform_at_equal_budget(small_clip, stamps, tmp_path, capsys):
    bag = write_image_bag(tmp_path / "clip", stamps(60), small_clip.aus[:60])       # first GOP: the motion
    gt = _annotations(tmp_path, spans_s=[[1.0, 2.0]], task="ground")
    assert main(["eval", "--compare", "codec", "uniform", "--bag", str(bag), "--gt", str(gt), "--json", *SMALL]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["modes"] == ["codec", "uniform"] and summary["canvases"] == 8
    codec, uniform = summary["metrics"]["codec"], summary["metrics"]["uniform"]
    assert summary["difference"]["tokens_total"] == codec["tokens_total"] - uniform["tokens_total"]
    compare_dir = tmp_path / "clip_compare"
    assert (compare_dir / "report.html").is_file() and (compare_dir / "codec" / "results.json").is_file()
    assert (compare_dir / "uniform" / "results_bag" / "metadata.yaml").is_file()


def test_replay_then_eval_several_videos(codec_replay, small_clip, stamps, tmp_path, capsys):
    bag = write_image_bag(tmp_path / "b", stamps(20), small_clip.aus[:20], storage="sqlite3")
    assert main(["replay", str(bag), "--query", "ask: what moves?", "--mode", "uniform", *SMALL]) == 0
    assert "b [uniform]: 20 frames" in capsys.readouterr().out
    assert (tmp_path / "b_replay_uniform" / "results.json").is_file()
    name = codec_replay[0].name
    gt = tmp_path / "two.json"          # nothing happens in either: predicting nothing scores 1, anything else 0
    gt.write_text(json.dumps({"version": 1, "videos": [{"name": n, "task": "jump", "query": "when: a jump",
                                                        "events_s": []} for n in (name, "b")]}))
    assert main(["eval", str(codec_replay[1]), str(tmp_path / "b_replay_uniform"), "--gt", str(gt), "--json"]) == 0
    columns = json.loads(capsys.readouterr().out)
    assert set(columns) == {f"{name} [codec]", "b [uniform]", "mean"}
    scores = [columns[c]["jumpscore"] for c in (f"{name} [codec]", "b [uniform]")]
    assert all(s in (0.0, 1.0) for s in scores) and columns["mean"]["jumpscore"] == sum(scores) / 2
    assert (tmp_path / "b_replay_uniform" / "report" / "report.html").is_file()


# ---------------------------------------------------------------- errors: one line, exit code 2

def test_missing_topic(small_clip, stamps, tmp_path, capsys):
    bag = write_image_bag(tmp_path / "b", stamps(4), small_clip.aus[:4])
    assert main(["replay", str(bag), "--topic", "/front/image", "--query", "q", *SMALL]) == 2
    _one_error_line(capsys, "ov2-ros replay: error:", "no topic '/front/image'", "/camera/image/compressed")


@pytest.mark.parametrize("backend, fragment", [(["--backend", "onnxruntime"], "needs export_dir"),
                                                (["--backend", "onnxruntime", "--export-dir", "nowhere"],
                                                 "no manifest")])
def test_backend_that_cannot_start(small_clip, stamps, tmp_path, capsys, backend, fragment):
    bag = write_image_bag(tmp_path / "b", stamps(4), small_clip.aus[:4])
    assert main(["replay", str(bag), "--query", "q", *SMALL, *backend]) == 2
    _one_error_line(capsys, "ov2-ros replay: error:", fragment)


def test_clock_jump(small_clip, tmp_path, capsys):
    with BagWriter(tmp_path / "b") as w:
        for i, au in enumerate(small_clip.aus[:5]):
            stamp = 10**18 + (i if i != 3 else 0) * 33_333_333
            w.write("/camera/image/compressed", w.msg("sensor_msgs/msg/CompressedImage", header=w.header(stamp),
                                                      format="h264", data=np.frombuffer(au, np.uint8)), 10**18 + i)
    assert main(["replay", str(tmp_path / "b"), "--query", "q", *SMALL]) == 2
    _one_error_line(capsys, "message 3", "clock jump")


def test_malformed_bag(tmp_path, capsys):
    (tmp_path / "notabag").mkdir()
    (tmp_path / "notabag" / "metadata.yaml").write_text("rosbag2_bagfile_information: [unclosed")
    assert main(["replay", str(tmp_path / "notabag"), "--query", "q", *SMALL]) == 2
    _one_error_line(capsys, "cannot read bag")


def test_bad_annotations(codec_replay, tmp_path, capsys):
    gt = _annotations(tmp_path, task="ground", spans_s=[[2.0, 1.0]])
    assert main(["eval", str(codec_replay[1]), "--gt", str(gt)]) == 2
    _one_error_line(capsys, "videos[0].spans_s[0]: end 1.0 is before start 2.0")


@pytest.mark.parametrize("argv, fragment", [
    (["eval", "--gt", "{gt}"], "give RESULTS"),
    (["eval", "{replay}", "--compare", "codec", "uniform", "--gt", "{gt}"], "give --bag BAG and no RESULTS"),
    (["eval", "{replay}", "{replay}", "--gt", "{gt}", "--out", "{tmp}"], "with several RESULTS"),
    (["eval", "{tmp}", "--gt", "{gt}"], "results.json"),
    (["replay", "{tmp}", "--query", "q", "--canvases", "6"], "multiple of 4"),
])
def test_usage_errors(codec_replay, tmp_path, capsys, argv, fragment):
    gt = _annotations(tmp_path)
    argv = [a.format(gt=gt, replay=codec_replay[1], tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    _one_error_line(capsys, fragment)


def test_stream_without_an_entry_point_fails_replay_and_eval_says_why(small_clip, stamps, tmp_path, capsys):
    bag = write_image_bag(tmp_path / "clip", stamps(10), small_clip.aus[1:11])     # P-frames only: no IDR
    assert main(["replay", str(bag), "--query", "q", "--out", str(tmp_path / "r"), *SMALL]) == 2
    _one_error_line(capsys, "no frame decoded from 10 message(s)", "none had an IDR with SPS/PPS")
    assert main(["eval", str(tmp_path / "r"), "--gt", str(_annotations(tmp_path))]) == 2
    _one_error_line(capsys, "decoded no frames")
