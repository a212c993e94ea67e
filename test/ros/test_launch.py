"""launch_ros is not installable here, so the launch file is read as code: its nodes, executables, parameters and
remaps must agree with setup.py's entry points, config/ov2.yaml and the topics the nodes really use."""
from __future__ import annotations

import ast
import importlib
import pathlib

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "launch" / "ov2.launch.py"


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name]


def _kw(call: ast.Call, key: str):
    return next((k.value for k in call.keywords if k.arg == key), None)


def _const(node) -> str | None:
    return node.value if isinstance(node, ast.Constant) else None


def _entry_points() -> dict[str, str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    scripts = next(k.value for c in _calls(tree, "setup") for k in c.keywords if k.arg == "entry_points")
    lines = ast.literal_eval(scripts)["console_scripts"]
    return {ln.split("=")[0].strip(): ln.split("=")[1].strip() for ln in lines}


def _node_topics(module: str) -> set[str]:
    """Topic names the node module subscribes/publishes to (string literals in create_* calls, and its
    OUTPUT_TOPICS table)."""
    path = ROOT / (module.replace(".", "/") + ".py")
    topics = {topic for _, topic, _ in getattr(importlib.import_module(module), "OUTPUT_TOPICS", {}).values()}
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Call) and getattr(n.func, "attr", "").startswith(("create_subscription",
                                                                               "create_publisher",
                                                                               "create_lifecycle_publisher")):
            if len(n.args) >= 2 and _const(n.args[1]):
                topics.add(n.args[1].value)
    return topics


def _launch_nodes():
    tree = ast.parse(LAUNCH.read_text())
    return tree, _calls(tree, "LifecycleNode") + _calls(tree, "Node")


def test_launch_nodes_match_entry_points_and_yaml():
    _, nodes = _launch_nodes()
    scripts = _entry_points()
    yaml_nodes = set(yaml.safe_load((ROOT / "config" / "ov2.yaml").read_text()))
    names = set()
    for call in nodes:
        exe, name, pkg = (_const(_kw(call, k)) for k in ("executable", "name", "package"))
        assert exe in scripts, f"launch runs {exe!r}, not a console script in setup.py"
        module, func = scripts[exe].split(":")
        assert callable(getattr(importlib.import_module(module), func))
        assert name in yaml_nodes, f"node {name!r} has no ros__parameters block in config/ov2.yaml"
        assert pkg is None or pkg == "ov2_ros" or isinstance(_kw(call, "package"), ast.Name)
        params = _kw(call, "parameters")
        assert isinstance(params, ast.List) and any(getattr(e, "id", None) == "params_file" for e in params.elts)
        names.add(name)
    assert names == {"ov2_node", "h264_encoder_node"}
    assert {"ov2_node", "h264_encoder_node"} <= set(scripts)


def test_ov2_node_is_a_lifecycle_node_and_the_bridge_is_optional():
    tree, _ = _launch_nodes()
    (ov2,) = _calls(tree, "LifecycleNode")
    assert _const(_kw(ov2, "name")) == "ov2_node"
    (bridge,) = _calls(tree, "Node")
    cond = _kw(bridge, "condition")
    assert isinstance(cond, ast.Call) and cond.func.id == "IfCondition"
    assert _const(cond.args[0].args[0]) == "use_bridge"


def test_remaps_name_topics_the_nodes_really_use():
    _, nodes = _launch_nodes()
    scripts = _entry_points()
    for call in nodes:
        module = scripts[_const(_kw(call, "executable"))].split(":")[0]
        used = _node_topics(module)
        remaps = _kw(call, "remappings")
        sources = {_const(t.elts[0]) for t in remaps.elts}
        assert sources and sources <= used, f"{module}: remaps {sources - used} are not topics it uses ({used})"
    assert {"image/compressed", "query", "answer", "tracking/points", "waypoints", "mask", "markers"} <= \
        _node_topics("ov2_ros.ros.node")   # DESIGN.md contract 4


def test_every_launch_argument_is_described_and_declared():
    tree, _ = _launch_nodes()
    declared = {}
    for call in _calls(tree, "DeclareLaunchArgument"):
        desc = _const(_kw(call, "description"))
        assert desc, f"launch argument {_const(call.args[0])!r} has no description"
        declared[_const(call.args[0])] = call
    used = {_const(c.args[0]) for c in _calls(tree, "LaunchConfiguration")}
    assert used <= set(declared), f"undeclared launch arguments {used - set(declared)}"
    assert {"params_file", "use_bridge", "image_topic"} <= set(declared)
    default = ast.unparse(_kw(declared["params_file"], "default_value"))
    assert "ov2.yaml" in ast.unparse(tree) and "default_params" in default


def test_setup_installs_launch_and_config():
    text = (ROOT / "setup.py").read_text()
    assert 'glob("launch/*.py")' in text and 'glob("config/*.yaml")' in text
