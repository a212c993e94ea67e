"""``ov2-ros run`` maps its flags onto ov2_node parameters; ``ov2-ros demo`` runs end to end and writes a real bag."""
import json

from rosbags.highlevel import AnyReader

from ov2_ros.cli import build_parser, main
from ov2_ros.commands.run import ros_arguments
from ov2_ros.eval.bags import typestore


def test_run_flags_become_ros_parameters_and_remaps():
    args = build_parser().parse_args(["run", "--model", "/ckpt", "--device", "cuda", "--canvases", "16",
                                      "--no-segment", "--image-topic", "/cam/h264", "--params-file", "p.yaml",
                                      "--ros-args", "-p", "qos_depth:=5"])
    assert ros_arguments(args) == ["--ros-args", "--params-file", "p.yaml", "-p", "model:=/ckpt",
                                   "-p", "device:=cuda", "-p", "tokenizer.window_canvases:=16",
                                   "-p", "segment:=false", "-r", "image/compressed:=/cam/h264",
                                   "-p", "qos_depth:=5"]
    assert ros_arguments(build_parser().parse_args(["run"])) == ["--ros-args"]   # the params file keeps the rest
    args = build_parser().parse_args(["run", "--backend", "onnxruntime", "--export-dir", "/exports/tiny"])
    assert ros_arguments(args) == ["--ros-args", "-p", "backend:=onnxruntime", "-p", "export_dir:=/exports/tiny"]


def test_demo_plays_answers_and_records_an_mcap_bag(tmp_path, capsys):
    rc = main(["demo", "--model", "tiny-random", "--out", str(tmp_path), "--loops", "1", "--size", "160x120",
               "--no-segment", "--query", "when: the square moves"])
    printed = capsys.readouterr().out
    assert rc == 0 and "tiny RANDOM weights" in printed and "--model lmms-lab-encoder" in printed
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["counts"]["/image/compressed"] == 120 and summary["counts"]["/answer"] >= 1
    with AnyReader([tmp_path / "ov2_demo_bag"], default_typestore=typestore()) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        answers = [json.loads(reader.deserialize(raw, c.msgtype).data)
                   for c, _, raw in reader.messages([c for c in reader.connections if c.topic == "/answer"])]
    assert topics["/image/compressed"] == "sensor_msgs/msg/CompressedImage"
    assert topics["/diagnostics"] == "diagnostic_msgs/msg/DiagnosticArray"
    assert answers[0]["task"] == "ground" and answers[0]["query"] == "when: the square moves"
