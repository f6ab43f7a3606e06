"""The node with loop closure runs the global graph's solve on the host sparse
Cholesky: a backend forced by DSG_JIT_ROS_SPARSE_BACKEND that is not installed
stops configure with one sentence saying what to install (autostart: ``cannot
start`` and exit code 2, as for a parameter error)."""

import sys

import rclpy
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from dsg_jit_ros.optimization import sparse_backend


def test_a_forced_sparse_backend_that_does_not_import_stops_configure(monkeypatch):
    from dsg_jit_ros.ros.slam_node import SlamNode

    monkeypatch.setenv(sparse_backend.ENV_VAR, "cholmod")
    monkeypatch.setitem(sys.modules, "cvxopt", None)  # as if cvxopt were not installed
    monkeypatch.setitem(sys.modules, "cvxopt.cholmod", None)
    ctx = rclpy.Context()
    rclpy.init(args=["test"], context=ctx)
    node = SlamNode(context=ctx, parameter_overrides=[Parameter("autostart", value=False),
                                                      Parameter("loop.enabled", value=True)])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        error = node._configure_error
        assert "sparse Cholesky backend 'cholmod' is not available" in error, error
        assert "pip install cvxopt==1.3.3" in error and sparse_backend.ENV_VAR in error, error
        assert node.pipeline is None
        assert node._state_machine.current_state[1] == "unconfigured"
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)
