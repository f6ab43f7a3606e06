"""``dsg_jit_ros_demo`` on inputs it cannot use, as a user runs it (a separate
process): a directory that is not a bag, a file, an unreadable metadata.yaml, a
bag without /odom and /points or without ground truth, a parameter the node
refuses.  Each ends with exit code 2 and one line on stderr (and the node's own
error log line when it refuses a parameter), no traceback; an empty directory is
filled with the demo bag."""

import subprocess
import sys

import pytest
from rosbags.rosbag2 import Writer
from rosbags.typesys import Stores, get_typestore


def _demo(tmp_path, bag, *extra, node_log=False):
    cmd = [sys.executable, "-m", "dsg_jit_ros.tools.demo", "--bag", str(bag), "--out", str(tmp_path / "out"), *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    if node_log:  # the node logs its configure error too (rclpy's console log, one line)
        assert len(lines) == 2 and lines[0].startswith("[ERROR]"), out.stderr
    else:
        assert len(lines) == 1, out.stderr
    assert lines[-1].startswith("dsg_jit_ros_demo: "), out.stderr
    assert node_log or not (tmp_path / "out").exists()  # a bag is checked before --out is made
    return lines[-1]


def _string_bag(path, topics):
    store = get_typestore(Stores.ROS2_KILTED)
    with Writer(path, version=Writer.VERSION_LATEST) as writer:
        for i, topic in enumerate(topics):
            conn = writer.add_connection(topic, "std_msgs/msg/String", typestore=store)
            writer.write(conn, 1_000 + i, store.serialize_cdr(store.types["std_msgs/msg/String"](data="x"),
                                                              "std_msgs/msg/String"))
    return path


def test_a_directory_that_is_not_a_bag(tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("not a bag")
    line = _demo(tmp_path, notes)
    assert f"{notes} is not a rosbag2 bag (no metadata.yaml in it)" in line
    assert [p.name for p in notes.iterdir()] == ["readme.txt"]  # left as it was


def test_a_file_and_an_unreadable_metadata_file(tmp_path):
    (tmp_path / "file.db3").write_text("x")
    assert "is a file, not a rosbag2 bag directory" in _demo(tmp_path, tmp_path / "file.db3")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.yaml").write_text("rosbag2_bagfile_information: [\n")
    assert f"{broken} is not a readable rosbag2 bag: " in _demo(tmp_path, broken)


def test_a_bag_without_the_topics_or_the_ground_truth(tmp_path):
    chatter = _string_bag(tmp_path / "chatter", ["/chatter"])
    line = _demo(tmp_path, chatter)
    assert "has no /odom and no /points messages" in line and "the bag has /chatter" in line
    no_truth = _string_bag(tmp_path / "no_truth", ["/odom", "/points"])
    assert "has no ground_truth.tum" in _demo(tmp_path, no_truth)


@pytest.fixture(scope="module")
def short_bag(tmp_path_factory):
    """An empty directory given as --bag: the demo bag (1 s) is written into it."""
    from dsg_jit_ros.tools.demo import _ensure_bag

    bag = tmp_path_factory.mktemp("empty")
    _ensure_bag(bag, 1.0)
    assert (bag / "metadata.yaml").is_file() and (bag / "ground_truth.tum").is_file()
    return bag


def test_a_parameter_the_node_refuses(tmp_path, short_bag):
    line = _demo(tmp_path, short_bag, "--ros-args", "-p", "window.sise:=3", node_log=True)
    assert line == ("dsg_jit_ros_demo: the SLAM node cannot start: unknown parameter 'window.sise' (from the "
                    "parameters file or -p); did you mean 'window.size'?")
