"""Read a laser + odometry bag (the real planar logs, or a ``make_demo_bag`` bag) into arrays.

The bag is read with ``rosbags`` (``AnyReader``), every message is deserialised by
rclpy and converted by ``dsg_jit_ros.ros.convert``, i.e. exactly as the SLAM node
sees it.  Two topics are read, all others ignored:

- odometry (``/odom``, ``nav_msgs/Odometry``): header stamp [s] and
  ``T_odom_base`` (4x4, metres), frames ``odom`` -> ``base_link``;
- clouds (``/points``, ``sensor_msgs/PointCloud2``): header stamp [s] and the
  (N, 3) x/y/z points in ``base_link`` [m] as float64 (non-finite points kept,
  as ``pointcloud2_to_xyz`` returns them).

The frames are checked on every message, so a bag recorded with other frame names
fails with a message naming what was found rather than mapping in the wrong frame.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["LaserLog", "read_laser_log"]

ODOM_TYPE = "nav_msgs/msg/Odometry"
CLOUD_TYPE = "sensor_msgs/msg/PointCloud2"


@dataclass(frozen=True)
class LaserLog:
    """Odometry and clouds of a bag, each in bag order.

    Attributes:
        odom_stamps: (n,) odometry header stamps [s].
        odom_poses: (n, 4, 4) ``T_odom_base`` at those stamps [m].
        cloud_stamps: (m,) cloud header stamps [s].
        clouds: m arrays (N_i, 3) float64, points in ``base_link`` [m].
        order: (n + m, 2) int array, the messages in bag order as (kind, index),
            kind 0 = odometry (index into ``odom_*``), 1 = cloud (index into ``cloud_*``).
        odom_frame, base_frame: the frame names found (and checked).
    """

    odom_stamps: np.ndarray
    odom_poses: np.ndarray
    cloud_stamps: np.ndarray
    clouds: tuple[np.ndarray, ...]
    order: np.ndarray
    odom_frame: str
    base_frame: str

    def events(self) -> Iterator[tuple[str, float, np.ndarray]]:
        """``("odom", stamp s, T_odom_base)`` and ``("cloud", stamp s, (N, 3) points)`` in bag order,
        i.e. what a node subscribed to both topics receives when the bag is replayed."""
        for kind, i in self.order:
            if kind == 0:
                yield "odom", float(self.odom_stamps[i]), self.odom_poses[i]
            else:
                yield "cloud", float(self.cloud_stamps[i]), self.clouds[i]

    def replay(self, pipeline) -> None:
        """Feed every message, in bag order, to a ``SlamPipeline`` (as the node would,
        solving each keyframe as soon as it is ready)."""
        for kind, stamp, value in self.events():
            if kind == "odom":
                pipeline.add_odometry(stamp, value)
            else:
                pipeline.add_cloud(stamp, value)

    def odometry_at_clouds(self, max_dt: float = 1e-6) -> np.ndarray:
        """(m, 4, 4) ``T_odom_base`` of the odometry message nearest in time to each cloud.

        On the real logs and the demo bags every cloud has an odometry message with the
        same stamp, so the default tolerance only allows rounding of the stamps.

        Raises:
            ValueError: a cloud with no odometry stamp within ``max_dt`` seconds.
        """
        t = self.odom_stamps
        order = np.argsort(t, kind="stable")
        ts = t[order]
        if len(ts) == 0:
            raise ValueError("no odometry messages")
        k = np.searchsorted(ts, self.cloud_stamps)
        lo = np.clip(k - 1, 0, len(ts) - 1)
        hi = np.clip(k, 0, len(ts) - 1)
        nearest = np.where(np.abs(ts[lo] - self.cloud_stamps) <= np.abs(ts[hi] - self.cloud_stamps), lo, hi)
        gap = np.abs(ts[nearest] - self.cloud_stamps)
        if np.any(gap > max_dt):
            j = int(np.argmax(gap))
            raise ValueError(f"cloud {j} at {self.cloud_stamps[j]:.6f} s has no odometry within {max_dt} s "
                             f"(nearest {gap[j]:.6f} s away)")
        return self.odom_poses[order[nearest]]


def read_laser_log(bag_dir: str | os.PathLike[str], max_scans: int | None = None, odom_topic: str = "/odom",
                   points_topic: str = "/points", odom_frame: str = "odom", base_frame: str = "base_link") -> LaserLog:
    """Read odometry and clouds from the ROS 2 bag directory ``bag_dir`` (see the module docstring).

    Args:
        max_scans: stop right after this many clouds (the odometry read so far is kept).
        odom_topic, points_topic: topic names; other topics are ignored.
        odom_frame, base_frame: expected odometry parent and child frames; clouds
            must be in ``base_frame``.

    Raises:
        FileNotFoundError: no such bag directory.
        ValueError: a topic missing or of another type, or a message in other frames.
    """
    from nav_msgs.msg import Odometry
    from rclpy.serialization import deserialize_message
    from rosbags.highlevel import AnyReader
    from sensor_msgs.msg import PointCloud2

    from dsg_jit_ros.ros import convert

    bag = Path(bag_dir)
    if not bag.exists():
        raise FileNotFoundError(f"no bag at {bag}")
    wanted = {odom_topic: (ODOM_TYPE, Odometry), points_topic: (CLOUD_TYPE, PointCloud2)}
    odom_t: list[float] = []
    odom_T: list[np.ndarray] = []
    cloud_t: list[float] = []
    clouds: list[np.ndarray] = []
    order: list[tuple[int, int]] = []
    with AnyReader([bag]) as reader:
        found = {c.topic: c.msgtype for c in reader.connections}
        for topic, (msgtype, _) in wanted.items():
            if topic not in found:
                listing = ", ".join(f"{t} ({m})" for t, m in sorted(found.items())) or "none"
                raise ValueError(f"{bag}: no topic {topic} ({msgtype}) in the bag; its topics: {listing}")
            if found[topic] != msgtype:
                raise ValueError(f"{bag}: topic {topic} has type {found[topic]}, expected {msgtype}")
        conns = [c for c in reader.connections if c.topic in wanted]
        if max_scans is not None and max_scans <= 0:
            conns = []
        for conn, _, raw in reader.messages(connections=conns):
            msg = deserialize_message(bytes(raw), wanted[conn.topic][1])
            if conn.topic == odom_topic:
                frames = (msg.header.frame_id, msg.child_frame_id)
                if frames != (odom_frame, base_frame):
                    raise ValueError(f"{bag}: {odom_topic} message {len(odom_t)} is {frames[0]!r} -> {frames[1]!r}, "
                                     f"expected {odom_frame!r} -> {base_frame!r}")
                stamp, pose = convert.odometry_to_matrix(msg)
                order.append((0, len(odom_t)))
                odom_t.append(stamp)
                odom_T.append(pose)
            else:
                if msg.header.frame_id != base_frame:
                    raise ValueError(f"{bag}: {points_topic} message {len(cloud_t)} is in frame "
                                     f"{msg.header.frame_id!r}, expected {base_frame!r}")
                order.append((1, len(cloud_t)))
                cloud_t.append(convert.stamp_to_sec(msg.header.stamp))
                clouds.append(convert.pointcloud2_to_xyz(msg).astype(np.float64))
                if max_scans is not None and len(clouds) >= max_scans:
                    break
    return LaserLog(
        odom_stamps=np.asarray(odom_t, dtype=np.float64),
        odom_poses=np.asarray(odom_T, dtype=np.float64).reshape(-1, 4, 4),
        cloud_stamps=np.asarray(cloud_t, dtype=np.float64),
        clouds=tuple(clouds),
        order=np.asarray(order, dtype=np.int64).reshape(-1, 2),
        odom_frame=odom_frame,
        base_frame=base_frame,
    )
