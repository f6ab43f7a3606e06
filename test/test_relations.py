"""The relations metric (Kümmerle et al. 2009) against closed forms.

Oracles: relations taken from a trajectory give zero error on that trajectory; a
known change of one pose gives a known error on exactly the relations that touch
it (translation d: |d| on both sides; rotation theta about z at the second pose:
theta; at the first pose: theta and the chord 2 sin(theta/2) |xy| the other
pose sweeps); slerp/linear interpolation reproduces a constant-twist path at any
fraction; a z offset counts in 3D and not planar, a roll counts in 3D and not
planar, a yaw in both.  The time-base mapping is checked on the real mit-csail
stamps file, and end to end: relations of the real log's odometry written in ipc
time, mapped and scored through the CLI, give zero error.
"""

import json
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from conftest import SHARED
from dsg_jit_ros.io.tum import write_tum
from dsg_jit_ros.tools.evaluate import TrajectoryError, main
from dsg_jit_ros.tools.relations import (
    GAP,
    OK,
    OUTSIDE_SPAN,
    evaluate_relations,
    interpolate_poses,
    map_relation_times,
    read_relations,
    read_scan_stamps,
    relation_errors,
    relations_from_trajectory,
    write_relations,
)

REAL = SHARED / "data" / "real"
MIT_CSV = REAL / "mit-csail.scan_stamps.csv"


def planar_path(n=80, dt=0.5):
    """A planar loop, yaw along the path: stamps [s], T_world_body (n, 4, 4)."""
    t = np.arange(n) * dt
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, 0, 3] = 6.0 * np.cos(0.08 * t)
    poses[:, 1, 3] = 4.0 * np.sin(0.08 * t)
    poses[:, :3, :3] = Rotation.from_euler("z", (0.08 * t + 1.0)[:, None]).as_matrix()
    return 1000.0 + t, poses


def pairs_of(n):
    """Consecutive pairs (local) plus a few long ones, both directions."""
    local = [(i, i + 1) for i in range(n - 1)] + [(i + 3, i) for i in range(0, n - 3, 7)]
    long = [(0, n - 1), (5, 60), (70, 10), (2, 45)]
    return np.array(local + long)


def test_zero_error_for_the_trajectory_itself_and_local_long_split():
    stamps, poses = planar_path()
    pairs = pairs_of(len(stamps))
    rel = relations_from_trajectory(stamps, poses, pairs)
    res = evaluate_relations(rel, (stamps, poses))
    assert (res.n_relations, res.n_evaluated, res.n_missing) == (len(pairs), len(pairs), 0)
    dt = np.abs(stamps[pairs[:, 1]] - stamps[pairs[:, 0]])
    assert res.local.count == np.sum(dt <= 10.0) and res.long.count == np.sum(dt > 10.0) == 4
    for group in (res.all, res.local, res.long):
        assert group.trans_max_m < 1e-12 and group.rot_max_deg < 1e-9
    # a narrower local band moves relations to 'long'
    assert evaluate_relations(rel, (stamps, poses), local_max_dt=1.0).local.count == np.sum(dt <= 1.0)


def test_translation_of_one_pose_errs_by_its_norm_on_exactly_the_relations_touching_it():
    stamps, poses = planar_path()
    pairs = pairs_of(len(stamps))
    rel = relations_from_trajectory(stamps, poses, pairs)
    k, d = 10, np.array([0.03, -0.04, 0.12])
    est = poses.copy()
    est[k, :3, 3] += d  # a world-frame offset
    errs = relation_errors(rel, stamps, est)
    touching = (pairs[:, 0] == k) | (pairs[:, 1] == k)
    assert touching.sum() >= 3
    assert np.all(errs.status == OK)
    np.testing.assert_allclose(errs.trans_m[touching], np.linalg.norm(d), rtol=1e-12)
    np.testing.assert_allclose(errs.trans_m[~touching], 0.0, atol=1e-12)
    np.testing.assert_allclose(errs.rot_deg, 0.0, atol=1e-9)
    res = evaluate_relations(rel, (stamps, est))
    m = touching.sum() / len(pairs)
    assert res.all.trans_mean_m == pytest.approx(m * np.linalg.norm(d), rel=1e-9)
    assert res.all.trans_rms_m == pytest.approx(math.sqrt(m) * np.linalg.norm(d), rel=1e-9)
    assert res.all.trans_std_m == pytest.approx(math.sqrt(m * (1 - m)) * np.linalg.norm(d), rel=1e-9)
    assert res.all.trans_max_m == pytest.approx(np.linalg.norm(d), rel=1e-12)
    # (10, 60) is no relation; (70, 10) is a long one
    assert res.long.count == 4 and res.long.trans_max_m == pytest.approx(np.linalg.norm(d), rel=1e-12)


