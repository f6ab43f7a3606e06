"""The node's lifecycle driven from another process (lifecycle_msgs services), as a
launch system or a supervisor would: started with ``autostart:=false`` it waits
unconfigured; configure compiles and creates its publishers but subscribes to
nothing; activate subscribes and keyframes come out; deactivate unsubscribes and
mutes it; cleanup and shutdown end the process with exit code 0."""

import subprocess
import sys

import numpy as np
import rclpy
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from nav_msgs.msg import Odometry
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2

from conftest import REPO
from dsg_jit_ros_msgs.msg import SlamStatus
from ros_helpers import SMALL_WINDOW, cloud_msg, odom_msg, spin_until
from test_window import simulate

RELIABLE = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
# a name of its own: a node of the default name that an earlier test ran in this pytest
# process leaves its rcl services in the DDS graph (rclpy finalises them late), and a
# request matched only to those stale servers is never answered
NODE = "/dsg_jit_slam_lifecycle_test"


def _node_cmd():
    cmd = [sys.executable, "-m", "dsg_jit_ros.ros.slam_node", "--ros-args",
           "--params-file", str(REPO / "config" / "params.yaml"), "-p", "autostart:=false"]
    for k, v in SMALL_WINDOW.items():
        cmd += ["-p", f"{k}:={v}"]
    return cmd + ["-r", "odom:=/lc/odom", "-r", "points:=/lc/points", "-r", f"__node:={NODE[1:]}"]


def test_lifecycle_transitions_from_another_process():
    truth, odom, clouds = simulate(6, np.random.default_rng(5))
    proc = subprocess.Popen(_node_cmd(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    io = rclpy.create_node("lifecycle_test_io", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(io)
    try:
        pub_odom = io.create_publisher(Odometry, "/lc/odom", RELIABLE)
        pub_points = io.create_publisher(PointCloud2, "/lc/points", RELIABLE)
        status = []
        io.create_subscription(SlamStatus, f"{NODE}/status", status.append, RELIABLE)
        get_state = io.create_client(GetState, f"{NODE}/get_state")
        change = io.create_client(ChangeState, f"{NODE}/change_state")

        def call(client, request, timeout=240):
            spin_until(ex, client.service_is_ready, 60, f"{client.srv_name}")
            future = client.call_async(request)
            spin_until(ex, future.done, timeout, f"a response of {client.srv_name}")
            return future.result()

        def state():
            return call(get_state, GetState.Request()).current_state.id

        def transition(tid):
            assert proc.poll() is None, proc.stdout.read()
            return call(change, ChangeState.Request(transition=Transition(id=tid))).success

        def subscribed():
            return pub_odom.get_subscription_count() > 0 and pub_points.get_subscription_count() > 0

        assert state() == State.PRIMARY_STATE_UNCONFIGURED
        assert not subscribed() and io.count_publishers(f"{NODE}/status") == 0

        assert transition(Transition.TRANSITION_CONFIGURE)  # warm-up compile happens here
        assert state() == State.PRIMARY_STATE_INACTIVE
        spin_until(ex, lambda: io.count_publishers(f"{NODE}/status") > 0, 10, "the status publisher")
        ex.spin_once(timeout_sec=0.5)
        assert not subscribed()  # configured, not listening: inputs now would not be taken

        assert transition(Transition.TRANSITION_ACTIVATE)
        assert state() == State.PRIMARY_STATE_ACTIVE
        spin_until(ex, subscribed, 10, "the node's subscriptions after activate")
        for k in range(3):
            pub_odom.publish(odom_msg(2.0 * k, odom[k]))
            pub_points.publish(cloud_msg(2.0 * k, clouds[k]))
            spin_until(ex, lambda: len(status) > k, 60, f"status of keyframe {k}")
        assert status[-1].keyframes == 3 and status[-1].compilations_after_warmup == 0

        assert transition(Transition.TRANSITION_DEACTIVATE)
        assert state() == State.PRIMARY_STATE_INACTIVE
        spin_until(ex, lambda: not subscribed(), 10, "the subscriptions to go after deactivate")
        pub_odom.publish(odom_msg(6.0, odom[3]))
        pub_points.publish(cloud_msg(6.0, clouds[3]))
        for _ in range(20):
            ex.spin_once(timeout_sec=0.05)
        assert len(status) == 3  # nothing taken, nothing published while inactive

        assert transition(Transition.TRANSITION_ACTIVATE)  # the map was kept: keyframe 4 continues it
        spin_until(ex, subscribed, 10, "the subscriptions after re-activate")
        pub_odom.publish(odom_msg(8.0, odom[4]))
        pub_points.publish(cloud_msg(8.0, clouds[4]))
        spin_until(ex, lambda: len(status) > 3, 60, "status after re-activation")
        assert status[-1].keyframes == 4

        assert transition(Transition.TRANSITION_DEACTIVATE)
        assert transition(Transition.TRANSITION_CLEANUP)
        assert state() == State.PRIMARY_STATE_UNCONFIGURED
        spin_until(ex, lambda: io.count_publishers(f"{NODE}/status") == 0, 10, "the publishers to go after cleanup")
        assert transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
        log, _ = proc.communicate(timeout=60)  # shutdown ends the process by itself
    finally:
        if proc.poll() is None:
            proc.kill()
            log = proc.communicate()[0]
        io.destroy_node()
        rclpy.shutdown(context=ctx)
    assert proc.returncode == 0, log
    assert "configured (inactive): not subscribed yet" in log and "active: listening on /lc/odom" in log
