"""A parameter name the node does not declare (a misspelt ``window: {sise: 3}`` in a
parameters file, or ``-p window.sise:=3``) stops the node at configure with one
sentence naming it and the closest declared parameter: the node process (autostart)
exits with code 2; a node waiting for lifecycle transitions (autostart false) stays
up unconfigured, as with a broken map file.  rclpy's own parameters and the
sections of other nodes in a shared file are not refused."""

import subprocess
import sys

import rclpy
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from conftest import REPO

SUGGESTION = "unknown parameter 'window.sise' (from the parameters file or -p); did you mean 'window.size'?"


def _run_node(*ros_args):
    cmd = [sys.executable, "-m", "dsg_jit_ros.ros.slam_node", "--ros-args",
           "--params-file", str(REPO / "config" / "params.yaml"), *ros_args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_a_misspelt_name_in_a_params_file_stops_the_node_naming_the_closest(tmp_path):
    params = _write(tmp_path / "mine.yaml", "/**:\n  ros__parameters:\n    window: {sise: 3}\n")
    out = _run_node("--params-file", params)
    assert out.returncode == 2, out.stderr
    assert f"cannot start: {SUGGESTION}" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_a_misspelt_name_from_dash_p_stops_the_node_naming_the_closest():
    out = _run_node("-p", "window.sise:=3", "-p", "use_sim_time:=true")
    assert out.returncode == 2, out.stderr
    assert f"cannot start: {SUGGESTION}" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def _node(args, overrides=()):
    from dsg_jit_ros.ros.slam_node import SlamNode

    ctx = rclpy.Context()
    rclpy.init(args=["test", "--ros-args", *args], context=ctx)
    node = SlamNode(context=ctx, parameter_overrides=[Parameter("autostart", value=False), *overrides])
    return ctx, node


def test_without_autostart_the_node_stays_up_unconfigured(tmp_path):
    params = _write(tmp_path / "mine.yaml", "/**:\n  ros__parameters:\n    window: {sise: 3}\n")
    ctx, node = _node(["--params-file", params])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node._configure_error == SUGGESTION and node.pipeline is None
        assert node._state_machine.current_state[1] == "unconfigured"
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def test_builtin_parameters_and_other_nodes_sections_are_accepted(tmp_path):
    from dsg_jit_ros.ros.params import undeclared_overrides

    shared = _write(tmp_path / "shared.yaml", (
        "/**:\n  ros__parameters:\n    use_sim_time: true\n"
        "other_node:\n  ros__parameters:\n    frequency: 10.0\n"
        "dsg_jit_slam:\n  ros__parameters:\n    window: {size: 3}\n"))
    ctx, node = _node(["--params-file", shared, "-p", "voxel.size:=0.7", "-p", "start_type_description_service:=true"],
                      [Parameter("warmup", value=False)])
    try:
        assert undeclared_overrides(node) == []
        assert node._values["window.size"] == 3 and node._values["voxel.size"] == 0.7
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def test_an_unreadable_params_file_is_one_sentence_not_a_traceback(tmp_path):
    broken = _write(tmp_path / "broken.yaml", "/**:\n  ros__parameters:\n    window: {size: [\n")
    out = _run_node("--params-file", broken)
    assert out.returncode == 2, out.stderr
    assert f"cannot start: Couldn't parse params file: '--params-file {broken}'" in out.stderr
    assert "Traceback" not in out.stderr and "/project/src" not in out.stderr
