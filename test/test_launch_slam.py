"""launch_testing test of launch/slam.launch.py: the node starts, maps, and exits cleanly.

Run (needs launch, launch_ros, launch_testing: a ROS distribution, or the side venv of
tools/launch_venv.sh, see README "Launch files"):

    launch_test test/test_launch_slam.py

The active test publishes a short synthetic drive (odometry at 20 Hz, clouds of a box
room at 5 Hz, 1 m/s, so several keyframes) and waits for ~/status, ~/path and the
map->odom transform; the post-shutdown test checks the node's exit code.  Under plain
pytest without launch_testing (the project's .venv, CI) the module is skipped.
"""

import math
import os
import tempfile
import threading
import time
import unittest

import pytest

_WHY = ("needs launch_testing and launch_ros (no PyPI wheels; use a ROS distribution or the side "
        "venv of tools/launch_venv.sh, then: launch_test test/test_launch_slam.py)")
pytest.importorskip("launch_testing", reason=_WHY)
pytest.importorskip("launch_ros", reason=_WHY)

import launch_testing
import launch_testing.actions
import launch_testing.asserts
import numpy as np
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource

import launch

NODE = "/dsg_jit_slam"
SLAM_LAUNCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "launch", "slam.launch.py")
# Start-up includes the solver's warm-up compile (tens of seconds on 2 busy cores).
STARTUP_TIMEOUT = float(os.environ.get("DSG_LAUNCH_TEST_STARTUP_TIMEOUT", "240"))
OUTPUT_TIMEOUT = 60.0

# Isolation of this run (ROS_ENV.md): loopback discovery, its own domain, a writable log dir.
# setdefault: a caller's (or launch_testing_ros') choice wins.  Set before the launch starts,
# so the node inherits them.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="dsg_launch_test_log_"))


@pytest.mark.launch_test  # collected by launch_testing's pytest plugin (plain `launch_test` ignores it)
def generate_test_description():
    slam = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(SLAM_LAUNCH),
        launch_arguments={
            "use_sim_time": "false",
            "odom_topic": "/launch_test/odom",
            "points_topic": "/launch_test/points",
        }.items(),
    )
    return launch.LaunchDescription([slam, launch_testing.actions.ReadyToTest()])


# ---- synthetic input ---------------------------------------------------------------------------

def _room_points(rng, n=3000, half=(6.0, 4.0), height=3.0):
    """Points on the floor and four walls of a box room, world frame."""
    hx, hy = half
    k = rng.integers(0, 5, n)
    u, v = rng.uniform(-1.0, 1.0, n), rng.uniform(0.0, 1.0, n)
    pts = np.empty((n, 3))
    floor = k == 0
    pts[floor] = np.c_[u[floor] * hx, v[floor] * 2 * hy - hy, np.zeros(floor.sum())]
    for wall, (axis, sign) in enumerate(((0, 1), (0, -1), (1, 1), (1, -1)), start=1):
        m = k == wall
        along = u[m] * (hy if axis == 0 else hx)
        z = v[m] * height
        fixed = np.full(m.sum(), sign * (hx if axis == 0 else hy))
        pts[m] = np.c_[fixed, along, z] if axis == 0 else np.c_[along, fixed, z]
    return pts


def _stamp(t):
    from builtin_interfaces.msg import Time
    sec = math.floor(t)
    return Time(sec=sec, nanosec=min(round((t - sec) * 1e9), 999_999_999))


def _odometry(t, x, y):
    from nav_msgs.msg import Odometry
    msg = Odometry()
    msg.header.stamp = _stamp(t)
    msg.header.frame_id = "odom"
    msg.child_frame_id = "base_link"
    msg.pose.pose.position.x, msg.pose.pose.position.y = float(x), float(y)
    msg.pose.pose.orientation.w = 1.0
    msg.twist.twist.linear.x = 1.0
    return msg


def _cloud(t, points_body):
    from sensor_msgs.msg import PointCloud2, PointField
    pts = np.ascontiguousarray(points_body, dtype=np.float32)
    msg = PointCloud2()
    msg.header.stamp = _stamp(t)
    msg.header.frame_id = "base_link"
    msg.height, msg.width = 1, len(pts)
    msg.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                  for i, n in enumerate("xyz")]
    msg.is_bigendian, msg.point_step, msg.row_step = False, 12, 12 * len(pts)
    msg.is_dense = True
    msg.data = pts.tobytes()
    return msg