def test_rotation_of_one_pose_closed_form_on_both_sides():
    stamps, poses = planar_path()
    pairs = pairs_of(len(stamps))
    rel = relations_from_trajectory(stamps, poses, pairs)
    k, theta = 10, 0.05
    est = poses.copy()
    est[k] = est[k] @ np.block([[Rotation.from_euler("z", theta).as_matrix(), np.zeros((3, 1))], [np.zeros((1, 3)), 1]])
    errs = relation_errors(rel, stamps, est)
    second, first = pairs[:, 1] == k, pairs[:, 0] == k
    assert second.sum() >= 1 and first.sum() >= 2
    np.testing.assert_allclose(errs.rot_deg[second | first], math.degrees(theta), rtol=1e-9)
    np.testing.assert_allclose(errs.rot_deg[~(second | first)], 0.0, atol=1e-9)
    np.testing.assert_allclose(errs.trans_m[second], 0.0, atol=1e-12)
    # the other pose j, seen from k, swings through theta about k's origin
    j = pairs[first, 1]
    xy = (np.linalg.inv(poses[j]) @ poses[k])[:, :2, 3]
    np.testing.assert_allclose(errs.trans_m[first], 2 * math.sin(theta / 2) * np.linalg.norm(xy, axis=1), rtol=1e-9)
    np.testing.assert_allclose(errs.trans_m[~(second | first)], 0.0, atol=1e-12)


def test_planar_and_3d_errors_differ_as_expected():
    stamps, poses = planar_path()
    pairs = pairs_of(len(stamps))
    rel = relations_from_trajectory(stamps, poses, pairs)
    k = 20
    touching = (pairs[:, 0] == k) | (pairs[:, 1] == k)

    def errors(change, planar):
        est = poses.copy()
        est[k] = est[k] @ change
        return relation_errors(rel, stamps, est, planar=planar)

    lift = np.eye(4)
    lift[2, 3] = 0.3  # pure z: the body z is the world z on planar data
    e3, e2 = errors(lift, False), errors(lift, True)
    np.testing.assert_allclose(e3.trans_m[touching], 0.3, rtol=1e-12)
    np.testing.assert_allclose(e2.trans_m, 0.0, atol=1e-12)
    np.testing.assert_allclose(np.r_[e3.rot_deg, e2.rot_deg], 0.0, atol=1e-9)

    roll = np.eye(4)
    roll[:3, :3] = Rotation.from_euler("x", 0.1).as_matrix()
    e3, e2 = errors(roll, False), errors(roll, True)
    np.testing.assert_allclose(e3.rot_deg[touching], math.degrees(0.1), rtol=1e-9)
    np.testing.assert_allclose(e2.rot_deg[pairs[:, 0] != k], 0.0, atol=1e-9)
    # seen from the other pose the roll axis is turned by their yaw difference: its yaw
    # (ZYX) is second order in the tilt, about (1 - cos 0.1) cos(a) sin(a) <= 0.0025 rad
    first = pairs[:, 0] == k
    assert np.all(e2.rot_deg[first] <= math.degrees(0.0026)) and np.any(e2.rot_deg[first] > 1e-3)

    yaw = np.eye(4)
    yaw[:3, :3] = Rotation.from_euler("z", -0.2).as_matrix()
    e3, e2 = errors(yaw, False), errors(yaw, True)
    np.testing.assert_allclose(e2.rot_deg[touching], math.degrees(0.2), rtol=1e-9)
    np.testing.assert_allclose(e3.rot_deg, e2.rot_deg, atol=1e-9)
    np.testing.assert_allclose(e3.trans_m, e2.trans_m, atol=1e-12)  # planar change: same translation


