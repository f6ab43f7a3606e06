"""Write the synthetic demo bag: LiDAR clouds, drifting wheel odometry and ground truth.

Console entry point ``make_demo_bag [--out DIR] [--seed N] [--duration S] [--force]``.

``DIR`` (default ``out/demo_bag``) becomes a ROS 2 bag directory (MCAP storage by
default, ``metadata.yaml`` + ``<name>_0.mcap``) that also holds

- ``ground_truth.tum``: ``T_map_base`` at the ground-truth rate,
- ``odometry.tum``: ``T_odom_base`` as published on ``/odom``,

(bag readers ignore files the metadata does not list).  Topics, all stamped in
the header and in the bag with the same time (the LiDAR cloud at its scan time):

==================  ==========================  ======  =====================================
topic               type                        rate    frames
==================  ==========================  ======  =====================================
``/points``         sensor_msgs/PointCloud2     10 Hz   ``base_link``; x, y, z, intensity f32
``/odom``           nav_msgs/Odometry           50 Hz   ``odom`` -> ``base_link``
``/ground_truth``   nav_msgs/Odometry           50 Hz   ``map`` -> ``base_link``
==================  ==========================  ======  =====================================

The world, trajectory, LiDAR and odometry models are in ``demo_world``.  One
seed gives the same messages byte for byte.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from dsg_jit_ros.io.g2o import matrix_to_quat_xyzw
from dsg_jit_ros.io.tum import write_tum
from dsg_jit_ros.tools.demo_world import (
    LidarConfig,
    LoopTrajectory,
    OdometryNoise,
    World,
    default_world,
    lidar_directions,
    scan,
    simulate_odometry,
)

__all__ = [
    "TOPIC_GROUND_TRUTH",
    "TOPIC_ODOM",
    "TOPIC_POINTS",
    "DemoConfig",
    "DemoSummary",
    "generate_demo_bag",
    "main",
]

TOPIC_POINTS = "/points"
TOPIC_ODOM = "/odom"
TOPIC_GROUND_TRUTH = "/ground_truth"
TYPE_CLOUD = "sensor_msgs/msg/PointCloud2"
TYPE_ODOM = "nav_msgs/msg/Odometry"
FRAME_MAP, FRAME_ODOM, FRAME_BODY = "map", "odom", "base_link"
GROUND_TRUTH_TUM = "ground_truth.tum"
ODOMETRY_TUM = "odometry.tum"


@dataclass(frozen=True)
class DemoConfig:
    """What to synthesise.

    Attributes:
        seed: seed of the only random generator used.
        duration_s: length of the recording [s] (the loop takes ``trajectory.loop_period_s``).
        start_time_s: ROS time of the first message [s since the epoch]; integer
            nanoseconds are used for all stamps so that stamps are exact.
        odom_rate_hz: rate of ``/odom`` and ``/ground_truth``; must be a multiple
            of ``lidar.rate_hz`` (clouds coincide with odometry samples).
        storage: ``mcap`` or ``sqlite3``.
    """

    seed: int = 0
    duration_s: float = 60.0
    start_time_s: int = 1_700_000_000
    odom_rate_hz: float = 50.0
    storage: str = "mcap"
    lidar: LidarConfig = field(default_factory=LidarConfig)
    odom_noise: OdometryNoise = field(default_factory=OdometryNoise)
    trajectory: LoopTrajectory = field(default_factory=LoopTrajectory)


@dataclass(frozen=True)
class DemoSummary:
    """What was written (sizes in bytes, times in seconds, lengths in metres)."""

    bag_dir: str
    messages: dict[str, int]
    duration_s: float
    points_per_cloud: tuple[int, float, int]  # min, mean, max
    bag_bytes: int
    path_length_m: float
    odometry_ate_m: float
    generation_s: float

    def describe(self) -> str:
        """Multi-line human-readable summary."""
        lo, mean, hi = self.points_per_cloud
        msgs = ", ".join(f"{t} {n}" for t, n in self.messages.items())
        return (f"wrote {self.bag_dir} ({self.bag_bytes / 1e6:.1f} MB, {self.duration_s:.1f} s, {self.path_length_m:.1f} m path) "
                f"in {self.generation_s:.2f} s\n"
                f"  messages: {msgs}\n"
                f"  points per cloud: min {lo}, mean {mean:.0f}, max {hi}\n"
                f"  odometry ATE (SE(3)-aligned): {self.odometry_ate_m:.3f} m")


# Messages are built and serialised with rosbags' type store: its CDR is the
# same as rclpy's (both decode to the same messages) but with the alignment
# padding zeroed, where rclpy leaves it uninitialised, so a seed gives the
# same bytes.  It also needs no rclpy.
TYPESTORE = get_typestore(Stores.ROS2_KILTED)
_T = TYPESTORE.types


def _cdr(msg, msgtype: str) -> bytes:
    """CDR bytes padded with zeros to a multiple of 4, as DDS delivers a serialised
    message and rosbag2 records it (a replay then reaches subscribers byte for byte)."""
    data = bytes(TYPESTORE.serialize_cdr(msg, msgtype))
    return data + b"\0" * (-len(data) % 4)


def _stamp(ns: int):
    """builtin_interfaces/Time from integer nanoseconds (exact, unlike float seconds)."""
    return _T["builtin_interfaces/msg/Time"](sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def _odometry_msgs(stamps_ns: np.ndarray, frame: str, T: np.ndarray, linear: np.ndarray, angular: np.ndarray,
                   pose_var: float, twist_var: float) -> list[bytes]:
    """CDR nav_msgs/Odometry messages: pose ``T_frame_base`` (n, 4, 4) [m], body-frame twist (n, 3) [m/s, rad/s].

    Quaternions are computed for all poses at once (``qw >= 0``, as ``ros.convert.matrix_to_pose``).
    """
    Header, Odometry = _T["std_msgs/msg/Header"], _T["nav_msgs/msg/Odometry"]
    Pose, PoseCov = _T["geometry_msgs/msg/Pose"], _T["geometry_msgs/msg/PoseWithCovariance"]
    Twist, TwistCov = _T["geometry_msgs/msg/Twist"], _T["geometry_msgs/msg/TwistWithCovariance"]
    Point, Quaternion, Vector3 = _T["geometry_msgs/msg/Point"], _T["geometry_msgs/msg/Quaternion"], _T["geometry_msgs/msg/Vector3"]
    quats = matrix_to_quat_xyzw(T[:, :3, :3]).tolist()
    positions = T[:, :3, 3].tolist()
    lin, ang = np.asarray(linear, dtype=float).tolist(), np.asarray(angular, dtype=float).tolist()
    pose_cov = (np.eye(6) * pose_var).ravel()
    twist_cov = (np.eye(6) * twist_var).ravel()
    out = []
    for k, ns in enumerate(stamps_ns.tolist()):
        msg = Odometry(
            header=Header(stamp=_stamp(ns), frame_id=frame), child_frame_id=FRAME_BODY,
            pose=PoseCov(pose=Pose(position=Point(*positions[k]), orientation=Quaternion(*quats[k])), covariance=pose_cov),
            twist=TwistCov(twist=Twist(linear=Vector3(*lin[k]), angular=Vector3(*ang[k])), covariance=twist_cov))
        out.append(_cdr(msg, TYPE_ODOM))
    return out


_CLOUD_DTYPE = np.dtype({"names": ["x", "y", "z", "intensity"], "formats": ["<f4"] * 4, "offsets": [0, 4, 8, 12], "itemsize": 16})


def _cloud_msg(ns: int, points: np.ndarray, intensity: np.ndarray) -> bytes:
    """CDR of a dense little-endian PointCloud2 with float32 x, y, z, intensity (point_step 16)."""
    PointField = _T["sensor_msgs/msg/PointField"]
    rec = np.empty(len(points), dtype=_CLOUD_DTYPE)
    rec["x"], rec["y"], rec["z"] = points.T
    rec["intensity"] = intensity
    fields = [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
              for i, name in enumerate(_CLOUD_DTYPE.names)]
    msg = _T["sensor_msgs/msg/PointCloud2"](
        header=_T["std_msgs/msg/Header"](stamp=_stamp(ns), frame_id=FRAME_BODY), height=1, width=len(points),
        fields=fields, is_bigendian=False, point_step=16, row_step=16 * len(points),
        data=np.frombuffer(rec.tobytes(), dtype=np.uint8), is_dense=True)
    return _cdr(msg, TYPE_CLOUD)


def _prepare_out_dir(out: Path, force: bool) -> None:
    """Remove ``out`` if ``force`` and it looks like a bag directory (or is empty)."""
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        return
    if not force:
        raise FileExistsError(f"{out} exists (use --force to replace it)")
    if not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory; not removing it")
    if any(out.iterdir()) and not (out / "metadata.yaml").exists():
        raise FileExistsError(f"{out} is not empty and is not a bag directory (no metadata.yaml); not removing it")
    shutil.rmtree(out)


def generate_demo_bag(out_dir: str | os.PathLike[str], config: DemoConfig = DemoConfig(), force: bool = False,
                      world: World | None = None) -> DemoSummary:
    """Synthesise the demo recording into the bag directory ``out_dir``.

    Raises:
        FileExistsError: ``out_dir`` exists and ``force`` is false (or it is not a bag).
        ValueError: inconsistent rates or a non-positive duration.
    """
    from dsg_jit_ros.tools.evaluate import ate_rmse

    started = time.perf_counter()
    cfg = config
    if cfg.duration_s <= 0:
        raise ValueError(f"duration must be > 0 s, got {cfg.duration_s}")
    odom_period_ns = round(1e9 / cfg.odom_rate_hz)
    cloud_period_ns = round(1e9 / cfg.lidar.rate_hz)
    if cloud_period_ns % odom_period_ns:
        raise ValueError(f"odom rate {cfg.odom_rate_hz} Hz must be a multiple of the LiDAR rate {cfg.lidar.rate_hz} Hz")
    storages = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
    if cfg.storage not in storages:
        raise ValueError(f"storage must be one of {sorted(storages)}, got {cfg.storage!r}")
    out = Path(out_dir)
    _prepare_out_dir(out, force)

    rng = np.random.default_rng(cfg.seed)
    world = default_world() if world is None else world
    start_ns = int(cfg.start_time_s) * 1_000_000_000
    n_odom = int(np.floor(cfg.duration_s * 1e9 / odom_period_ns + 1e-9)) + 1
    t_rel = np.arange(n_odom) * (odom_period_ns * 1e-9)  # [s] since the start
    stamps_ns = start_ns + np.arange(n_odom, dtype=np.int64) * odom_period_ns
    T_gt = cfg.trajectory.poses(t_rel)
    v_gt, w_gt = cfg.trajectory.twists(t_rel)
    T_odom, v_odom, w_odom = simulate_odometry(T_gt, odom_period_ns * 1e-9, cfg.odom_noise, rng)
    every = cloud_period_ns // odom_period_ns
    dirs_body = lidar_directions(cfg.lidar)

    counts = {TOPIC_POINTS: 0, TOPIC_ODOM: 0, TOPIC_GROUND_TRUTH: 0}
    n_points: list[int] = []
    with Writer(out, version=Writer.VERSION_LATEST, storage_plugin=storages[cfg.storage]) as writer:
        conn_gt = writer.add_connection(TOPIC_GROUND_TRUTH, TYPE_ODOM, typestore=TYPESTORE)
        conn_odom = writer.add_connection(TOPIC_ODOM, TYPE_ODOM, typestore=TYPESTORE)
        conn_cloud = writer.add_connection(TOPIC_POINTS, TYPE_CLOUD, typestore=TYPESTORE)
        # time order; at equal stamps ground truth, then odometry, then the cloud
        gt_msgs = _odometry_msgs(stamps_ns, FRAME_MAP, T_gt, v_gt, w_gt, 0.0, 0.0)
        odom_msgs = _odometry_msgs(stamps_ns, FRAME_ODOM, T_odom, v_odom, w_odom, 1e-2, 1e-3)
        for k in range(n_odom):
            ns = int(stamps_ns[k])
            writer.write(conn_gt, ns, gt_msgs[k])
            writer.write(conn_odom, ns, odom_msgs[k])
            counts[TOPIC_GROUND_TRUTH] += 1
            counts[TOPIC_ODOM] += 1
            if k % every == 0:
                points, intensity = scan(world, T_gt[k], cfg.lidar, rng, dirs_body)
                writer.write(conn_cloud, ns, _cloud_msg(ns, points, intensity))
                counts[TOPIC_POINTS] += 1
                n_points.append(len(points))

    stamps_s = cfg.start_time_s + t_rel
    write_tum(out / GROUND_TRUTH_TUM, stamps_s, T_gt)
    write_tum(out / ODOMETRY_TUM, stamps_s, T_odom)
    ate = ate_rmse((stamps_s, T_gt), (stamps_s, T_odom), align="se3") if n_odom >= 3 else float("nan")
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    return DemoSummary(
        bag_dir=os.fspath(out), messages=counts, duration_s=float(t_rel[-1]),
        points_per_cloud=(int(min(n_points)), float(np.mean(n_points)), int(max(n_points))),
        bag_bytes=int(size), path_length_m=float(t_rel[-1] * cfg.trajectory.speed),
        odometry_ate_m=float(ate), generation_s=time.perf_counter() - started,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``make_demo_bag``: 0 on success, 2 on bad arguments or an existing output."""
    parser = argparse.ArgumentParser(
        prog="make_demo_bag",
        description="Synthesise a ROS 2 bag (MCAP) of a 3D LiDAR, drifting wheel odometry and ground truth "
                    "driving a loop through a courtyard, plus ground_truth.tum and odometry.tum in the bag directory.")
    parser.add_argument("--out", default="out/demo_bag", help="bag directory to create (default: out/demo_bag)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--duration", type=float, default=60.0, help="recording length in seconds; one loop takes 60 s (default: 60)")
    parser.add_argument("--force", action="store_true", help="replace an existing bag directory")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="bag storage (default: mcap)")
    parser.add_argument("--azimuth-steps", type=int, default=LidarConfig.azimuth_steps,
                        help=f"LiDAR rays per beam over 360 degrees (default: {LidarConfig.azimuth_steps})")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.azimuth_steps <= 0:
        parser.error("--duration and --azimuth-steps must be > 0")
    cfg = DemoConfig(seed=args.seed, duration_s=args.duration, storage=args.storage,
                     lidar=LidarConfig(azimuth_steps=args.azimuth_steps))
    try:
        summary = generate_demo_bag(args.out, cfg, force=args.force)
    except FileExistsError as exc:
        print(f"make_demo_bag: error: {exc}", file=sys.stderr)
        return 2
    print(summary.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
