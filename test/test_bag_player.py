"""The bag player: a subprocess replay received byte-identical, in order, on the
remapped topics with /clock and paced by --rate; the in-process API on a sqlite3
bag; error exits; the ROS-free schedule logic.

ROS environment (loopback discovery, per-run domain, temp log dir) comes from
conftest.py.  Matching is awaited with timeouts, never fixed sleeps.
"""

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import rclpy
from nav_msgs.msg import Odometry
from rclpy.executors import (
    ExternalShutdownException,
    ShutdownException,
    SingleThreadedExecutor,
)
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.rosbag2 import Reader, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import PointCloud2

from dsg_jit_ros.ros.bag_player import (
    BagPlayer,
    PlayerError,
    main,
    resolve_message_class,
    split_ros_args,
)
from dsg_jit_ros.ros.bag_schedule import (
    PlayerConfig,
    apply_remap,
    message_type_path,
    parse_remap,
    playback_start_ns,
    remap_table,
    select_topics,
    wall_offsets,
)
from dsg_jit_ros.tools.demo_world import LidarConfig
from dsg_jit_ros.tools.make_demo_bag import DemoConfig, generate_demo_bag

MATCH_TIMEOUT_S = 20.0
QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.RELIABLE)
# Fast DDS sends the heartbeat that makes a reliable reader acknowledge the tail
# of a burst every 3 s by default, so the player's final wait_for_all_acked takes
# up to 3 s; the subprocess gets a profile with a 50 ms period to keep the test fast.
FAST_HEARTBEAT_PROFILE = """<?xml version="1.0" encoding="UTF-8"?>
<dds xmlns="http://www.eprosima.com"><profiles>
  <data_writer profile_name="fast_heartbeat" is_default_profile="true">
    <times><heartbeat_period><sec>0</sec><nanosec>50000000</nanosec></heartbeat_period></times>
  </data_writer>
</profiles></dds>
"""


def bag_messages(path):
    """topic -> [(stamp ns, raw bytes)] in bag order."""
    out = {}
    with Reader(path) as reader:
        for conn, t, raw in reader.messages():
            out.setdefault(conn.topic, []).append((t, bytes(raw)))
    return out


