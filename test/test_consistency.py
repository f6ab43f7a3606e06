"""Map consistency and the laser-log reader.

Consistency oracles: scans of one straight wall (the same world points seen from
different poses) placed by the true poses coincide (distance 0); shifting the
later visit by 0.2 m across the wall makes every distance exactly 0.2 m (the
other wall points are farther); a shift beyond the cap leaves no overlap; scans
closer in time than ``min_dt`` never count.  The block/cell search is compared
point by point with a brute-force search over random scans, with tuning values
that force every path (whole blocks, k-nearest filtering, per-scan fallback).

Reader: the first 50 scans of the real MIT CSAIL bag against its stamps file
(stamps, points per scan), frames, z = 0; a synthetic demo bag (extra topic
ignored); missing topics and wrong frames named in the error.
"""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from conftest import SHARED
from dsg_jit_ros.tools.consistency import ConsistencyStats, map_consistency, plot_map, revisit_distances, world_points

REAL = SHARED / "data" / "real"
BAG = REAL / "mit-csail"
RNG = np.random.default_rng(3)


def pose(x, y, yaw):
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("z", yaw).as_matrix()
    T[:3, 3] = [x, y, 0.0]
    return T


WALL = np.column_stack([np.arange(-3.0, 3.0, 0.05), np.full(120, 2.0), np.zeros(120)])  # world frame, y = 2 m


def wall_scans(visits):
    """For each (stamp, T_world_body), the wall's points in that body frame."""
    stamps = np.array([t for t, _ in visits])
    poses = np.array([T for _, T in visits])
    clouds = [WALL @ T[:3, :3] + (-T[:3, :3].T @ T[:3, 3]) for T in poses]  # R^T (p - t)
    return clouds, stamps, poses


def shifted(poses, which, dy):
    out = poses.copy()
    out[which, 1, 3] += dy
    return out


def test_one_wall_seen_twice_exact_distances():
    visits = [(0.0, pose(0, 0, 0.1)), (1.0, pose(0.3, 0, 0.0)), (2.0, pose(0.6, 0.1, -0.1)),
              (40.0, pose(-1, -0.5, 2.0)), (41.0, pose(-1.2, -0.5, 1.9))]
    clouds, stamps, poses = wall_scans(visits)
    np.testing.assert_allclose(world_points(clouds, poses)[3], WALL, atol=1e-12)
    res = map_consistency(clouds, stamps, poses, max_points=None, local=True)
    n = len(WALL) * len(visits)
    for s in (res.revisit, res.local):
        assert (s.n_query, s.n_overlap, s.overlap_fraction) == (n, n, 1.0)
        assert s.median_m < 1e-12 and s.frac_within_5cm == 1.0 and s.frac_within_10cm == 1.0
    assert (res.revisit.min_dt_s, res.local.min_dt_s, res.local.max_dt_s) == (30.0, 1.0, 10.0)
    assert (res.n_scans, res.n_points) == (5, n)

    # the later visit 0.2 m off across the wall: every revisit distance is 0.2 m; each visit agrees with itself
    res = map_consistency(clouds, stamps, shifted(poses, [3, 4], 0.2), max_points=None, local=True)
    assert res.revisit.n_overlap == n
    assert res.revisit.median_m == pytest.approx(0.2, abs=1e-12) and res.revisit.mean_m == pytest.approx(0.2, abs=1e-12)
    assert res.revisit.frac_within_5cm == 0.0 and res.revisit.frac_within_10cm == 0.0
    assert res.local.median_m < 1e-12 and res.local.frac_within_5cm == 1.0
    _, scan, dist = revisit_distances(clouds, stamps, shifted(poses, [3, 4], 0.2), max_points=None)
    np.testing.assert_allclose(dist, 0.2, atol=1e-12)
    assert scan.tolist() == np.repeat(np.arange(5), len(WALL)).tolist()

    # 0.07 m: within 10 cm, not within 5 cm; beyond the cap: no overlap at all
    res = map_consistency(clouds, stamps, shifted(poses, [3, 4], 0.07), max_points=None)
    assert (res.revisit.frac_within_5cm, res.revisit.frac_within_10cm) == (0.0, 1.0)
    res = map_consistency(clouds, stamps, shifted(poses, [3, 4], 1.5), max_points=None)
    assert res.revisit.n_overlap == 0 and np.isnan(res.revisit.median_m) and res.revisit.frac_within_10cm == 0.0
    assert res.to_dict()["revisit"]["median_m"] is None and res.to_dict()["local"] is None
    assert map_consistency(clouds, stamps, shifted(poses, [3, 4], 1.5), max_points=None, cap=2.0).revisit.median_m == \
        pytest.approx(1.5, abs=1e-12)