def constant_twist(t, v=np.array([0.4, -0.1, 0.05]), w=0.3, axis=np.array([0.2, -0.3, 1.0])):
    """Rotation exp(w t axis) (fixed axis) and translation v t: what slerp + linear interpolate exactly."""
    poses = np.tile(np.eye(4), (len(t), 1, 1))
    poses[:, :3, :3] = Rotation.from_rotvec(np.outer(w * t, axis / np.linalg.norm(axis))).as_matrix()
    poses[:, :3, 3] = np.outer(t, v) + [1.0, 2.0, 3.0]
    return poses


def test_interpolation_is_exact_on_a_constant_twist_and_refuses_outside_and_gaps():
    stamps = np.array([0.0, 1.0, 2.0, 4.0, 10.0])
    poses = constant_twist(stamps)
    query = np.array([0.5, 0.25, 1.9, 3.0, 2.0, 0.0, 10.0, -0.01, 10.01, 6.0, 9.2])
    out, status = interpolate_poses(stamps, poses, query, max_gap=1.0)
    assert status.tolist() == [OK] * 7 + [OUTSIDE_SPAN] * 2 + [GAP, OK]
    np.testing.assert_allclose(out[:7], constant_twist(query[:7]), atol=1e-12)
    np.testing.assert_allclose(out[10], constant_twist(query[10:])[0], atol=1e-12)
    assert np.all(np.isnan(out[7:10]))
    # midpoint closed form on an axis: half the rotation angle, mean of the positions
    mid, _ = interpolate_poses(stamps[:2], poses[:2], np.array([0.5]))
    assert Rotation.from_matrix(mid[0, :3, :3]).magnitude() == pytest.approx(0.15, rel=1e-12)
    np.testing.assert_allclose(mid[0, :3, 3], poses[:2, :3, 3].mean(axis=0), atol=1e-15)
    with pytest.raises(TrajectoryError, match="strictly increasing"):
        interpolate_poses(np.array([0.0, 1.0, 1.0]), constant_twist(np.array([0.0, 1.0, 1.0])), query)


def test_relations_between_estimate_stamps_are_interpolated_and_missing_ones_counted():
    t_ref = np.arange(0.0, 20.0, 0.25)
    ref = constant_twist(t_ref)
    # relations at times the estimate does not have (it is sampled every 1 s)
    pairs = np.array([(1, 3), (5, 47), (9, 10), (2, 70), (0, 79), (30, 31)])
    rel = relations_from_trajectory(t_ref, ref, pairs)
    t_est = np.concatenate([np.arange(0.0, 10.0, 1.0), np.arange(15.0, 19.0, 1.0)])
    res = evaluate_relations(rel, (t_est, constant_twist(t_est)), max_gap=1.0)
    # t = 19.75 (pair (0, 79)) is after the estimate's last stamp (18 s); 30 * 0.25 = 7.5 s and
    # 31 * 0.25 = 7.75 s are fine; 70 * 0.25 = 17.5 s is fine; 47 * 0.25 = 11.75 s is 2.75 s from a pose
    assert (res.n_evaluated, res.n_outside_span, res.n_gap, res.n_missing) == (4, 1, 1, 2)
    assert res.all.trans_max_m < 1e-12 and res.all.rot_max_deg < 1e-9
    assert evaluate_relations(rel, (t_est, constant_twist(t_est)), max_gap=3.0).n_gap == 0


