"""The node as a separate process (``python -m dsg_jit_ros.ros.slam_node --ros-args``
with the params file, overrides and remaps): a publisher and subscribers in this
test process; path, odometry, markers and status must arrive; SIGINT ends it
cleanly.  A bad parameter stops it at start-up with a message naming it."""

import signal
import subprocess
import sys

import numpy as np
import rclpy
from nav_msgs.msg import Odometry, Path
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2
from visualization_msgs.msg import MarkerArray

from conftest import REPO
from dsg_jit_ros.ros import convert
from dsg_jit_ros_msgs.msg import SlamStatus
from ros_helpers import SMALL_WINDOW, cloud_msg, odom_msg, spin_until
from test_window import ate, simulate

RELIABLE = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)


def _node_cmd(*extra):
    cmd = [sys.executable, "-m", "dsg_jit_ros.ros.slam_node", "--ros-args",
           "--params-file", str(REPO / "config" / "params.yaml")]
    for k, v in SMALL_WINDOW.items():
        cmd += ["-p", f"{k}:={v}"]
    return cmd + ["-r", "odom:=/robot/odom", "-r", "points:=/robot/points", *extra]


def test_bad_parameter_stops_the_node_with_a_clear_message():
    out = subprocess.run(_node_cmd("-p", "keyframe.min_rotation:=-0.1"), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "keyframe.min_rotation" in out.stderr and "out of range" in out.stderr


def test_node_process_maps_and_publishes_to_another_process():
    n = 8
    truth, odom, clouds = simulate(n, np.random.default_rng(11))
    proc = subprocess.Popen(_node_cmd(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    io = rclpy.create_node("process_test_io", context=ctx)
    try:
        pub_odom = io.create_publisher(Odometry, "/robot/odom", RELIABLE)
        pub_points = io.create_publisher(PointCloud2, "/robot/points", RELIABLE)
        got = {k: [] for k in ("path", "odometry", "voxels", "status")}
        for key, typ in (("path", Path), ("odometry", Odometry), ("voxels", MarkerArray), ("status", SlamStatus)):
            io.create_subscription(typ, f"/dsg_jit_slam/{key}", got[key].append, RELIABLE)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(io)

        def ready():
            assert proc.poll() is None, proc.stdout.read()
            return (pub_odom.get_subscription_count() > 0 and pub_points.get_subscription_count() > 0
                    and io.count_publishers("/dsg_jit_slam/status") > 0)

        spin_until(ex, ready, 240, "the node process (warm-up compile, then discovery)")
        spin_until(ex, lambda: all(p.get_subscription_count() for p in (pub_odom, pub_points)), 10, "matching")
        for k in range(n):
            pub_odom.publish(odom_msg(2.0 * k, odom[k]))  # 2 s apart: ~3 m/s, below max_linear_speed
            pub_points.publish(cloud_msg(2.0 * k, clouds[k]))
            spin_until(ex, lambda: len(got["status"]) > k, 60, f"status of keyframe {k}")
        pub_odom.publish(odom_msg(2.0 * (n - 1) + 0.1, odom[-1]))
        spin_until(ex, lambda: len(got["path"]) == n and len(got["odometry"]) == n + 1 and got["voxels"], 20, "outputs")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            log, _ = proc.communicate(timeout=30)
        finally:
            proc.kill()
        io.destroy_node()
        rclpy.shutdown(context=ctx)
    assert proc.returncode == 0, log
    status = got["status"][-1]
    assert status.keyframes == n and status.compilations_after_warmup == 0 and status.window_size == 5
    est = [convert.pose_to_matrix(p.pose) for p in got["path"][-1].poses]
    assert ate(est, truth) < ate(odom, truth)
    assert got["odometry"][-1].header.frame_id == "map"
    assert np.any(np.array(got["odometry"][-1].pose.covariance) != 0)
    assert len(got["voxels"][-1].markers[0].points) > 100
    assert "warm-up: 2 programs built" in log and "listening on /robot/odom and /robot/points" in log
