"""Helpers for the node tests: message builders, spinning until a condition, the
parameters of a small fast window (the same capacities as test_pipeline, so one
process compiles the solver once)."""

from __future__ import annotations

import time

import numpy as np
from nav_msgs.msg import Odometry
from std_msgs.msg import Header

from dsg_jit_ros.ros import convert

SMALL_WINDOW = {
    "window.size": 5,
    "voxel.size": 1.0,
    "voxel.max_range": 12.0,
    "window.max_voxels": 600,
    "window.max_observations": 3000,
    "input_reliability": "reliable",
    "output.markers_period": 0.0,
    "inputs.max_linear_speed": 5.0,
    "inputs.max_angular_speed": 3.0,
}


def odom_msg(stamp: float, t_odom_body: np.ndarray, frame="odom", child="base_link") -> Odometry:
    msg = Odometry(header=Header(frame_id=frame, stamp=convert.sec_to_stamp(stamp)), child_frame_id=child)
    msg.pose.pose = convert.matrix_to_pose(t_odom_body)
    msg.twist.twist.linear.x = 1.25
    return msg


def cloud_msg(stamp: float, points: np.ndarray, frame="base_link"):
    return convert.xyz_to_pointcloud2(points, frame, convert.sec_to_stamp(stamp))


def spin_until(executor, condition, timeout: float, what: str) -> None:
    """Spin ``executor`` until ``condition()`` holds; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        executor.spin_once(timeout_sec=0.05)
