"""Write a synthetic demo bag: range sensor clouds, drifting wheel odometry and ground truth.

Console entry point ``make_demo_bag [--world courtyard|office] [--out DIR] [--seed N]
[--duration S] [--force]``.  Two worlds:

- ``courtyard`` (default): a 16-beam 3D LiDAR driving a 60 s loop in a courtyard
  (``demo_world``);
- ``office``: a planar laser (361 beams over 180 degrees, like the real Radish logs)
  driving a 217 m loop with turns in place through the corridors and two rooms of an
  office floor, with people walking (``office_world``, ``planar_laser``).

``DIR`` (default ``out/demo_bag``, ``out/office_bag`` for the office) becomes a ROS 2
bag directory (MCAP storage by default, ``metadata.yaml`` + ``<name>_0.mcap``) that also holds

- ``ground_truth.tum``: ``T_map_base`` at the ground-truth rate,
- ``odometry.tum``: ``T_odom_base`` as published on ``/odom``,
- ``ground_truth.relations``: relative ground-truth poses between scan times
  (``t1 t2 x y z roll pitch yaw``, Kümmerle et al. 2009; pairs from ``relations_gen``,
  file from ``relations``),

(bag readers ignore files the metadata does not list).  Topics, all stamped in
the header and in the bag with the same time (the cloud at its scan time):

==================  ==========================  ======  =====================================
topic               type                        rate    frames
==================  ==========================  ======  =====================================
``/points``         sensor_msgs/PointCloud2     10 Hz   ``base_link``; x, y, z, intensity f32
``/odom``           nav_msgs/Odometry           50 Hz   ``odom`` -> ``base_link``
``/ground_truth``   nav_msgs/Odometry           50 Hz   ``map`` -> ``base_link``
==================  ==========================  ======  =====================================

One seed gives the same messages byte for byte.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
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
from dsg_jit_ros.tools.office_world import FloorPlan, OfficeRoute, office_floor_plan
from dsg_jit_ros.tools.planar_laser import (
    PlanarLaserConfig,
    WheelOdometryNoise,
    planar_scan,
    simulate_wheel_odometry,
    walking_people,
)
from dsg_jit_ros.tools.relations import relations_from_trajectory, write_relations
from dsg_jit_ros.tools.relations_gen import relation_pairs

__all__ = [
    "TOPIC_GROUND_TRUTH",
    "TOPIC_ODOM",
    "TOPIC_POINTS",
    "DemoConfig",
    "DemoSummary",
    "OfficeConfig",
    "generate_demo_bag",
    "generate_office_bag",
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
RELATIONS = "ground_truth.relations"


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
class OfficeConfig:
    """What to synthesise for the office world (see ``DemoConfig`` for the shared fields).

    Attributes:
        duration_s: length of the recording [s]; None: one loop of ``route`` (the robot
            stands still at the start/end after it).
        n_people: people walking, one per lane of the floor plan (at most that many lanes).
    """

    seed: int = 0
    duration_s: float | None = None
    start_time_s: int = 1_700_000_000
    odom_rate_hz: float = 50.0
    storage: str = "mcap"
    n_people: int = 4
    laser: PlanarLaserConfig = field(default_factory=PlanarLaserConfig)
    odom_noise: WheelOdometryNoise = field(default_factory=WheelOdometryNoise)
    route: OfficeRoute = field(default_factory=OfficeRoute)


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
    odometry_end_error_m: float = float("nan")  # |p_odom - p_gt| at the end, ground truth in the odom frame
    relations: tuple[int, int] = (0, 0)  # local, far pairs in ground_truth.relations

    def describe(self) -> str:
        """Multi-line human-readable summary."""
        lo, mean, hi = self.points_per_cloud
        msgs = ", ".join(f"{t} {n}" for t, n in self.messages.items())
        return (f"wrote {self.bag_dir} ({self.bag_bytes / 1e6:.1f} MB, {self.duration_s:.1f} s, {self.path_length_m:.1f} m path) "
                f"in {self.generation_s:.2f} s\n"
                f"  messages: {msgs}\n"
                f"  points per cloud: min {lo}, mean {mean:.0f}, max {hi}\n"
                f"  odometry ATE (SE(3)-aligned): {self.odometry_ate_m:.3f} m, end-point error {self.odometry_end_error_m:.3f} m\n"
                f"  relations: {self.relations[0]} local, {self.relations[1]} far ({RELATIONS})")


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


def _check(duration_s: float, odom_rate_hz: float, scan_rate_hz: float, storage: str) -> tuple[int, int, StoragePlugin]:
    """``(odometry period [ns], odometry samples per scan, storage plugin)``; ValueError on bad settings."""
    if duration_s <= 0:
        raise ValueError(f"duration must be > 0 s, got {duration_s}")
    odom_period_ns = round(1e9 / odom_rate_hz)
    cloud_period_ns = round(1e9 / scan_rate_hz)
    if cloud_period_ns % odom_period_ns:
        raise ValueError(f"odom rate {odom_rate_hz} Hz must be a multiple of the scan rate {scan_rate_hz} Hz")
    storages = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
    if storage not in storages:
        raise ValueError(f"storage must be one of {sorted(storages)}, got {storage!r}")
    return odom_period_ns, cloud_period_ns // odom_period_ns, storages[storage]


def _timeline(duration_s: float, start_time_s: int, odom_period_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """``(t_rel (n,) [s] since the start, stamps_ns (n,) int64 [ns since the epoch])`` of the odometry samples."""
    n_odom = int(np.floor(duration_s * 1e9 / odom_period_ns + 1e-9)) + 1
    t_rel = np.arange(n_odom) * (odom_period_ns * 1e-9)
    return t_rel, int(start_time_s) * 1_000_000_000 + np.arange(n_odom, dtype=np.int64) * odom_period_ns


def _write_recording(out: Path, storage: StoragePlugin, start_time_s: int, t_rel: np.ndarray, stamps_ns: np.ndarray,
                     gt: tuple[np.ndarray, np.ndarray, np.ndarray], odom: tuple[np.ndarray, np.ndarray, np.ndarray],
                     every: int, scan_at: Callable[[int], tuple[np.ndarray, np.ndarray]], seed: int,
                     path_length_m: float, started: float) -> DemoSummary:
    """Write the bag and its side files (``ground_truth.tum``, ``odometry.tum``, ``ground_truth.relations``).

    ``gt`` and ``odom`` are ``(T (n, 4, 4), linear (n, 3), angular (n, 3))`` at ``stamps_ns``
    (``T_map_base`` and ``T_odom_base``); ``scan_at(k)`` gives the cloud ``(points, intensity)``
    at sample ``k``, called for ``k = 0, every, 2 every, ...`` in this order.  The relations
    draw from their own generator (seeded by ``seed``), so they change no message.
    """
    from dsg_jit_ros.tools.evaluate import ate_rmse

    T_gt, T_odom = gt[0], odom[0]
    n_odom = len(stamps_ns)
    counts = {TOPIC_POINTS: 0, TOPIC_ODOM: 0, TOPIC_GROUND_TRUTH: 0}
    n_points: list[int] = []
    with Writer(out, version=Writer.VERSION_LATEST, storage_plugin=storage) as writer:
        conn_gt = writer.add_connection(TOPIC_GROUND_TRUTH, TYPE_ODOM, typestore=TYPESTORE)
        conn_odom = writer.add_connection(TOPIC_ODOM, TYPE_ODOM, typestore=TYPESTORE)
        conn_cloud = writer.add_connection(TOPIC_POINTS, TYPE_CLOUD, typestore=TYPESTORE)
        # time order; at equal stamps ground truth, then odometry, then the cloud
        gt_msgs = _odometry_msgs(stamps_ns, FRAME_MAP, *gt, 0.0, 0.0)
        odom_msgs = _odometry_msgs(stamps_ns, FRAME_ODOM, *odom, 1e-2, 1e-3)
        for k in range(n_odom):
            ns = int(stamps_ns[k])
            writer.write(conn_gt, ns, gt_msgs[k])
            writer.write(conn_odom, ns, odom_msgs[k])
            counts[TOPIC_GROUND_TRUTH] += 1
            counts[TOPIC_ODOM] += 1
            if k % every == 0:
                points, intensity = scan_at(k)
                writer.write(conn_cloud, ns, _cloud_msg(ns, points, intensity))
                counts[TOPIC_POINTS] += 1
                n_points.append(len(points))

    stamps_s = start_time_s + t_rel
    write_tum(out / GROUND_TRUTH_TUM, stamps_s, T_gt)
    write_tum(out / ODOMETRY_TUM, stamps_s, T_odom)
    scans = np.arange(0, n_odom, every)
    local, far = relation_pairs(t_rel[scans], T_gt[scans], np.random.default_rng([int(seed), 0x5E1]))
    pairs = np.concatenate([local, far])
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]  # by t1, then t2
    # times as in ground_truth.tum: within half a float64 ulp (~0.12 us at 1.7e9 s) of the bag stamps
    write_relations(out / RELATIONS, relations_from_trajectory(stamps_s[scans], T_gt[scans], pairs))
    try:
        ate = ate_rmse((stamps_s, T_gt), (stamps_s, T_odom), align="se3") if n_odom >= 3 else float("nan")
    except Exception:  # noqa: BLE001 - the alignment is undefined for a ground truth at rest or on a line
        ate = float("nan")
    gt_in_odom = np.linalg.inv(T_gt[0]) @ T_gt[-1]  # T_odom_map = T_map_base(0)^-1
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    return DemoSummary(
        bag_dir=os.fspath(out), messages=counts, duration_s=float(t_rel[-1]),
        points_per_cloud=(int(min(n_points)), float(np.mean(n_points)), int(max(n_points))),
        bag_bytes=int(size), path_length_m=float(path_length_m), odometry_ate_m=float(ate),
        generation_s=time.perf_counter() - started,
        odometry_end_error_m=float(np.linalg.norm(T_odom[-1, :3, 3] - gt_in_odom[:3, 3])),
        relations=(len(local), len(far)),
    )


def generate_demo_bag(out_dir: str | os.PathLike[str], config: DemoConfig = DemoConfig(), force: bool = False,
                      world: World | None = None) -> DemoSummary:
    """Synthesise the courtyard recording (3D LiDAR) into the bag directory ``out_dir``.

    Raises:
        FileExistsError: ``out_dir`` exists and ``force`` is false (or it is not a bag).
        ValueError: inconsistent rates or a non-positive duration.
    """
    started = time.perf_counter()
    cfg = config
    odom_period_ns, every, storage = _check(cfg.duration_s, cfg.odom_rate_hz, cfg.lidar.rate_hz, cfg.storage)
    out = Path(out_dir)
    _prepare_out_dir(out, force)

    rng = np.random.default_rng(cfg.seed)
    world = default_world() if world is None else world
    t_rel, stamps_ns = _timeline(cfg.duration_s, cfg.start_time_s, odom_period_ns)
    T_gt = cfg.trajectory.poses(t_rel)
    v_gt, w_gt = cfg.trajectory.twists(t_rel)
    odom = simulate_odometry(T_gt, odom_period_ns * 1e-9, cfg.odom_noise, rng)
    dirs_body = lidar_directions(cfg.lidar)
    return _write_recording(out, storage, cfg.start_time_s, t_rel, stamps_ns, (T_gt, v_gt, w_gt), odom, every,
                            lambda k: scan(world, T_gt[k], cfg.lidar, rng, dirs_body), cfg.seed,
                            t_rel[-1] * cfg.trajectory.speed, started)


def generate_office_bag(out_dir: str | os.PathLike[str], config: OfficeConfig = OfficeConfig(), force: bool = False,
                        plan: FloorPlan | None = None) -> DemoSummary:
    """Synthesise the office recording (planar laser, people, turn-drifting odometry) into ``out_dir``.

    Raises:
        FileExistsError: ``out_dir`` exists and ``force`` is false (or it is not a bag).
        ValueError: inconsistent rates or a non-positive duration.
    """
    started = time.perf_counter()
    cfg = config
    duration = cfg.route.duration if cfg.duration_s is None else cfg.duration_s
    odom_period_ns, every, storage = _check(duration, cfg.odom_rate_hz, cfg.laser.rate_hz, cfg.storage)
    out = Path(out_dir)
    _prepare_out_dir(out, force)

    rng = np.random.default_rng(cfg.seed)
    plan = office_floor_plan() if plan is None else plan
    people = walking_people(plan.person_lanes[:max(cfg.n_people, 0)], cfg.seed)
    t_rel, stamps_ns = _timeline(duration, cfg.start_time_s, odom_period_ns)
    T_gt = cfg.route.poses(t_rel)
    v_gt, w_gt = cfg.route.twists(t_rel)
    odom = simulate_wheel_odometry(T_gt, odom_period_ns * 1e-9, cfg.odom_noise, rng)
    length = np.sum(np.linalg.norm(np.diff(T_gt[:, :2, 3], axis=0), axis=1))
    return _write_recording(out, storage, cfg.start_time_s, t_rel, stamps_ns, (T_gt, v_gt, w_gt), odom, every,
                            lambda k: planar_scan(plan, T_gt[k], cfg.laser, rng, people.circles(t_rel[k])), cfg.seed,
                            length, started)


def main(argv: Sequence[str] | None = None) -> int:
    """``make_demo_bag``: 0 on success, 2 on bad arguments or an existing output."""
    parser = argparse.ArgumentParser(
        prog="make_demo_bag",
        description="Synthesise a ROS 2 bag (MCAP) of a range sensor, drifting wheel odometry and ground truth, "
                    "plus ground_truth.tum, odometry.tum and ground_truth.relations in the bag directory: a 3D LiDAR "
                    "driving a loop through a courtyard (--world courtyard) or a planar laser driving a loop "
                    "through an office floor (--world office).")
    parser.add_argument("--world", choices=("courtyard", "office"), default="courtyard", help="what to simulate (default: courtyard)")
    parser.add_argument("--out", default=None, help="bag directory to create (default: out/demo_bag, out/office_bag for the office)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--duration", type=float, default=None,
                        help="recording length in seconds (default: one loop; 60 s for the courtyard, "
                             f"{OfficeRoute().duration:.0f} s for the office)")
    parser.add_argument("--force", action="store_true", help="replace an existing bag directory")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="bag storage (default: mcap)")
    parser.add_argument("--azimuth-steps", type=int, default=None,
                        help=f"courtyard: LiDAR rays per beam over 360 degrees (default: {LidarConfig.azimuth_steps})")
    parser.add_argument("--people", type=int, default=None,
                        help=f"office: people walking, 0 to {len(office_floor_plan().person_lanes)} (default: {OfficeConfig.n_people})")
    args = parser.parse_args(argv)
    if (args.duration is not None and args.duration <= 0) or (args.azimuth_steps is not None and args.azimuth_steps <= 0):
        parser.error("--duration and --azimuth-steps must be > 0")
    if args.world == "office":
        if args.azimuth_steps is not None:
            parser.error("--azimuth-steps applies to --world courtyard only")
        if args.people is not None and args.people < 0:
            parser.error("--people must be >= 0")
        out = args.out or "out/office_bag"
        cfg = OfficeConfig(seed=args.seed, duration_s=args.duration, storage=args.storage,
                           n_people=OfficeConfig.n_people if args.people is None else args.people)
        generate = generate_office_bag
    else:
        if args.people is not None:
            parser.error("--people applies to --world office only")
        out = args.out or "out/demo_bag"
        cfg = DemoConfig(seed=args.seed, duration_s=60.0 if args.duration is None else args.duration, storage=args.storage,
                         lidar=LidarConfig(azimuth_steps=args.azimuth_steps or LidarConfig.azimuth_steps))
        generate = generate_demo_bag
    try:
        summary = generate(out, cfg, force=args.force)
    except FileExistsError as exc:
        print(f"make_demo_bag: error: {exc}", file=sys.stderr)
        return 2
    print(summary.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
