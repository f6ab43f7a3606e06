"""The synthetic office world: planar ray casting against closed-form distances, dropouts,
glass, people, the route (closed, long, turns in place, clear of the walls), the wheel
odometry error model, the ground-truth relations and the bag written by
``make_demo_bag --world office`` (read back with rosbags' AnyReader)."""

from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from dsg_jit_ros.io.tum import read_tum
from dsg_jit_ros.tools.evaluate import ate_rmse
from dsg_jit_ros.tools.make_demo_bag import DemoConfig, OfficeConfig, generate_demo_bag, generate_office_bag, main
from dsg_jit_ros.tools.office_world import GLASS, WALL, FloorPlan, OfficeRoute, office_floor_plan
from dsg_jit_ros.tools.planar_laser import (
    PlanarLaserConfig,
    WheelOdometryNoise,
    planar_scan,
    raycast_2d,
    simulate_wheel_odometry,
    walking_people,
)
from dsg_jit_ros.tools.relations import read_relations
from dsg_jit_ros.tools.relations_gen import relation_pairs

DURATION = 90.0  # covers the visit of office R2 (in at ~20 s, out at ~85 s): far relations exist
EXACT = PlanarLaserConfig(range_noise=0.0, dropout=0.0)


def pose(x, y, yaw):
    T = np.eye(4)
    T[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
    T[:2, 3] = x, y
    return T


def plan_of(segments, kinds=None):
    segments = np.asarray(segments, dtype=float)
    kinds = np.zeros(len(segments), dtype=int) if kinds is None else np.asarray(kinds)
    return FloorPlan(segments=segments, kinds=kinds, person_lanes=np.zeros((0, 2, 2)), rooms={})


def box_plan(half=5.0):
    """A closed square room |x|, |y| <= half [m]: every beam hits a wall."""
    h = half
    return plan_of([[[-h, -h], [h, -h]], [[h, -h], [h, h]], [[h, h], [-h, h]], [[-h, h], [-h, -h]]])


def segment_distance(points, segments):
    """(n,) distance [m] from points (n, 2) to the nearest segment (m, 2, 2)."""
    a, e = segments[:, 0], segments[:, 1] - segments[:, 0]
    u = np.clip(np.einsum("nmk,mk->nm", points[:, None] - a, e) / np.sum(e * e, axis=1), 0.0, 1.0)
    return np.linalg.norm(points[:, None] - (a + u[..., None] * e), axis=2).min(axis=1)


def yaw_of(T):
    return np.arctan2(T[..., 1, 0], T[..., 0, 0])


def wrap(a):
    return (a + np.pi) % (2 * np.pi) - np.pi


def read_bag(path):
    """topic -> (msgtype, [(bag stamp ns, message)])."""
    out = {}
    with AnyReader([Path(path)]) as reader:
        for conn, t, raw in reader.messages():
            out.setdefault(conn.topic, (conn.msgtype, []))[1].append((t, reader.deserialize(raw, conn.msgtype)))
    return out


def cloud_array(msg):
    return np.frombuffer(msg.data.tobytes(), dtype="<f4").reshape(-1, 4)


@pytest.fixture(scope="module")
def office(tmp_path_factory):
    out = tmp_path_factory.mktemp("office") / "bag"
    summary = generate_office_bag(out, OfficeConfig(seed=1, duration_s=DURATION))
    return out, summary, read_bag(out)


@pytest.fixture(scope="module")
def route_samples():
    route = OfficeRoute()
    t = np.arange(0.0, route.duration + 1e-9, 0.02)
    return route, t, route.poses(t)


# ---------------------------------------------------------------- laser model


def test_raycast_matches_closed_form_distances():
    wall = plan_of([[[5.0, -100.0], [5.0, 100.0]], [[-2.0, 1.0], [-2.0, 2.0]]])
    o = np.array([1.0, 0.5])
    ang = np.deg2rad(np.arange(-80.0, 80.5, 0.5))
    dirs = np.stack([np.cos(ang), np.sin(ang)], 1)
    r, ids = raycast_2d(o, dirs, wall.segments, max_range=1e3)
    np.testing.assert_allclose(r, 4.0 / np.cos(ang), rtol=1e-12)  # perpendicular distance 4 / cos
    assert np.all(ids == 0)
    # the short segment x = -2, y in [1, 2]: seen between its end points' bearings, missed outside
    bearing = np.arctan2(np.array([1.0, 2.0]) - 0.5, -3.0)
    inside = np.deg2rad(np.arange(150.0, 170.0, 0.25))
    hit_r, hit_id = raycast_2d(o, np.stack([np.cos(inside), np.sin(inside)], 1), wall.segments)
    within = (inside > bearing.min() + 1e-9) & (inside < bearing.max() - 1e-9)
    assert within.any() and (~within).any()
    np.testing.assert_allclose(hit_r[within], 3.0 / np.abs(np.cos(inside[within])), rtol=1e-12)
    assert np.all(hit_id[within] == 1) and np.all(hit_r[~within] == np.inf) and np.all(hit_id[~within] == -1)
    # circle straight ahead: range = centre distance - radius; beyond max range: no return
    rc, idc = raycast_2d(o, np.array([[1.0, 0.0], [0.0, 1.0]]), wall.segments, np.array([[3.0, 0.5, 0.25]]), 30.0)
    np.testing.assert_allclose(rc[0], 1.75, rtol=1e-12)
    assert idc.tolist() == [2, -1] and rc[1] == np.inf
    far, far_id = raycast_2d(o, dirs[:1], wall.segments, max_range=3.9)
    assert far[0] == np.inf and far_id[0] == -1


def test_scan_points_in_base_link_with_the_laser_offset():
    wall = plan_of([[[5.0, -100.0], [5.0, 100.0]]])
    T = pose(1.0, 2.0, np.deg2rad(20.0))
    pts, inten = planar_scan(wall, T, EXACT, np.random.default_rng(0))
    assert pts.dtype == np.float32 and np.all(pts[:, 2] == 0.0) and np.all(inten == 50.0)
    world = pts[:, :2].astype(float) @ T[:2, :2].T + T[:2, 3]
    np.testing.assert_allclose(world[:, 0], 5.0, atol=1e-5)  # on the wall (float32)
    # beams on the 0.5 degree grid, from the laser at x = x_offset in base_link; closed-form ranges
    laser = np.array([EXACT.x_offset, 0.0])
    beam = np.arctan2(pts[:, 1], pts[:, 0] - laser[0])
    np.testing.assert_allclose(np.round(np.rad2deg(beam) * 2), np.rad2deg(beam) * 2, atol=1e-3)
    origin_x = 1.0 + EXACT.x_offset * np.cos(np.deg2rad(20.0))
    expected = (5.0 - origin_x) / np.cos(beam + np.deg2rad(20.0))
    np.testing.assert_allclose(np.linalg.norm(pts[:, :2] - laser, axis=1), expected, rtol=1e-5)
    # exactly the beams whose closed-form range is within 30 m return
    all_beams = np.deg2rad(np.linspace(-90, 90, 361)) + np.deg2rad(20.0)
    with np.errstate(divide="ignore"):
        reach = (5.0 - origin_x) / np.cos(all_beams)
    assert len(pts) == int(np.sum((reach > 0) & (reach <= EXACT.max_range)))
    # nothing within 30 m: no points at all
    assert len(planar_scan(plan_of([[[40.0, -1.0], [40.0, 1.0]]]), np.eye(4), EXACT, np.random.default_rng(0))[0]) == 0


def test_range_noise_and_dropouts():
    plan, cfg = box_plan(), PlanarLaserConfig()
    rng = np.random.default_rng(4)
    T = pose(0.3, -0.2, 0.4)
    exact, _ = planar_scan(plan, T, EXACT, rng)
    assert len(exact) == 361  # closed room: every beam returns without dropouts
    counts, residuals = [], []
    for _ in range(200):
        pts, _ = planar_scan(plan, T, cfg, rng)
        counts.append(len(pts))
        world = pts[:, :2].astype(float) @ T[:2, :2].T + T[:2, 3]
        residuals.append(np.max(np.abs(world), axis=1) - 5.0)  # signed distance to the square, along the axis
    missing = 1.0 - np.sum(counts) / (361 * 200)
    assert 0.017 < missing < 0.023  # 2 % dropouts, binomial sd 0.05 %
    res = np.concatenate(residuals)
    assert 0.005 < np.std(res) < 0.012 and abs(np.mean(res)) < 5e-4  # ~1 cm noise, unbiased


def test_glass_returns_only_near_normal_incidence():
    plan = plan_of([[[3.0, -50.0], [3.0, 50.0]], [[6.0, -50.0], [6.0, 50.0]]], kinds=[GLASS, WALL])
    cfg = replace(EXACT, x_offset=0.0, glass_max_incidence_deg=25.25)  # not on a beam of the 0.5 degree grid
    pts, inten = planar_scan(plan, np.eye(4), cfg, np.random.default_rng(0))
    beam = np.abs(np.rad2deg(np.arctan2(pts[:, 1], pts[:, 0])))
    on_glass = np.abs(pts[:, 0] - 3.0) < 1e-5
    assert np.all(on_glass == (beam < 25.25)) and 40 < on_glass.sum() < 120
    assert np.all(np.abs(pts[~on_glass, 0] - 6.0) < 1e-5)  # through the glass to the wall behind
    assert set(inten[on_glass]) == {90.0} and set(inten[~on_glass]) == {50.0}


def test_people_occlude_and_return_points():
    wall = plan_of([[[10.0, -50.0], [10.0, 50.0]]])
    person = np.array([[5.0, 0.0, 0.25]])
    pts, inten = planar_scan(wall, np.eye(4), replace(EXACT, x_offset=0.0), np.random.default_rng(0), person)
    beam = np.arctan2(pts[:, 1], pts[:, 0])
    shadow = np.abs(beam) < np.arcsin(0.25 / 5.0) - 1e-9
    assert shadow.sum() >= 5
    np.testing.assert_allclose(np.hypot(pts[shadow, 0] - 5.0, pts[shadow, 1]), 0.25, atol=1e-5)  # on the person
    assert set(inten[shadow]) == {30.0}
    np.testing.assert_allclose(pts[~shadow, 0], 10.0, atol=1e-5)  # the rest on the wall


def test_people_walk_their_lanes_deterministically_and_avoid_the_robot(route_samples):
    route, t, T = route_samples
    lanes = office_floor_plan().person_lanes
    a, b, c = walking_people(lanes, 3), walking_people(lanes, 3), walking_people(lanes, 4)
    xy = np.array([a.positions(tk) for tk in t[::5]])  # (n, P, 2)
    np.testing.assert_array_equal(xy[7], b.positions(t[35]))
    assert not np.allclose(xy[7], c.positions(t[35]))
    # on the lanes, at the drawn walking speed, reaching both ends
    for p, (start, end) in enumerate(lanes):
        u = np.einsum("nk,k->n", xy[:, p] - start, end - start) / np.sum((end - start) ** 2)
        assert u.min() > -1e-9 and u.max() < 1 + 1e-9 and u.min() < 0.02 and u.max() > 0.98
        speed = np.linalg.norm(np.diff(xy[:, p], axis=0), axis=1) / 0.1
        assert np.median(speed) == pytest.approx(a.speeds[p], rel=1e-6) and 0.8 <= a.speeds[p] <= 1.4
    # never closer than 0.55 m to the robot (person radius 0.25 + robot radius 0.3)
    for seed in range(5):
        people = walking_people(lanes, seed)
        d = [np.linalg.norm(people.positions(tk) - T[k, :2, 3], axis=1).min() for k, tk in enumerate(t) if k % 5 == 0]
        assert min(d) > 0.55


# ---------------------------------------------------------------- route and floor plan


def test_route_closes_is_long_and_stays_clear_of_walls(route_samples):
    route, t, T = route_samples
    plan = office_floor_plan()
    np.testing.assert_allclose(T[-1], T[0], atol=1e-9)  # back at the start, same heading
    assert np.all(T[:, 2, 3] == 0.0) and np.all(T[:, 2, :3] == [0, 0, 1])  # planar
    step = np.linalg.norm(np.diff(T[:, :2, 3], axis=0), axis=1)
    assert step.sum() >= 150.0 and step.sum() == pytest.approx(route.length, rel=1e-4)
    assert 200.0 < route.duration < 400.0
    speed = step / 0.02
    assert speed.max() <= route.speed + 1e-9 and np.mean(speed[speed > 0.05]) > 0.5
    # velocity along the heading only (no side slip), and twists equal the pose derivatives
    heading = T[:-1, :2, 0] + T[1:, :2, 0]
    moving = step > 1e-6
    dxy = np.diff(T[:, :2, 3], axis=0)[moving]
    side = np.abs(heading[moving, 0] * dxy[:, 1] - heading[moving, 1] * dxy[:, 0]) / np.linalg.norm(heading[moving], axis=1)
    assert side.max() < 1e-3 * 0.02
    v, w = route.twists(t)
    np.testing.assert_allclose(np.cumsum(0.5 * (w[1:, 2] + w[:-1, 2]) * 0.02)[-1],
                               np.unwrap(yaw_of(T))[-1] - yaw_of(T[0]), atol=0.02)
    np.testing.assert_allclose(np.sum(0.5 * (v[1:, 0] + v[:-1, 0]) * 0.02), step.sum(), rtol=1e-3)
    # clear of every wall and piece of furniture by >= 0.5 m (a 0.3 m robot with margin)
    assert segment_distance(T[::5, :2, 3], plan.segments).min() >= 0.5
    # through at least two rooms, and a straight corridor stretch >= 40 m
    rooms = {name for name, (x0, y0, x1, y1) in plan.rooms.items()
             if np.any((T[:, 0, 3] > x0 + 1) & (T[:, 0, 3] < x1 - 1) & (T[:, 1, 3] > y0 + 1) & (T[:, 1, 3] < y1 - 1))}
    assert len(rooms) >= 2
    lines = [p for p in route.pieces if p[2] == "line"]
    assert max(p[7](np.array(p[1]))[0] for p in lines) >= 40.0


def test_route_turns_in_place_and_stops(route_samples):
    route, t, T = route_samples
    step = np.linalg.norm(np.diff(T[:, :2, 3], axis=0), axis=1)
    dyaw = wrap(np.diff(yaw_of(T)))
    spinning = (step < 1e-12) & (np.abs(dyaw) > 1e-9)
    # maximal runs of pure rotation
    edges = np.flatnonzero(np.diff(np.concatenate([[0], spinning.astype(int), [0]])))
    angles = np.array([abs(dyaw[s:e].sum()) for s, e in zip(edges[::2], edges[1::2])])
    rates = np.abs(dyaw[spinning]) / 0.02
    assert len(angles) >= 8
    assert np.all((angles > np.deg2rad(60) - 1e-6) & (angles < np.deg2rad(180) + 1e-6))
    assert np.any(angles > np.deg2rad(179))  # about-turns
    assert rates.max() == pytest.approx(route.spin_rate, rel=1e-3) and 0.5 <= route.spin_rate <= 1.0
    still = (step < 1e-12) & (np.abs(dyaw) < 1e-12)
    assert still.sum() * 0.02 > 10.0  # stops: at the start, the end, doors and a wait


# ---------------------------------------------------------------- odometry


def spin_trajectory(angle, rate=0.8, dt=0.02):
    """Pure rotation by ``angle`` [rad] at ``rate`` [rad/s] (smooth start and stop), then 1 s still."""
    n = int(abs(angle) / rate / dt) + 100
    s = np.clip(np.arange(n) * dt * rate / abs(angle), 0.0, 1.0)
    return np.stack([pose(0.0, 0.0, angle * (3 * u**2 - 2 * u**3)) for u in s])


def test_turn_in_place_heading_error_scales_with_the_turn():
    quiet = replace(WheelOdometryNoise(), yaw_sigma_per_rad=0.0, yaw_sigma_per_m=0.0, translation_sigma=0.0,
                    yaw_rate_bias=0.0)
    for noise, tol in ((quiet, 1e-9), (WheelOdometryNoise(), None)):
        per_angle = {}
        for deg in (60.0, 120.0, 180.0, -90.0, -180.0):
            a = np.deg2rad(deg)
            errs = []
            for seed in range(40 if tol is None else 1):
                T = spin_trajectory(a)
                od, lin, ang = simulate_wheel_odometry(T, 0.02, noise, np.random.default_rng(seed))
                assert np.all(od[:, :3, 3] == 0.0) and np.all(lin == 0.0)  # no translation
                errs.append(wrap(yaw_of(od[-1]) - a))
            per_angle[deg] = np.mean(errs) / abs(a)
        left = noise.turn_bias + noise.yaw_scale
        right = noise.turn_bias - noise.yaw_scale
        if tol is not None:
            for deg, k in per_angle.items():
                assert k == pytest.approx(left if deg > 0 else right, abs=tol)
        else:  # white noise averages out over 40 seeds: the error is still proportional to the turn
            for deg, k in per_angle.items():
                assert k == pytest.approx(left if deg > 0 else right, abs=0.002)
    assert 0.5 <= np.rad2deg(WheelOdometryNoise().turn_bias * 0.8) <= 1.0  # deg/s at 0.8 rad/s


def test_odometry_locally_good_globally_drifting(route_samples):
    route, t, T = route_samples
    rng = np.random.default_rng(11)
    for seed in range(3):
        od, _, _ = simulate_wheel_odometry(T, 0.02, WheelOdometryNoise(), np.random.default_rng(seed))
        assert np.all(od[:, 2, 3] == 0.0)
        gt = np.linalg.inv(T[0]) @ T
        # relative motion over random 3 s windows
        i = rng.integers(0, len(t) - 150, size=400)
        rel_gt = np.linalg.inv(gt[i]) @ gt[i + 150]
        rel_od = np.linalg.inv(od[i]) @ od[i + 150]
        dpos = np.linalg.norm(rel_gt[:, :2, 3] - rel_od[:, :2, 3], axis=1)
        dyaw = np.abs(wrap(yaw_of(rel_gt) - yaw_of(rel_od)))
        assert np.median(dpos) < 0.05 and np.percentile(dpos, 95) < 0.1
        assert np.rad2deg(np.median(dyaw)) < 1.0 and np.rad2deg(dyaw.max()) < 4.0
        # globally: heading and position metres off after the loop
        assert np.rad2deg(abs(wrap(yaw_of(od[-1]) - yaw_of(gt[-1])))) > 10.0
        assert np.linalg.norm(od[-1, :2, 3] - gt[-1, :2, 3]) > 3.0
        assert 1.0 < ate_rmse((t, T), (t, od), align="se3") < 5.0
        # standing still: the odometry does not move (start and end stops)
        assert np.all(od[1:100] == od[0]) and np.all(od[-140:] == od[-1])


# ---------------------------------------------------------------- relations


def test_relations_of_the_full_loop_have_enough_far_pairs(route_samples):
    route, t, T = route_samples
    scans = np.arange(0, len(t), 5)  # 10 Hz
    local, far = relation_pairs(t[scans], T[scans], np.random.default_rng(0))
    dt_local = t[scans][local[:, 1]] - t[scans][local[:, 0]]
    assert len(local) > 600 and dt_local.min() >= 0.5 - 1e-9 and dt_local.max() <= 10.0 + 1e-9
    assert len(far) >= 50
    dt_far = t[scans][far[:, 1]] - t[scans][far[:, 0]]
    dist = np.linalg.norm(T[scans][far[:, 1], :2, 3] - T[scans][far[:, 0], :2, 3], axis=1)
    assert dt_far.min() >= 30.0 and dist.max() <= 3.0
    assert dt_far.max() > 300.0  # some span the whole loop


def check_relations_file(bag_dir, scan_ns):
    rel = read_relations(Path(bag_dir) / "ground_truth.relations")  # the Euler convention: test_relations
    t1, t2 = rel.t1, rel.t2
    stamps, T = read_tum(Path(bag_dir) / "ground_truth.tum")
    scan_s = np.asarray(scan_ns) * 1e-9
    assert np.all(t2 > t1)
    assert np.all(np.diff(t1) >= 0)  # sorted by t1
    for tt in (t1, t2):  # every relation time is a scan stamp (same time base as the bag), to 1 us
        k = np.abs(scan_s[:, None] - tt).argmin(axis=0)
        exact = [int(scan_ns[m]) for m in k]  # integer ns, compared in exact decimal arithmetic
        assert max(abs(Decimal(float(s)) * 10**9 - n) for s, n in zip(tt, exact)) < 1000
    i, j = (np.abs(stamps[:, None] - tt).argmin(axis=0) for tt in (t1, t2))
    np.testing.assert_allclose(rel.delta, np.linalg.inv(T[i]) @ T[j], atol=1e-9)
    return t1, t2, T[i], T[j]


def test_relations_file_matches_ground_truth(office):
    out, summary, bag = office
    t1, t2, T1, T2 = check_relations_file(out, [t for t, _ in bag["/points"][1]])
    far = t2 - t1 >= 30.0
    assert (summary.relations[0], summary.relations[1]) == ((~far).sum(), far.sum())
    assert far.sum() >= 10 and (~far).sum() >= 100
    assert np.all((t2 - t1)[~far] <= 10.0 + 1e-6) and np.all((t2 - t1)[~far] >= 0.5 - 1e-6)
    assert np.linalg.norm(T1[far, :2, 3] - T2[far, :2, 3], axis=1).max() <= 3.0


def test_courtyard_bag_gets_relations_too(tmp_path):
    from dsg_jit_ros.tools.demo_world import LidarConfig

    cfg = DemoConfig(seed=2, duration_s=3.0, lidar=LidarConfig(azimuth_steps=30))
    summary = generate_demo_bag(tmp_path / "c", cfg)
    bag = read_bag(tmp_path / "c")
    t1, _, _, _ = check_relations_file(tmp_path / "c", [t for t, _ in bag["/points"][1]])
    assert len(t1) == summary.relations[0] > 0


# ---------------------------------------------------------------- the bag


def test_office_bag_topics_counts_frames(office):
    out, summary, bag = office
    assert {t: v[0] for t, v in bag.items()} == {
        "/points": "sensor_msgs/msg/PointCloud2", "/odom": "nav_msgs/msg/Odometry", "/ground_truth": "nav_msgs/msg/Odometry"}
    n_odom, n_cloud = int(DURATION * 50) + 1, int(DURATION * 10) + 1
    assert [len(bag[t][1]) for t in ("/odom", "/ground_truth", "/points")] == [n_odom, n_odom, n_cloud]
    assert summary.messages == {"/points": n_cloud, "/odom": n_odom, "/ground_truth": n_odom}
    for topic, period, frames in (("/odom", 20_000_000, ("odom", "base_link")), ("/ground_truth", 20_000_000, ("map", "base_link")),
                                  ("/points", 100_000_000, ("base_link", None))):
        stamps = np.array([t for t, _ in bag[topic][1]])
        assert np.all(np.diff(stamps) == period)
        msgs = [m for _, m in bag[topic][1]]
        assert [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in msgs] == stamps.tolist()
        assert {(m.header.frame_id, getattr(m, "child_frame_id", None)) for m in msgs} == {frames}
    first = bag["/odom"][1][0][1].pose.pose
    assert (first.position.x, first.position.y, first.orientation.w) == (0.0, 0.0, 1.0)
    stamps, T = read_tum(out / "ground_truth.tum")
    gt = [m.pose.pose.position for _, m in bag["/ground_truth"][1]]
    np.testing.assert_allclose(T[:, :2, 3], [[p.x, p.y] for p in gt], atol=1e-9)
    np.testing.assert_allclose(stamps, [t * 1e-9 for t, _ in bag["/ground_truth"][1]], atol=1e-6)
    np.testing.assert_allclose(T, OfficeRoute().poses(np.arange(len(T)) * 0.02), atol=1e-9)


def test_office_clouds_lie_on_the_floor_plan_or_people(office):
    out, summary, bag = office
    plan = office_floor_plan()
    people = walking_people(plan.person_lanes, 1)
    stamps, T = read_tum(out / "ground_truth.tum")
    t0 = bag["/points"][1][0][0]
    sizes, dists, n_people = [], [], 0
    for n, (t, msg) in enumerate(bag["/points"][1]):
        assert [(f.name, f.offset, f.datatype) for f in msg.fields] == [("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("intensity", 12, 7)]
        assert (msg.header.frame_id, msg.height, msg.point_step, msg.is_dense) == ("base_link", 1, 16, True)
        rec = cloud_array(msg)
        assert np.all(rec[:, 2] == 0.0)
        k = int(round((t - t0) / 2e7))
        xy = rec[:, :2].astype(float) @ T[k, :2, :2].T + T[k, :2, 3]
        d_people = np.min(np.abs(np.linalg.norm(xy[:, None] - people.positions((t - t0) * 1e-9), axis=2) - 0.25), axis=1)
        on_person = rec[:, 3] == 30.0
        n_people += on_person.sum()
        dists.append(d_people[on_person])
        if n % 3 == 0:  # the distance to 300 segments is the slow part: every third scan
            dists.append(segment_distance(xy[~on_person], plan.segments))
        sizes.append(len(rec))
    d = np.concatenate(dists)
    assert np.mean(d < 0.04) > 0.9999 and d.max() < 0.06  # 1 cm noise (float32 coordinates)
    assert n_people > 50  # people were seen
    assert 300 < np.mean(sizes) < 361 and max(sizes) <= 361
    assert summary.points_per_cloud == (min(sizes), pytest.approx(np.mean(sizes)), max(sizes))


def test_office_bag_odometry_matches_its_tum_and_drifts(office):
    out, summary, bag = office
    _, gt = read_tum(out / "ground_truth.tum")
    _, od = read_tum(out / "odometry.tum")
    np.testing.assert_allclose(od[:, :2, 3], [[m.pose.pose.position.x, m.pose.pose.position.y] for _, m in bag["/odom"][1]], atol=1e-9)
    gt_in_odom = np.linalg.inv(gt[0]) @ gt
    err = np.linalg.norm(od[:, :2, 3] - gt_in_odom[:, :2, 3], axis=1)
    assert summary.odometry_end_error_m == pytest.approx(err[-1], abs=1e-6)
    assert 0.1 < err[-1] < 3.0  # 90 s: the 1.5 % scale error and the room's 720 degrees of turning
    assert 0.02 < summary.odometry_ate_m < 1.0


def test_office_deterministic_per_seed_and_cli(tmp_path, capsys):
    a = tmp_path / "a"
    args = ["--world", "office", "--out", str(a), "--duration", "1.0", "--seed", "5"]
    assert main(args) == 0
    assert "relations" in capsys.readouterr().out
    assert main(args) == 2  # exists
    assert main(args + ["--force"]) == 0
    b = generate_office_bag(tmp_path / "b", OfficeConfig(seed=5, duration_s=1.0)).bag_dir
    c = generate_office_bag(tmp_path / "c", OfficeConfig(seed=6, duration_s=1.0)).bag_dir
    ra, rb, rc = (read_bag(p) for p in (a, b, c))
    for topic in ("/points", "/odom", "/ground_truth"):
        assert [bytes(m.data) if topic == "/points" else repr(m) for _, m in ra[topic][1]] == \
               [bytes(m.data) if topic == "/points" else repr(m) for _, m in rb[topic][1]]
    assert [bytes(m.data) for _, m in ra["/points"][1]] != [bytes(m.data) for _, m in rc["/points"][1]]
    assert [repr(m) for _, m in ra["/ground_truth"][1]] == [repr(m) for _, m in rc["/ground_truth"][1]]
    capsys.readouterr()
    for bad in (["--world", "office", "--azimuth-steps", "30"], ["--people", "2"], ["--world", "office", "--people", "-1"]):
        with pytest.raises(SystemExit) as exc:
            main(bad + ["--out", str(tmp_path / "x")])
        assert exc.value.code == 2
    assert main(["--world", "office", "--out", str(tmp_path / "np"), "--duration", "1", "--people", "0"]) == 0