def test_write_read_round_trip_with_and_without_tag(tmp_path):
    stamps, poses = planar_path()
    poses = poses @ constant_twist(np.linspace(0, 2, len(stamps)))  # full 3D relative poses
    rel = relations_from_trajectory(stamps, poses, pairs_of(len(stamps)))
    for tag in (None, "FLASER"):
        path = tmp_path / f"r_{tag}.relations"
        write_relations(path, rel, tag=tag)
        back = read_relations(path)
        np.testing.assert_array_equal(back.t1, rel.t1)
        np.testing.assert_array_equal(back.t2, rel.t2)
        np.testing.assert_allclose(back.delta, rel.delta, atol=1e-14)
        assert back.lines.tolist() == list(range(2, len(rel) + 2))  # after the header comment
    # the Euler convention: R = Rz(yaw) Ry(pitch) Rx(roll)
    (tmp_path / "one").write_text("\n# comment\n1.0 2.0  0.1 0.2 0.3  0.01 0.02 0.03  # trailing\n")
    one = read_relations(tmp_path / "one")
    a, b, c = 0.01, 0.02, 0.03
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    np.testing.assert_allclose(one.delta[0, :3, :3], rz @ ry @ rx, atol=1e-15)
    np.testing.assert_allclose(one.delta[0, :3, 3], [0.1, 0.2, 0.3])
    assert one.lines.tolist() == [3]


@pytest.mark.parametrize("text, message", [
    ("1 2 3 4 5 6 7\n", "line 1: expected .* got 7 values"),
    ("# ok\n1 2 3 4 5 6 7 8 9\n", "line 2: expected .* got 9 values"),
    ("FLASER 1 2 3 4 5 6 7\n", "line 1: expected .* got 7 values"),
    ("1 2 0 0 0 0 0 x\n", "line 1: non-numeric"),
    ("1 2 0 0 nan 0 0 0\n", "line 1: non-finite"),
    ("1 2 0 0 0 0 0 inf\n", "line 1: non-finite"),
    ("1 2 0 0 0 0 0 0\n\n5.5 5.5 0 0 0 0 0 0\n", "line 3: t2 == t1"),
    ("# nothing\n\n", "no relations"),
    ("", "no relations"),
])
def test_malformed_files_are_refused_with_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad.relations"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        read_relations(path)
    assert str(path) in str(info.value)


@pytest.mark.skipif(not MIT_CSV.exists(), reason=f"{MIT_CSV} is not there")
def test_time_base_mapping_on_the_real_mit_csail_stamps(tmp_path):
    ipc, bag = read_scan_stamps(MIT_CSV)
    assert len(ipc) == 1988 and np.all(np.diff(ipc) > 0)
    assert ipc[0] == 1134864629.895182 and bag[0] == 0.086295
    # relations in ipc time (printed with 6 decimals, as in the Freiburg files) -> bag time
    path = tmp_path / "mit.relations"
    path.write_text("FLASER 1134864629.895182 1134864630.105179 0.1 0 0 0 0 0.01\n"
                    "FLASER 1134864630.325184 1134864629.895182 -0.2 0 0 0 0 0\n")
    rel = map_relation_times(read_relations(path), MIT_CSV)
    assert rel.t1.tolist() == [0.086295, 0.472105] and rel.t2.tolist() == [0.273363, 0.086295]
    np.testing.assert_array_equal(rel.delta, read_relations(path).delta)
    # between two scans (0.1 s from both) and before the log
    path.write_text("1134864629.895182 1134864630.105179 0 0 0 0 0 0\n1134864629.895182 1134864630.0 0 0 0 0 0 0\n")
    with pytest.raises(ValueError, match=r"line 2: t2 = 1134864630.0 matches no scan .* within 0.01 s"):
        map_relation_times(read_relations(path), MIT_CSV)
    path.write_text("1134864620.0 1134864629.895182 0 0 0 0 0 0\n")
    with pytest.raises(ValueError, match="line 1: t1"):
        map_relation_times(read_relations(path), MIT_CSV)
    assert map_relation_times(read_relations(path), MIT_CSV, tolerance=10.0).t1[0] == 0.086295
    (tmp_path / "bad.csv").write_text("scan_index,ipc\n0,1.0\n")
    with pytest.raises(ValueError, match=r"no column\(s\) \['bag_stamp_ns', 'ipc_timestamp'\]"):
        read_scan_stamps(tmp_path / "bad.csv")


