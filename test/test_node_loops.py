"""Loop closure through the node (issue 8), in-process over DDS: the ring corridor of
``test_loop_closure`` (a bare stretch where the front end drifts, 1.3 laps) published as
odometry and clouds with the shipped planar-laser parameters.  The node solves and
publishes each keyframe, then (after publishing) applies the loop thread's solves; a
test node must receive the loop markers (lines between closed keyframes) and a path whose
error against ground truth is below what the window alone reaches."""

import numpy as np
import rclpy
from nav_msgs.msg import Odometry, Path
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2
from visualization_msgs.msg import MarkerArray

from conftest import REPO
from dsg_jit_ros.ros import convert
from dsg_jit_ros.ros.slam_node import SlamNode
from dsg_jit_ros.tools.planar_laser import PlanarLaserConfig
from dsg_jit_ros.tools.ring_world import RingConfig, simulate_ring
from dsg_jit_ros_msgs.msg import SlamStatus
from ros_helpers import cloud_msg, odom_msg, spin_until

RELIABLE = QoSProfile(depth=2000, reliability=ReliabilityPolicy.RELIABLE)
RING = RingConfig(length=40.0, width=14.0, alcove_spacing=10.0, pillars=3, bare_north=True)


def _ate(est, truth):
    return float(np.sqrt(np.mean(np.sum((est[:, :2, 3] - truth[:, :2, 3]) ** 2, axis=1))))


def test_the_node_closes_loops_and_publishes_them(tmp_path):
    stamps, truth, odom, scans = simulate_ring(RING, laser=PlanarLaserConfig(max_range=10.0))
    truth = np.linalg.inv(truth[0]) @ truth
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = SlamNode(context=ctx, cli_args=["--ros-args", "--params-file", str(REPO / "config" / "planar_laser.yaml")],
                    parameter_overrides=[Parameter("input_reliability", value="reliable"),
                                         Parameter("output.save_directory", value=str(tmp_path))])
    io = rclpy.create_node("loop_test_io", context=ctx)
    pub_odom = io.create_publisher(Odometry, "odom", RELIABLE)
    pub_points = io.create_publisher(PointCloud2, "points", RELIABLE)
    got = {"status": [], "path": [], "tf": []}
    io.create_subscription(SlamStatus, "/dsg_jit_slam/status", got["status"].append, RELIABLE)
    io.create_subscription(Path, "/dsg_jit_slam/path", got["path"].append, RELIABLE)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    markers = []
    io.create_subscription(MarkerArray, "/dsg_jit_slam/loop_closures", markers.append, latched)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    executor.add_node(io)
    try:
        spin_until(executor, lambda: pub_odom.get_subscription_count() > 0 and pub_points.get_subscription_count() > 0,
                   60, "the node's subscriptions")
        assert node.pipeline.graph_ready.wait(120)  # the graph's solve compiles after activation
        for k, (t, o, c) in enumerate(zip(stamps, odom, scans)):
            pub_odom.publish(odom_msg(float(t), o))
            pub_points.publish(cloud_msg(float(t), c))
            # each message taken before the next (DDS queues are bounded: a burst would lose some)
            spin_until(executor, lambda: node.received["points"] > k and node.received["odom"] > k, 20, "a scan taken")
            if k % 20 == 19:  # at most ~20 scans ahead of the solver (its queue is not a test subject here)
                spin_until(executor, lambda: not node.pipeline.queued_keyframes, 60, "the node to catch up")
        done = lambda: got["status"] and got["status"][-1].keyframes == node.pipeline.keyframes  # noqa: E731
        spin_until(executor, lambda: not node.pipeline.queued_keyframes and done(), 120, "the last keyframe")
        spin_until(executor, lambda: node.pipeline.global_map.worker.idle and not node._solve_lock.locked(), 120,
                   "the loop thread")
        status = got["status"][-1]
        assert status.loop_closures >= 2 and status.compilations_after_warmup == 0, status
        # keyframe.track_between (on in planar_laser.yaml): the worker registered the clouds
        # between keyframes as they came, each against the keyframe before it
        tracked = node.pipeline.tracked_scans
        kf_stamps = {s for s, _ in node.pipeline.window.keyframe_poses}
        assert len(tracked) > len(stamps) // 3
        assert all(k in kf_stamps and k < s for s, k in zip(tracked.stamps, tracked.keyframe_stamps))
        # the loop markers: one line (two points) per loop edge in the graph when they were sent
        spin_until(executor, lambda: markers, 20, "the loop markers")
        lines = [m for m in markers[-1].markers if m.type == m.LINE_LIST]
        assert lines and len(lines[0].points) >= 4 and len(lines[0].points) % 2 == 0
        # the published path (the last one: republished after each loop closure applied) against
        # ground truth, at each keyframe's stamp: below 0.15 m, which the window alone exceeds on
        # this ring (test_loop_closure asserts that counter-example)
        final = np.array([m for _, m in node.pipeline.window.keyframe_poses])

        def corrected():
            poses = np.array([convert.pose_to_matrix(p.pose) for p in got["path"][-1].poses])
            return poses.shape == final.shape and np.allclose(poses, final, atol=1e-9)
        spin_until(executor, corrected, 20, "the path after the last loop closure")
        path = got["path"][-1]
        index = {round(float(t), 6): k for k, t in enumerate(stamps)}
        keys = [index[round(convert.stamp_to_sec(p.header.stamp), 6)] for p in path.poses]
        est = np.array([convert.pose_to_matrix(p.pose) for p in path.poses])
        assert _ate(est, truth[keys]) < 0.15
    finally:
        executor.shutdown()
        node.destroy_node()
        io.destroy_node()
        rclpy.shutdown(context=ctx)