# ---- tests -------------------------------------------------------------------------------------

class TestSlamNodeOutputs(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        cls.rclpy = rclpy
        cls.context = rclpy.Context()
        rclpy.init(context=cls.context)
        cls.node = rclpy.create_node("dsg_launch_test_driver", context=cls.context)
        cls.executor = SingleThreadedExecutor(context=cls.context)
        cls.executor.add_node(cls.node)
        cls.spinner = threading.Thread(target=cls.executor.spin, daemon=True)
        cls.spinner.start()

    @classmethod
    def tearDownClass(cls):
        cls.executor.shutdown()  # spin() returns
        cls.spinner.join(timeout=5.0)
        cls.node.destroy_node()
        cls.rclpy.try_shutdown(context=cls.context)

    def _wait(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        self.fail(f"timed out after {timeout:.0f} s waiting for {what}")

    def test_status_path_and_tf_arrive(self, proc_output):
        from dsg_jit_ros_msgs.msg import SlamStatus
        from nav_msgs.msg import Odometry, Path
        from rclpy.duration import Duration
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import PointCloud2
        from tf2_msgs.msg import TFMessage

        got = {"status": [], "path": [], "tf": []}
        node = self.node
        node.create_subscription(SlamStatus, f"{NODE}/status", got["status"].append, 10)
        node.create_subscription(Path, f"{NODE}/path", got["path"].append, 10)
        node.create_subscription(TFMessage, "/tf", got["tf"].append, 100)
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        pub_odom = node.create_publisher(Odometry, "/launch_test/odom", reliable)
        pub_points = node.create_publisher(PointCloud2, "/launch_test/points", reliable)

        # The node subscribes after its warm-up compile: wait for it to match (no fixed sleep).
        self._wait(lambda: pub_odom.get_subscription_count() > 0 and pub_points.get_subscription_count() > 0,
                   STARTUP_TIMEOUT, "the node's odom and points subscriptions")
        self._wait(lambda: node.count_publishers(f"{NODE}/status") > 0 and node.count_publishers(f"{NODE}/path") > 0,
                   10.0, "the node's status and path publishers")

        rng = np.random.default_rng(0)
        world = _room_points(rng)
        t0, speed, x0 = 1000.0, 1.0, -3.0
        for k in range(80):                      # 4 s of driving at 20 Hz: 4 m, keyframes every 0.5 m
            t = t0 + 0.05 * k
            x = x0 + speed * (t - t0)
            pub_odom.publish(_odometry(t, x, 0.0))
            if k % 4 == 0:
                body = world - np.array([x, 0.0, 0.0])
                pub_points.publish(_cloud(t, body + rng.normal(0.0, 0.01, body.shape)))
            time.sleep(0.02)
        pub_odom.wait_for_all_acked(Duration(seconds=5.0))
        pub_points.wait_for_all_acked(Duration(seconds=5.0))

        self._wait(lambda: got["status"] and got["path"], OUTPUT_TIMEOUT, "~/status and ~/path")
        self._wait(lambda: any(tr.header.frame_id == "map" and tr.child_frame_id == "odom"
                               for m in got["tf"] for tr in m.transforms), 10.0, "map->odom on /tf")

        status, path = got["status"][-1], got["path"][-1]
        self.assertGreaterEqual(status.keyframes, 1)
        self.assertEqual(status.header.frame_id, "map")
        self.assertEqual(path.header.frame_id, "map")
        self.assertGreaterEqual(len(path.poses), 1)
        xs = [p.pose.position.x for p in path.poses]
        self.assertTrue(np.all(np.isfinite(xs)), xs)
        # The node's start-up line names the remapped inputs.
        proc_output.assertWaitFor("/launch_test/points", timeout=1.0, stream="stderr")


@launch_testing.post_shutdown_test()
class TestSlamNodeShutdown(unittest.TestCase):

    def test_exit_code(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
