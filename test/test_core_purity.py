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
