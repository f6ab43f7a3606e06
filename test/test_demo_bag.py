"""The synthetic demo bag: topics, types, rates, frames; clouds on the world's
surfaces (checked with a distance-to-surface oracle written here, not the ray
caster); odometry drift; the loop closing; determinism; the CLI."""

from dataclasses import replace

import numpy as np
import pytest
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore
from transforms3d.quaternions import quat2mat

from dsg_jit_ros.io.tum import read_tum
from dsg_jit_ros.tools.demo_world import (
    LidarConfig,
    LoopTrajectory,
    OdometryNoise,
    default_world,
    raycast,
    simulate_odometry,
)
from dsg_jit_ros.tools.evaluate import ate_rmse
from dsg_jit_ros.tools.make_demo_bag import DemoConfig, generate_demo_bag, main

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
DURATION = 6.0
SIGMA = LidarConfig().range_noise


def read_bag(path):
    """topic -> (msgtype, [(bag stamp ns, raw bytes)]), read with rosbags only."""
    out = {}
    with Reader(path) as reader:
        for conn, t, raw in reader.messages():
            out.setdefault(conn.topic, (conn.msgtype, []))[1].append((t, raw))
    return out


def header_ns(msg):
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def pose_matrix(msg):
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    T = np.eye(4)
    T[:3, :3] = quat2mat([q.w, q.x, q.y, q.z])
    T[:3, 3] = [p.x, p.y, p.z]
    return T


def surface_distance(points, world):
    """Unsigned distance [m] from map-frame points (n, 3) to the nearest primitive
    surface: the ground plane, box surfaces (outside: Euclidean distance to the box;
    inside: to the nearest face), the outer walls as four 1 m thick boxes around the
    courtyard, and vertical cylinder surfaces (side and caps)."""
    (x0, y0), (x1, y1) = world.courtyard
    h = world.wall_height
    walls = [[[x0 - 1, y0 - 1, 0], [x1 + 1, y0, h]], [[x0 - 1, y1, 0], [x1 + 1, y1 + 1, h]],
             [[x0 - 1, y0, 0], [x0, y1, h]], [[x1, y0, 0], [x1 + 1, y1, h]]]
    d = [np.abs(points[:, 2] - world.ground_z)]
    for lo, hi in np.concatenate([np.asarray(walls, dtype=float), world.boxes]):
        below, above = lo - points, points - hi
        outside = np.linalg.norm(np.maximum(np.maximum(below, above), 0.0), axis=1)
        inside = np.min(np.minimum(-below, -above), axis=1)
        d.append(np.where(outside > 0, outside, inside))
    for cx, cy, r, z0, z1 in world.cylinders:
        radial = np.hypot(points[:, 0] - cx, points[:, 1] - cy) - r
        dz = np.maximum(np.maximum(z0 - points[:, 2], points[:, 2] - z1), 0.0)
        inside = (radial < 0) & (dz == 0)
        d.append(np.where(inside, np.minimum(-radial, np.minimum(points[:, 2] - z0, z1 - points[:, 2])),
                          np.hypot(np.maximum(radial, 0.0), dz)))
    return np.min(d, axis=0)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "bag"
    summary = generate_demo_bag(out, DemoConfig(seed=3, duration_s=DURATION))
    return out, summary, read_bag(out)


def test_topics_types_rates_and_frames(demo):
    out, summary, bag = demo
    assert {t: v[0] for t, v in bag.items()} == {
        "/points": "sensor_msgs/msg/PointCloud2", "/odom": "nav_msgs/msg/Odometry", "/ground_truth": "nav_msgs/msg/Odometry"}
    n_odom, n_cloud = int(DURATION * 50) + 1, int(DURATION * 10) + 1
    assert [len(bag[t][1]) for t in ("/odom", "/ground_truth", "/points")] == [n_odom, n_odom, n_cloud]
    assert summary.messages == {"/points": n_cloud, "/odom": n_odom, "/ground_truth": n_odom}
    for topic, period_ns in (("/odom", 20_000_000), ("/ground_truth", 20_000_000), ("/points", 100_000_000)):
        msgtype, items = bag[topic]
        stamps = np.array([t for t, _ in items])
        assert np.all(np.diff(stamps) == period_ns), topic  # exactly 50 Hz / 10 Hz
        msgs = [TYPESTORE.deserialize_cdr(raw, msgtype) for _, raw in items]
        assert [header_ns(m) for m in msgs] == stamps.tolist()  # header stamp == bag time
        frames = {(m.header.frame_id, getattr(m, "child_frame_id", None)) for m in msgs}
        assert frames == {"/points": {("base_link", None)}, "/odom": {("odom", "base_link")},
                          "/ground_truth": {("map", "base_link")}}[topic]
    first_odom = pose_matrix(TYPESTORE.deserialize_cdr(bag["/odom"][1][0][1], "nav_msgs/msg/Odometry"))
    np.testing.assert_allclose(first_odom, np.eye(4), atol=1e-12)
    # ground_truth.tum beside the bag holds the /ground_truth poses
    stamps, poses = read_tum(out / "ground_truth.tum")
    gt = [TYPESTORE.deserialize_cdr(raw, "nav_msgs/msg/Odometry") for _, raw in bag["/ground_truth"][1]]
    np.testing.assert_allclose(stamps, [header_ns(m) * 1e-9 for m in gt], atol=1e-6)
    np.testing.assert_allclose(poses, [pose_matrix(m) for m in gt], atol=1e-9)