def wait_until(predicate, timeout=MATCH_TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("player") / "bag"
    generate_demo_bag(path, DemoConfig(seed=1, duration_s=3.0, lidar=LidarConfig(azimuth_steps=60)))
    return path, bag_messages(path)


class Listener:
    """A node spun in a background thread that records raw messages per topic."""

    def __init__(self):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("bag_player_test_listener", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.received: dict[str, list] = {}
        self.arrival: dict[str, list] = {}
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self):
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except (ExternalShutdownException, ShutdownException):
                return

    def subscribe(self, topic, msg_type, raw=True):
        self.received[topic], self.arrival[topic] = [], []

        def callback(msg, topic=topic):
            self.received[topic].append(msg)
            self.arrival[topic].append(time.monotonic())

        self.node.create_subscription(msg_type, topic, callback, QOS, raw=raw)

    def close(self):
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
        self._thread.join(timeout=5.0)


@pytest.fixture
def listener():
    lst = Listener()
    yield lst
    lst.close()


def test_subprocess_replay_is_complete_ordered_byte_identical_and_paced(small_bag, listener, tmp_path):
    path, expected = small_bag
    for topic, msg_type in (("/odom2", Odometry), ("/odom", Odometry), ("/points", PointCloud2), ("/ground_truth", Odometry)):
        listener.subscribe(topic, msg_type)
    listener.subscribe("/clock", Clock, raw=False)
    rate = 5.0
    cmd = [sys.executable, "-m", "dsg_jit_ros.ros.bag_player", str(path), "--clock", "--rate", str(rate),
           "--remap", "/odom:=/odom2", "--wait-subscribers", "1", "--wait-topics", "/odom2", "/points", "/ground_truth", "/clock",
           "--wait-timeout", str(MATCH_TIMEOUT_S)]
    profile = tmp_path / "fastdds_heartbeat.xml"
    profile.write_text(FAST_HEARTBEAT_PROFILE)
    env = dict(os.environ, FASTDDS_DEFAULT_PROFILES_FILE=str(profile))
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "all acknowledged" in proc.stdout and "/odom2 151" in proc.stdout
    want = {"/odom2": expected["/odom"], "/points": expected["/points"], "/ground_truth": expected["/ground_truth"]}
    # every message was acknowledged before exit; callbacks may still be queued here
    assert wait_until(lambda: all(len(listener.received[t]) >= len(v) for t, v in want.items()), timeout=10.0)
    for topic, items in want.items():
        assert [bytes(m) for m in listener.received[topic]] == [raw for _, raw in items], topic
    assert listener.received["/odom"] == []  # remapped away
    stamps = sorted({t for items in expected.values() for t, _ in items})
    clock_ns = [m.clock.sec * 1_000_000_000 + m.clock.nanosec for m in listener.received["/clock"]]
    assert clock_ns == stamps  # one /clock per new bag time, in order
    bag_span = (expected["/odom"][-1][0] - expected["/odom"][0][0]) * 1e-9
    arrivals = listener.arrival["/odom2"]
    assert arrivals[-1] - arrivals[0] > 0.8 * bag_span / rate  # paced, not a burst
    assert arrivals[-1] - arrivals[0] < 3.0 * bag_span / rate + 1.0


def test_api_on_sqlite3_bag_with_topic_selection_offset_and_max_rate(tmp_path, listener):
    path = tmp_path / "sqlite_bag"
    generate_demo_bag(path, DemoConfig(seed=2, duration_s=1.0, storage="sqlite3", lidar=LidarConfig(azimuth_steps=30)))
    expected = bag_messages(path)
    listener.subscribe("/odom", Odometry)
    listener.subscribe("/points", PointCloud2)
    player_node = rclpy.create_node("bag_player_under_test", context=listener.context)
    try:
        cfg = PlayerConfig(rate=0.0, topics=("/odom",), start_offset_s=0.5, wait_subscribers=1, wait_timeout_s=MATCH_TIMEOUT_S)
        with BagPlayer(player_node, path, cfg) as player:
            assert player.published_topics == {"/odom": "/odom"}
            summary = player.play()
    finally:
        player_node.destroy_node()
    start = expected["/odom"][0][0] + 500_000_000
    want = [raw for t, raw in expected["/odom"] if t >= start]
    assert len(want) == 26 and summary.counts == {"/odom": 26} and summary.acked
    assert summary.bag_span_s == pytest.approx(0.5)
    assert wait_until(lambda: len(listener.received["/odom"]) >= len(want), timeout=10.0)
    assert [bytes(m) for m in listener.received["/odom"]] == want
    assert listener.received["/points"] == []  # not selected


@pytest.fixture(scope="module")
def bag_with_unknown_type(tmp_path_factory):
    """A bag with one message of a type no installed package provides, and one std_msgs/String."""
    path = tmp_path_factory.mktemp("unknown") / "bag"
    store = get_typestore(Stores.ROS2_KILTED)
    store.register(get_types_from_msg("int32 value", "dsg_absent_msgs/msg/Thing"))
    with Writer(path, version=Writer.VERSION_LATEST) as writer:
        thing = writer.add_connection("/thing", "dsg_absent_msgs/msg/Thing", typestore=store)
        chatter = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=store)
        writer.write(thing, 1_000, store.serialize_cdr(store.types["dsg_absent_msgs/msg/Thing"](value=3), "dsg_absent_msgs/msg/Thing"))
        writer.write(chatter, 2_000, store.serialize_cdr(store.types["std_msgs/msg/String"](data="hi"), "std_msgs/msg/String"))
    return path


