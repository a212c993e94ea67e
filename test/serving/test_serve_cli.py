"""``ov2-ros serve`` end to end: a local cluster and the deployment from one command, a node-side client answered
through it, Ctrl-C stops it cleanly."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading

import pytest

from ov2_ros.cli import main
from ov2_ros.model.answer import Query

pytest.importorskip("ray.serve", reason="ray[serve] is in requirements-dev.txt (pip install .[serve])")


def test_serve_flags_map_onto_the_deployment_config():
    from ov2_ros.cli import build_parser
    from ov2_ros.commands.serve import serve_config

    args = build_parser().parse_args(["serve", "--device", "cuda", "--replicas", "2", "--batch-wait-ms", "5"])
    config = serve_config(args)
    assert (config.replicas, config.num_gpus, config.batch_wait_s, config.device) == (2, 1.0, 0.005, "cuda")
    assert serve_config(build_parser().parse_args(["serve"])).num_gpus == 0.0


def test_detach_without_a_cluster_address_is_refused(capsys):
    assert main(["serve", "--detach"]) == 2
    assert "--detach needs --address" in capsys.readouterr().err


def test_serve_starts_a_cluster_reports_replicas_answers_and_stops_on_ctrl_c(windows):
    from ov2_ros.serving import ServedRuntime

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "ov2_ros.cli", "serve", "--app", "ov2cli", "--port", str(port),
                             "--ray-cpus", "2", "--torch-threads", "1", "--max-new-tokens", "8"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line.strip())
            if line.startswith("serving "):
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(300) and proc.poll() is None, lines
        assert "ov2cli: replicas 1/1 running" in lines
        assert f"ray_address:=http://127.0.0.1:{port} ray_app:=ov2cli" in lines[-1]
        answer = ServedRuntime(f"http://127.0.0.1:{port}", "ov2cli").answer(windows[3], Query("ask", "what?"))
        assert answer.task == "ask" and answer.window_frames == (windows[3].start_frame, windows[3].end_frame)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
    assert rc == 0


def test_run_and_replay_flags_select_the_ray_backend(tmp_path):
    from ov2_ros.cli import build_parser
    from ov2_ros.commands.replay import replay_config
    from ov2_ros.commands.run import ros_arguments
    from ov2_ros.eval.replay import pipeline_config
    from ov2_ros.ros.params import pipeline_config as node_config

    args = build_parser().parse_args(["run", "--backend", "ray", "--ray-address", "http://gpu-head:8000",
                                      "--ray-app", "fleet"])
    ros_args = ros_arguments(args)
    assert {"backend:=ray", "ray_address:=http://gpu-head:8000", "ray_app:=fleet"} <= set(ros_args)
    config = node_config({"backend": "ray", "ray_address": "http://gpu-head:8000", "ray_app": "fleet"})
    assert (config.backend, config.ray_address, config.ray_app) == ("ray", "http://gpu-head:8000", "fleet")

    args = build_parser().parse_args(["replay", str(tmp_path), "--query", "ask: what?", "--backend", "ray",
                                      "--ray-address", "http://gpu-head:8000", "--ray-app", "fleet"])
    config = pipeline_config(replay_config(args, "codec", args.query))
    assert (config.backend, config.ray_address, config.ray_app) == ("ray", "http://gpu-head:8000", "fleet")


def test_the_ray_backend_loads_no_model_and_reports_an_unreachable_server(windows):
    from ov2_ros.pipeline import PerceptionPipeline, PipelineConfig
    from ov2_ros.serving import ServedRuntime

    pipeline = PerceptionPipeline(PipelineConfig(backend="ray", ray_address="http://127.0.0.1:9", segment=False,
                                                 ray_timeout_s=2.0))
    assert pipeline.load() == {} and isinstance(pipeline._runtime, ServedRuntime)
    from ov2_ros.pipeline import InferenceJob

    job = InferenceJob(windows[2], Query("ask", "what?"), "ask: what?", 1)
    result = pipeline.infer(job)
    assert result.answer is None and "ServerUnavailableError" in result.error
    status = pipeline.status()
    assert status["model_errors"] == 1 and status["serve_failures"] == 1 and "127.0.0.1:9" in status["serve_last_error"]