def test_scans_closer_than_min_dt_do_not_count():
    clouds, stamps, poses = wall_scans([(0.0, pose(0, 0, 0)), (10.0, pose(1, 0, 0.5)), (29.0, pose(0, 1, 0))])
    res = map_consistency(clouds, stamps, poses, max_points=None, local=True)
    assert res.revisit.n_overlap == 0 and res.revisit.frac_within_5cm == 0.0
    # 1..10 s band: scan 0 and scan 1 see each other (|dt| = 10 s is inside), scan 2 sees nobody
    assert res.local.n_overlap == 2 * len(WALL) and res.local.overlap_fraction == pytest.approx(2 / 3)
    # 20 s: scans 0 and 2 (29 s apart) count, scan 1 (10 and 19 s from the others) does not
    assert map_consistency(clouds, stamps, poses, min_dt=20.0, max_points=None).revisit.n_overlap == 2 * len(WALL)
    assert map_consistency(clouds, stamps, poses, min_dt=19.0, max_points=None).revisit.n_overlap == 3 * len(WALL)


def brute_force(clouds, stamps, poses, lo, hi, cap, scans, points):
    world = world_points(clouds, poses)
    out = []
    for s, p in zip(scans, points):
        dt = np.abs(stamps - stamps[s])
        cand = [np.min(np.linalg.norm(world[j] - p, axis=1)) for j in range(len(stamps))
                if lo <= dt[j] <= hi and len(world[j])]
        d = min(cand, default=np.inf)
        out.append(d if d <= cap else np.inf)
    return np.array(out)


@pytest.mark.parametrize("block_scans, k_partial", [(1, 1), (4, 2), (7, 3), (64, 16)])
def test_search_equals_brute_force(block_scans, k_partial):
    """Random scans in a 6 x 6 m room, random times (one duplicate, one empty scan, one NaN
    point): every query distance equals the brute-force one, whatever the tuning."""
    n = 50
    stamps = RNG.permutation(np.r_[np.sort(RNG.uniform(0, 100, n - 1)), 0.0])
    stamps[7] = stamps[8]
    clouds = [RNG.uniform(-3, 3, (int(RNG.integers(5, 40)), 3)) * [1, 1, 0.1] for _ in range(n)]
    clouds[11] = np.zeros((0, 3))
    clouds[12][0, 1] = np.nan
    poses = np.array([pose(*RNG.uniform(-0.5, 0.5, 2), RNG.uniform(-np.pi, np.pi)) for _ in range(n)])
    n_inf = 0
    for lo, hi, cap in [(20.0, np.inf, 1.0), (2.0, 15.0, 0.5)]:
        pts, scan, dist = revisit_distances(clouds, stamps, poses, min_dt=lo, max_dt=hi, cap=cap, max_points=None,
                                            block_scans=block_scans, k_partial=k_partial)
        assert len(pts) == sum(len(c) for c in clouds) - 1
        expected = brute_force(clouds, stamps, poses, lo, hi, cap, scan, pts)
        assert np.sum(np.isfinite(expected)) > 0.5 * len(expected)
        n_inf += np.sum(np.isinf(expected))
        np.testing.assert_array_equal(np.isfinite(dist), np.isfinite(expected))
        np.testing.assert_allclose(dist[np.isfinite(dist)], expected[np.isfinite(expected)], rtol=0, atol=1e-12)
    assert n_inf > 0  # points without a neighbour within the cap exist
    res = map_consistency(clouds, stamps, poses, min_dt=20.0, max_points=None, block_scans=block_scans,
                          k_partial=k_partial, local=True, local_band=(2.0, 15.0))
    _, _, d = revisit_distances(clouds, stamps, poses, min_dt=2.0, max_dt=15.0, max_points=None)
    assert res.local == ConsistencyStats.of(d, 2.0, 15.0)


def test_subsampling_is_deterministic_and_counted():
    clouds = [RNG.uniform(-2, 2, (m, 3)) for m in (5, 30, 12, 40, 3)]
    stamps = np.arange(5) * 40.0
    poses = np.tile(np.eye(4), (5, 1, 1))
    pts, scan, _ = revisit_distances(clouds, stamps, poses, max_points=10, scan_step=2)
    assert scan.tolist() == [0] * 5 + [2] * 10 + [4] * 3
    np.testing.assert_array_equal(pts[5:15], clouds[2][[0, 1, 2, 4, 5, 6, 7, 9, 10, 11]])  # evenly spaced
    res = map_consistency(clouds, stamps, poses, max_points=10, scan_step=2)
    assert (res.revisit.n_query, res.n_points, res.scan_step, res.max_points) == (18, 90, 2, 10)
    with pytest.raises(ValueError, match="one stamp per scan"):
        map_consistency(clouds, stamps[:4], poses)
    with pytest.raises(ValueError, match="one .4, 4. pose per scan"):
        map_consistency(clouds, stamps, poses[:4])
    with pytest.raises(ValueError, match="min_dt > 0"):
        map_consistency(clouds, stamps, poses, min_dt=0.0)