def test_cloud_points_lie_on_the_world_surfaces(demo):
    _, summary, bag = demo
    world = default_world()
    gt = {t: pose_matrix(TYPESTORE.deserialize_cdr(raw, "nav_msgs/msg/Odometry")) for t, raw in bag["/ground_truth"][1]}
    dists, intensities, sizes = [], [], []
    for t, raw in bag["/points"][1]:
        msg = TYPESTORE.deserialize_cdr(raw, "sensor_msgs/msg/PointCloud2")
        assert [(f.name, f.offset, f.datatype) for f in msg.fields] == [("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("intensity", 12, 7)]
        assert (msg.height, msg.point_step, msg.row_step, msg.is_bigendian) == (1, 16, 16 * msg.width, False)
        rec = np.frombuffer(msg.data.tobytes(), dtype="<f4").reshape(-1, 4)
        body = rec[:, :3].astype(float)
        assert np.all(np.isfinite(body))
        r = np.linalg.norm(body, axis=1)
        assert r.min() >= LidarConfig().min_range - 5 * SIGMA and r.max() <= LidarConfig().max_range + 5 * SIGMA
        T = gt[t]
        dists.append(surface_distance(body @ T[:3, :3].T + T[:3, 3], world))
        intensities.append(rec[:, 3])
        sizes.append(len(rec))
    d = np.concatenate(dists)
    assert np.mean(d < 4 * SIGMA) > 0.999
    assert d.max() < 10 * SIGMA
    assert 0.2 * SIGMA < np.sqrt(np.mean(d**2)) <= 1.05 * SIGMA  # noise present, never more than the range noise
    assert set(np.unique(np.concatenate(intensities))) <= {15.0, 50.0, 70.0, 90.0}
    assert min(sizes) > 4000 and max(sizes) <= 16 * 360  # most rays return, no-returns dropped
    assert summary.points_per_cloud[0] == min(sizes)


def test_raycast_exact_hits():
    world = default_world()
    o = np.array([9.0, 0.0, 1.0])
    dirs = np.array([[1.0, 0, 0], [0, 0, -1.0], [-1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]])
    ranges, ids = raycast(world, o, dirs, 30.0)
    # +x: east wall x = 15; down: ground; -x: the crate at (0, 0), 4 x 2 x 1.5, face x = 2
    # (the crate at (5.5, -1.5) spans y in [-2, -1], off the line); up: nothing; +y: north wall y = 10
    np.testing.assert_allclose(ranges[[0, 1, 2, 4]], [6.0, 1.0, 7.0, 10.0], atol=1e-12)
    assert ids.tolist() == [1, 0, 2, -1, 1]
    assert ranges[3] == np.inf
    # over the wall: from (14, 0, 1) at 45 degrees up towards +x, z at the wall is 2 < 4; at 80 degrees it clears
    up = np.deg2rad([45.0, 80.0])
    r_wall, _ = raycast(world, np.array([14.0, 0.0, 1.0]), np.stack([np.cos(up), 0 * up, np.sin(up)], 1), 30.0)
    np.testing.assert_allclose(r_wall[0], np.sqrt(2.0), atol=1e-12)
    assert r_wall[1] == np.inf
    # pillar at (6, 2) radius 0.4 from (9, 2, 1) looking -x: side at x = 6.4; from above: top cap at z = 3.5
    r2, id2 = raycast(world, np.array([9.0, 2.0, 1.0]), np.array([[-1.0, 0, 0]]), 30.0)
    r3, id3 = raycast(world, np.array([6.1, 2.0, 5.0]), np.array([[0, 0, -1.0]]), 30.0)
    np.testing.assert_allclose([r2[0], r3[0]], [2.6, 1.5], atol=1e-12)
    assert id2[0] == id3[0] == 2 + len(world.boxes)
    # max range
    r4, id4 = raycast(world, o, np.array([[1.0, 0, 0]]), 5.0)
    assert r4[0] == np.inf and id4[0] == -1


def test_odometry_drift_present_but_bounded(demo):
    out, summary, _ = demo
    gt_t, gt = read_tum(out / "ground_truth.tum")
    od_t, od = read_tum(out / "odometry.tum")
    np.testing.assert_array_equal(gt_t, od_t)
    # odometry vs ground truth expressed in the odometry frame (T_odom_map = T_map_base(0)^-1)
    gt_in_odom = np.linalg.inv(gt[0]) @ gt
    err = np.linalg.norm(od[:, :3, 3] - gt_in_odom[:, :3, 3], axis=1)
    travelled = LoopTrajectory().speed * DURATION
    assert 0.005 < err[-1] < 0.1 * travelled
    assert 0.0 < summary.odometry_ate_m < 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_full_loop_closes_and_odometry_ate_is_one_to_three_metres(seed):
    traj = LoopTrajectory()
    t = np.arange(0, traj.loop_period_s + 1e-9, 0.02)
    T = traj.poses(t)
    np.testing.assert_allclose(T[-1], T[0], atol=1e-9)  # start == end
    step = np.linalg.norm(np.diff(T[:, :3, 3], axis=0), axis=1)
    np.testing.assert_allclose(step / 0.02, traj.speed, rtol=2e-3)  # constant speed (chord vs arc)
    assert 0.8 < traj.speed < 1.2
    heading = np.diff(T[:, :2, 3], axis=0)
    forward = T[:-1, :2, 0] + T[1:, :2, 0]
    cos = np.sum(heading * forward, axis=1) / np.linalg.norm(heading, axis=1) / np.linalg.norm(forward, axis=1)
    assert cos.min() > 0.9999  # yaw follows the direction of travel
    # the path keeps more than 1 m from every obstacle (walls included)
    world = default_world()
    probe = T[:, :3, 3].copy()
    probe[:, 2] = 0.75  # half-way up the lowest crate, above the ground
    assert surface_distance(probe, replace(world, ground_z=-100.0)).min() > 1.0
    T_odom, _, _ = simulate_odometry(T, 0.02, OdometryNoise(), np.random.default_rng(seed))
    assert 1.0 < ate_rmse((t, T), (t, T_odom), align="se3") < 3.0


def test_deterministic_per_seed(tmp_path):
    cfg = DemoConfig(seed=5, duration_s=0.5, lidar=LidarConfig(azimuth_steps=90))
    a = read_bag(generate_demo_bag(tmp_path / "a", cfg).bag_dir)
    b = read_bag(generate_demo_bag(tmp_path / "b", cfg).bag_dir)
    c = read_bag(generate_demo_bag(tmp_path / "c", DemoConfig(seed=6, duration_s=0.5, lidar=LidarConfig(azimuth_steps=90))).bag_dir)
    assert a == b
    assert a["/points"] != c["/points"] and a["/odom"] != c["/odom"]
    assert a["/ground_truth"] == c["/ground_truth"]  # the trajectory does not depend on the seed
    assert (tmp_path / "a" / "ground_truth.tum").read_bytes() == (tmp_path / "b" / "ground_truth.tum").read_bytes()


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli_bag"
    args = ["--out", str(out), "--duration", "0.3", "--azimuth-steps", "30", "--storage", "sqlite3"]
    assert main(args) == 0
    assert "odometry ATE" in capsys.readouterr().out
    assert read_bag(out)["/points"][1]  # readable sqlite3 bag
    assert main(args) == 2  # exists
    assert "--force" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0
    (tmp_path / "notabag").mkdir()
    (tmp_path / "notabag" / "precious.txt").write_text("x")
    assert main(["--out", str(tmp_path / "notabag"), "--duration", "0.3", "--force"]) == 2
    assert (tmp_path / "notabag" / "precious.txt").exists()
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