def test_error_exits(tmp_path, small_bag, bag_with_unknown_type, capsys):
    path, _ = small_bag
    proc = subprocess.run([sys.executable, "-m", "dsg_jit_ros.ros.bag_player", str(tmp_path / "missing")],
                          check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "bag not found" in proc.stderr
    assert main([str(path), "--remap", "/odom=/odom2"]) == 2
    assert "must look like /from:=/to" in capsys.readouterr().err
    assert main([str(path), "--topics", "/odom", "/nope"]) == 2
    assert "/nope not in the bag" in capsys.readouterr().err
    assert main([str(path), "--rate", "-1"]) == 2
    assert "rate must be > 0" in capsys.readouterr().err
    assert main([str(path), "--clock", "--wait-subscribers", "1", "--wait-topics", "/elsewhere"]) == 2
    assert "/elsewhere" in capsys.readouterr().err
    assert main([str(tmp_path)]) == 2  # a directory that is not a bag
    assert "cannot open bag" in capsys.readouterr().err
    assert main([str(bag_with_unknown_type), "--rate", "0"]) == 2
    assert "dsg_absent_msgs/msg/Thing is not importable" in capsys.readouterr().err
    assert main([str(bag_with_unknown_type), "--rate", "0", "--topics", "/chatter"]) == 0
    assert "played 1 messages (/chatter 1)" in capsys.readouterr().out
    assert main([str(path), "--rate", "0", "--wait-subscribers", "1", "--wait-timeout", "0.2", "--topics", "/odom"]) == 1
    assert "waiting for 1 matched subscriber" in capsys.readouterr().err


def test_remap_parsing():
    assert parse_remap("/odom:=/odom2") == ("/odom", "/odom2")
    assert parse_remap("odom:=ns/odom") == ("/odom", "/ns/odom")
    assert parse_remap("/a/b_1:=/c") == ("/a/b_1", "/c")
    for bad in ["/odom", "/a:=/b:=/c", ":=/b", "/a:=", "/a b:=/c", "/1a:=/b", "/a//b:=/c", "/a/:=/b", "/a:=/b-c"]:
        with pytest.raises(ValueError):
            parse_remap(bad)
    table = remap_table([("/a", "/b"), ("/a", "/b"), ("/c", "/d")])
    assert table == {"/a": "/b", "/c": "/d"}
    assert apply_remap("/a", table) == "/b" and apply_remap("/b", table) == "/b"  # one step only
    with pytest.raises(ValueError, match="remapped twice"):
        remap_table([("/a", "/b"), ("/a", "/c")])
    with pytest.raises(ValueError):
        PlayerConfig(remaps=(("/a", "bad name"),))


def test_topic_selection_types_and_ros_args():
    available = {"/points": "sensor_msgs/msg/PointCloud2", "/odom": "nav_msgs/msg/Odometry", "/gt": "nav_msgs/msg/Odometry"}
    assert select_topics(available, []) == ["/points", "/odom", "/gt"]
    assert select_topics(available, ["/gt", "odom"]) == ["/odom", "/gt"]
    with pytest.raises(ValueError, match="/x not in the bag; it has: /gt, /odom, /points"):
        select_topics(available, ["/odom", "/x"])
    assert message_type_path("nav_msgs/msg/Odometry") == ("nav_msgs.msg", "Odometry")
    for bad in ["nav_msgs/Odometry", "nav_msgs/msg/", "nav msgs/msg/Odometry"]:
        with pytest.raises(ValueError):
            message_type_path(bad)
    assert resolve_message_class("sensor_msgs/msg/PointCloud2") is PointCloud2
    with pytest.raises(PlayerError, match="not importable"):
        resolve_message_class("dsg_absent_msgs/msg/Thing")
    with pytest.raises(PlayerError, match="has no Nothing"):
        resolve_message_class("nav_msgs/msg/Nothing")
    assert split_ros_args(["bag", "--remap", "/a:=/b", "--ros-args", "--log-level", "warn", "--", "--rate", "2"]) == (
        ["bag", "--remap", "/a:=/b", "--rate", "2"], ["--ros-args", "--log-level", "warn"])


def test_schedule():
    start = 1_700_000_000_000_000_001
    stamps = start + np.array([0, 1, 20_000_000, 1_000_000_000, 7_000_000_001])
    np.testing.assert_array_equal(wall_offsets(stamps, start, 1.0), [0.0, 1e-9, 0.02, 1.0, 7.000000001])
    np.testing.assert_allclose(wall_offsets(stamps, start, 4.0), [0.0, 0.25e-9, 0.005, 0.25, 1.75000000025], rtol=1e-15)
    np.testing.assert_array_equal(wall_offsets(stamps, start, 0.0), np.zeros(5))
    assert playback_start_ns(start, 1.5) == start + 1_500_000_000
    for bad in [{"rate": -1.0}, {"rate": float("nan")}, {"rate": float("inf")}, {"start_offset_s": -0.1},
                {"qos_depth": 0}, {"wait_subscribers": -1}, {"wait_timeout_s": -1.0}]:
        with pytest.raises(ValueError):
            PlayerConfig(**bad)