def test_plot_map_writes_a_png(tmp_path):
    clouds, stamps, poses = wall_scans([(0.0, pose(0, 0, 0)), (40.0, pose(1, 0, 0.5))])
    for i, kwargs in enumerate([dict(stamps=stamps, title="wall"), dict(scan_step=2)]):
        path = tmp_path / f"map{i}.png"
        plot_map(path, clouds, poses, **kwargs)
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


@pytest.mark.skipif(not BAG.exists(), reason=f"{BAG} is not there")
def test_read_laser_log_first_50_scans_of_mit_csail():
    from dsg_jit_ros.tools.log_reader import read_laser_log
    from dsg_jit_ros.tools.relations import read_scan_stamps

    log = read_laser_log(BAG, max_scans=50)
    rows = np.genfromtxt(REAL / "mit-csail.scan_stamps.csv", delimiter=",", names=True)[:50]
    assert (len(log.clouds), len(log.cloud_stamps), len(log.odom_stamps)) == (50, 50, 50)
    assert (log.odom_frame, log.base_frame) == ("odom", "base_link")
    np.testing.assert_allclose(log.cloud_stamps, read_scan_stamps(REAL / "mit-csail.scan_stamps.csv")[1][:50], atol=1e-9)
    np.testing.assert_array_equal(log.odom_stamps, log.cloud_stamps)  # one odometry message per scan, same stamp
    assert [len(c) for c in log.clouds] == rows["n_points"].astype(int).tolist()
    assert all(c.dtype == np.float64 and c.shape[1] == 3 and np.all(c[:, 2] == 0.0) for c in log.clouds)
    assert max(np.max(np.linalg.norm(c[:, :2], axis=1)) for c in log.clouds) < 81.9  # max-range readings dropped
    assert np.all(log.odom_poses[:, 2, 3] == 0.0) and np.allclose(log.odom_poses[:, 2, 2], 1.0)
    # bag order: odometry, then the cloud of the same stamp
    assert log.order.tolist() == [[k, i] for i in range(50) for k in (0, 1)]
    kinds = [e[0] for e in log.events()]
    assert kinds == ["odom", "cloud"] * 50
    np.testing.assert_array_equal(log.odometry_at_clouds(), log.odom_poses)


def test_read_laser_log_synthetic_bag_and_errors(tmp_path):
    from dsg_jit_ros.tools.demo_world import LidarConfig
    from dsg_jit_ros.tools.log_reader import read_laser_log
    from dsg_jit_ros.tools.make_demo_bag import DemoConfig, generate_demo_bag

    summary = generate_demo_bag(tmp_path / "bag", DemoConfig(seed=4, duration_s=0.5, lidar=LidarConfig(azimuth_steps=30)))
    log = read_laser_log(tmp_path / "bag")
    assert len(log.odom_stamps) == summary.messages["/odom"] and len(log.clouds) == summary.messages["/points"]
    assert len(log.clouds) == 6 and len(log.odom_stamps) == 26  # 10 Hz clouds, 50 Hz odometry over 0.5 s
    lo, _, hi = summary.points_per_cloud
    assert all(lo <= len(c) <= hi for c in log.clouds)
    odom = log.odometry_at_clouds()
    np.testing.assert_array_equal(odom, log.odom_poses[::5])  # every 5th odometry message has a cloud
    with pytest.raises(ValueError, match="no odometry within"):
        type(log)(log.odom_stamps[:2], log.odom_poses[:2], log.cloud_stamps, log.clouds, log.order, "odom",
                  "base_link").odometry_at_clouds()
    with pytest.raises(ValueError, match=r"no topic /scan \(sensor_msgs/msg/PointCloud2\).*/ground_truth"):
        read_laser_log(tmp_path / "bag", points_topic="/scan")
    with pytest.raises(ValueError, match="topic /ground_truth has type nav_msgs/msg/Odometry, expected sensor_msgs"):
        read_laser_log(tmp_path / "bag", points_topic="/ground_truth")
    with pytest.raises(ValueError, match=r"/odom message 0 is 'odom' -> 'base_link', expected 'odom' -> 'base_footprint'"):
        read_laser_log(tmp_path / "bag", base_frame="base_footprint")
    with pytest.raises(ValueError, match=r"/ground_truth message 0 is 'map' -> 'base_link'"):
        read_laser_log(tmp_path / "bag", odom_topic="/ground_truth")
    with pytest.raises(FileNotFoundError):
        read_laser_log(tmp_path / "nothing")
    assert len(read_laser_log(tmp_path / "bag", max_scans=2).clouds) == 2
