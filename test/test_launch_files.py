"""Cheap static checks of the launch files, the RViz config and their installation.

No launch import (launch/launch_ros have no wheels; test_launch_slam.py runs them where
they exist): the launch files are parsed with ast, the RViz config with yaml, and
setup.py's data_files are read by running setup.py with setuptools.setup stubbed out.
"""

import ast
import configparser
import runpy
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import setuptools
import yaml
from conftest import REPO

LAUNCH = REPO / "launch"
RVIZ = REPO / "config" / "dsg_jit_ros.rviz"
SLAM_NODE = REPO / "dsg_jit_ros" / "ros" / "slam_node.py"
NODE_OUTPUTS = REPO / "dsg_jit_ros" / "ros" / "outputs.py"  # the node's publishers
PACKAGE = "dsg_jit_ros"


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _call_name(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def _declared_arguments(path: Path) -> set[str]:
    return {node.args[0].value for node in ast.walk(_tree(path))
            if isinstance(node, ast.Call) and _call_name(node) == "DeclareLaunchArgument"
            and node.args and isinstance(node.args[0], ast.Constant)}


def _strings(path: Path) -> set[str]:
    return {n.value for n in ast.walk(_tree(path)) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def _node_topics() -> tuple[str, set[str]]:
    """The node's name and the topics it publishes, read from the source of slam_node.py
    and of ros/outputs.py (its publishers)."""
    tree = _tree(SLAM_NODE)
    name = next(n.value.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "NODE_NAME" for t in n.targets))
    topics = {c.args[1].value for source in (SLAM_NODE, NODE_OUTPUTS) for c in ast.walk(_tree(source))
              if isinstance(c, ast.Call) and _call_name(c) in ("create_publisher", "create_lifecycle_publisher")
              and len(c.args) > 1 and isinstance(c.args[1], ast.Constant)}
    return name, topics


def _rviz() -> dict:
    return yaml.safe_load(RVIZ.read_text())


def _displays() -> list[dict]:
    return _rviz()["Visualization Manager"]["Displays"]


# ---- launch files ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["slam.launch.py", "demo.launch.py"])
def test_launch_file_defines_generate_launch_description(name):
    tree = _tree(LAUNCH / name)
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description")
    assert not fn.args.args, "launch calls generate_launch_description() without arguments"


def test_slam_launch_arguments_and_node():
    path = LAUNCH / "slam.launch.py"
    assert _declared_arguments(path) == {"sensor", "params_file", "use_sim_time", "odom_topic", "points_topic",
                                         "namespace"}
    strings = _strings(path)
    assert {"dsg_jit_ros", "dsg_jit_slam", "slam_node", "odom", "points", "planar_laser", "lidar_3d"} <= strings
    for sensor in ("planar_laser", "lidar_3d", "params"):  # the files the sensor argument names are shipped
        assert (REPO / "config" / f"{sensor}.yaml").exists()


def test_demo_launch_arguments_and_player():
    path = LAUNCH / "demo.launch.py"
    assert _declared_arguments(path) == {"bag", "rate", "rviz", "rviz_config", "linger", "sensor"}
    strings = _strings(path)
    assert {"slam.launch.py", "bag_player", "--rate", "--clock", "--wait-subscribers", "/odom", "/points",
            "out/demo_bag", "dsg_jit_ros.rviz", "rviz2", "use_sim_time", "true"} <= strings
    assert "Shutdown" in {_call_name(c) for c in ast.walk(_tree(path)) if isinstance(c, ast.Call)}


# ---- RViz config -------------------------------------------------------------------------------

def test_rviz_config_parses_with_fixed_frame_map():
    cfg = _rviz()
    assert cfg["Visualization Manager"]["Global Options"]["Fixed Frame"] == "map"
    classes = sorted(d["Class"] for d in _displays())
    assert classes == sorted(f"rviz_default_plugins/{c}" for c in
                             ("Grid", "TF", "PointCloud2", "MarkerArray", "MarkerArray", "Path", "Odometry"))
    assert all(d["Enabled"] for d in _displays())


def test_rviz_config_topics():
    topics = {d["Topic"]["Value"]: (d["Class"].split("/")[1], d["Topic"]) for d in _displays() if "Topic" in d}
    assert {k: c for k, (c, _) in topics.items()} == {
        "/dsg_jit_slam/path": "Path",
        "/dsg_jit_slam/voxels": "MarkerArray",
        "/dsg_jit_slam/loop_closures": "MarkerArray",
        "/dsg_jit_slam/map": "PointCloud2",
        "/dsg_jit_slam/odometry": "Odometry",
    }
    latched = {k for k, (_, t) in topics.items() if t["Durability Policy"] == "Transient Local"}
    assert latched == {"/dsg_jit_slam/map", "/dsg_jit_slam/loop_closures"}  # as the node publishes them
    assert all(t["Reliability Policy"] == "Reliable" for _, t in topics.values())


@pytest.mark.skipif(not SLAM_NODE.exists(), reason="no slam_node.py yet")
def test_rviz_topics_are_the_nodes_outputs():
    name, published = _node_topics()
    shown = {d["Topic"]["Value"] for d in _displays() if "Topic" in d}
    private = {f"/{name}/{t[2:]}" for t in published if t.startswith("~/")}
    assert shown == private - {f"/{name}/status"}
    assert "/tf" in published


# ---- installation ------------------------------------------------------------------------------

@pytest.fixture
def setup_kwargs(monkeypatch):
    captured = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: captured.update(kw))
    monkeypatch.chdir(REPO)
    runpy.run_path(str(REPO / "setup.py"), run_name="__main__")
    return captured


def test_setup_installs_launch_config_msg_and_marker(setup_kwargs):
    data = {dest: set(files) for dest, files in setup_kwargs["data_files"]}
    assert f"resource/{PACKAGE}" in data["share/ament_index/resource_index/packages"]
    assert (REPO / "resource" / PACKAGE).exists()
    assert "package.xml" in data[f"share/{PACKAGE}"]
    assert {"launch/slam.launch.py", "launch/demo.launch.py"} <= data[f"share/{PACKAGE}/launch"]
    assert "config/dsg_jit_ros.rviz" in data[f"share/{PACKAGE}/config"]
    config_files = {f"config/{p.name}" for p in (REPO / "config").iterdir() if p.is_file()}
    assert config_files <= data[f"share/{PACKAGE}/config"]
    msgs = {f"msg/{p.name}" for p in (REPO / "msg").glob("*.msg")}
    assert msgs and msgs <= data[f"share/{PACKAGE}/msg"]


def test_scripts_go_where_launch_ros_looks():
    """launch_ros' Node(package=..., executable=...) runs <prefix>/lib/<package>/<executable>."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    assert cfg["install"]["install_scripts"] == f"$base/lib/{PACKAGE}"
    assert cfg["develop"]["script_dir"] == f"$base/lib/{PACKAGE}"


def test_package_xml_declares_launch_dependencies():
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.findtext("name") == PACKAGE
    assert root.find("export/build_type").text == "ament_python"
    exec_deps = {e.text for e in root.findall("exec_depend")}
    test_deps = {e.text for e in root.findall("test_depend")}
    assert {"launch", "launch_ros", "ros2launch"} <= exec_deps
    assert "launch_testing" in test_deps
