"""The cores (codec, model, segment, eval, train) must never import rclpy: ROS lives in ov2_ros/ros only."""
import ast
import pathlib

import pytest

PKG = pathlib.Path(__file__).resolve().parents[1] / "ov2_ros"
CORES = ["codec", "model", "segment", "eval", "train"]


def _imports(path: pathlib.Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("core", CORES)
def test_core_does_not_import_ros(core):
    files = sorted((PKG / core).rglob("*.py"))
    assert files, f"{core} has no modules"
    offenders = [str(f.relative_to(PKG)) for f in files
                 if _imports(f) & {"rclpy", "sensor_msgs", "std_msgs", "geometry_msgs", "nav_msgs", "rosidl_runtime_py"}]
    assert offenders == []


def test_codec_does_not_import_torch():
    offenders = [str(f.relative_to(PKG)) for f in (PKG / "codec").rglob("*.py") if "torch" in _imports(f)]
    assert offenders == []


def test_tokenize_only_pipeline_does_not_import_torch():
    """Building a pipeline (which reads a trained model's recorded tokenizer settings) and tokenizing a clip must not
    pull in torch/transformers: ~400 MB and seconds of import for decode-only use."""
    import subprocess
    import sys

    code = ("import sys\nfrom ov2_ros.codec.synth import make_event_clip\n"
            "from ov2_ros.pipeline import PerceptionPipeline, PipelineConfig\n"
            "p = PerceptionPipeline(PipelineConfig(model='ov2-toy'))\n"
            "clip = make_event_clip(160, 120)\n"
            "frames = sum(p.push(au, i).frames for i, au in enumerate(clip.aus[:30]))\n"
            "assert frames > 0, frames\n"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