def test_cli_table_json_planar_and_errors(tmp_path, capsys):
    stamps, poses = planar_path()
    pairs = pairs_of(len(stamps))
    write_relations(tmp_path / "gt.relations", relations_from_trajectory(stamps, poses, pairs))
    est = poses.copy()
    est[10, 2, 3] += 0.5  # z only: 3D error, no planar error
    m = np.sum((pairs[:, 0] == 10) | (pairs[:, 1] == 10)) / len(pairs)
    write_tum(tmp_path / "est.tum", stamps, est)
    args = ["--relations", str(tmp_path / "gt.relations"), str(tmp_path / "est.tum")]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert f"relations       {len(pairs)} ({len(pairs)} evaluated, 0 missing" in text
    row = next(line for line in text.splitlines() if line.startswith("all"))
    assert row.split()[1:6] == [str(len(pairs)), f"{0.5 * m:.4f}", f"{0.5 * math.sqrt(m * (1 - m)):.4f}", "0.5000",
                                f"{0.5 * math.sqrt(m):.4f}"]
    assert main(args + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["planar"] is False and out["all"]["trans_max_m"] == pytest.approx(0.5, rel=1e-12)
    assert main(args + ["--json", "--planar", "--local-max-dt", "100"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["planar"] is True and out["all"]["trans_max_m"] == pytest.approx(0.0, abs=1e-12)
    assert out["local"]["count"] == len(pairs) and out["long"]["count"] == 0 and out["long"]["trans_mean_m"] is None
    # bad input: exit code 2 and a message
    assert main(["--relations", str(tmp_path / "missing.relations"), str(tmp_path / "est.tum")]) == 2
    assert "cannot read" in capsys.readouterr().err
    (tmp_path / "bad.relations").write_text("1 2 3\n")
    assert main(["--relations", str(tmp_path / "bad.relations"), str(tmp_path / "est.tum")]) == 2
    assert "line 1" in capsys.readouterr().err
    assert main(["--relations", str(tmp_path / "gt.relations"), str(tmp_path / "missing.tum")]) == 2
    assert "cannot read" in capsys.readouterr().err
    # usage errors
    for argv in (args + [str(tmp_path / "est.tum")], args + ["--align", "sim3"], args + ["--plot", "x.png"],
                 [str(tmp_path / "est.tum"), str(tmp_path / "est.tum"), "--planar"], [str(tmp_path / "est.tum")]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    capsys.readouterr()
    # the ATE mode is unchanged
    assert main([str(tmp_path / "est.tum"), str(tmp_path / "est.tum"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ate_rmse"] == pytest.approx(0.0, abs=1e-9)


BAG = REAL / "mit-csail"


@pytest.mark.skipif(not (BAG.exists() and MIT_CSV.exists()), reason=f"{BAG} is not there")
def test_real_log_relations_in_ipc_time_through_the_cli(tmp_path, capsys):
    """Relations of the bag's own odometry, written in the log's ipc time base: mapped with
    --stamps and scored on the odometry they came from, the error is zero; without the
    mapping no relation time falls inside the trajectory."""
    from dsg_jit_ros.tools.log_reader import read_laser_log

    log = read_laser_log(BAG, max_scans=200)
    poses = log.odometry_at_clouds()
    ipc, bag = read_scan_stamps(MIT_CSV)
    np.testing.assert_allclose(bag[:200], log.cloud_stamps, rtol=0, atol=1e-9)
    pairs = np.array([(i, i + 5) for i in range(0, 190, 3)] + [(0, 199), (150, 20)])
    rel = relations_from_trajectory(ipc[:200], poses, pairs)
    write_relations(tmp_path / "odom.relations", rel, tag="FLASER")
    write_tum(tmp_path / "odom.tum", log.cloud_stamps, poses)
    base = ["--relations", str(tmp_path / "odom.relations"), str(tmp_path / "odom.tum"), "--json", "--planar"]
    assert main(base + ["--stamps", str(MIT_CSV)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_evaluated"] == len(pairs) and out["long"]["count"] == 2
    assert out["all"]["trans_max_m"] < 1e-9 and out["all"]["rot_max_deg"] < 1e-7
    assert main(base) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_evaluated"] == 0 and out["n_outside_span"] == len(pairs) and out["all"]["count"] == 0
