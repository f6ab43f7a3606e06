"""config/fastdds_large_messages.xml: 1.2 MB clouds (100k points) published with
sensor-data (best-effort) QoS by another process all arrive when both processes
use the profile (Fast DDS's default 0.5 MB shared-memory segment loses them)."""

import os
import subprocess
import sys
import time

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import PointCloud2

from conftest import REPO

PUBLISHER = """
import time, numpy as np, rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import PointCloud2
from dsg_jit_ros.ros import convert
rclpy.init()
node = rclpy.create_node("large_cloud_publisher")
pub = node.create_publisher(PointCloud2, "/large_cloud", qos_profile_sensor_data)
pts = np.random.default_rng(0).normal(size=(100000, 3)).astype(np.float32)
deadline = time.monotonic() + 30
while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
    time.sleep(0.02)
time.sleep(0.5)  # the subscriber's side of the match
for k in range(20):
    pub.publish(convert.xyz_to_pointcloud2(pts, "base_link", convert.sec_to_stamp(k)))
    time.sleep(0.1)
time.sleep(1.0)
"""


def test_large_clouds_arrive_best_effort_with_the_profile(monkeypatch):
    monkeypatch.setenv("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_large_messages.xml"))
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("large_cloud_subscriber", context=ctx)
    got = []
    node.create_subscription(PointCloud2, "/large_cloud", got.append, qos_profile_sensor_data)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER], env=dict(os.environ))
    try:
        deadline = time.monotonic() + 90
        while proc.poll() is None and time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.05)
        for _ in range(20):
            ex.spin_once(timeout_sec=0.05)
    finally:
        proc.kill()
        ex.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)
    assert proc.returncode in (0, -9)
    assert len(got) == 20 and got[-1].width == 100000
