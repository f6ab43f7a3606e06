"""CARMEN logs (the public 2D benchmark logs) read as the shipped bags are: beams to
points in base_link (laser offset applied, no-return readings dropped), one odometry
pose per scan at its ipc stamp; bad files fail naming the line.

The oracle is a log written here from known poses and beam geometry (closed form),
plus the shipped mit-csail bag, which was converted from the public mit-csail.clf:
its scans must satisfy the same beam model (a 361-beam scan spans both ends)."""

import bz2
import math
import re

import numpy as np
import pytest

from conftest import SHARED
from dsg_jit_ros.tools.carmen_log import read_carmen_log
from dsg_jit_ros.tools.log_reader import read_laser_log


def _flaser(ranges, laser, robot, stamp):
    words = ["FLASER", str(len(ranges))] + [f"{r:.3f}" for r in ranges]
    words += [f"{v:.6f}" for v in (*laser, *robot)] + [f"{stamp:.6f}", "nohost", f"{stamp - 10:.6f}"]
    return " ".join(words)


def _laser_pose(robot, offset_x):
    x, y, th = robot
    return (x + offset_x * math.cos(th), y + offset_x * math.sin(th), th)


ROBOTS = [(0.0, 0.0, 0.0), (0.5, 0.1, 0.3), (1.0, 0.4, 1.2)]
N_BEAMS = 180  # even: -90 .. +89 degrees in 1 degree steps


def _write(path, offset_x=0.3, no_return=50.0):
    rng = np.random.default_rng(0)
    lines = ["# CARMEN log", "PARAM robot_frontlaser_offset 0.3 nohost 0"]
    scans = []
    for k, robot in enumerate(ROBOTS):
        r = rng.uniform(0.5, 10.0, N_BEAMS)
        r[[3, 77]] = no_return  # no echo
        lines.append(f"ODOM {robot[0]} {robot[1]} {robot[2]} 0 0 0 {100 + k:.6f} nohost {90 + k:.6f}")
        lines.append(_flaser(r, _laser_pose(robot, offset_x), robot, 100.05 + k))
        scans.append(np.round(r, 3))
    text = "\n".join(lines) + "\n"
    if path.suffix == ".bz2":
        path.write_bytes(bz2.compress(text.encode()))
    else:
        path.write_text(text)
    return scans


@pytest.mark.parametrize("name", ["log.clf", "log.clf.bz2"])
def test_scans_become_base_link_points_and_odometry(tmp_path, name):
    scans = _write(tmp_path / name)
    log = read_carmen_log(tmp_path / name)
    assert np.allclose(log.cloud_stamps, [100.05, 101.05, 102.05]) and np.array_equal(log.odom_stamps, log.cloud_stamps)
    assert [tuple(o) for o in log.order[:4]] == [(0, 0), (1, 0), (0, 1), (1, 1)]
    for k, (robot, r) in enumerate(zip(ROBOTS, scans)):
        x, y, th = robot
        assert np.allclose(log.odom_poses[k][:2, 3], [x, y], atol=1e-6)
        assert math.isclose(math.atan2(log.odom_poses[k][1, 0], log.odom_poses[k][0, 0]), th, abs_tol=1e-6)
        angles = np.radians(np.arange(-90.0, 90.0, 1.0))
        keep = r < 50.0
        expect = np.stack([r[keep] * np.cos(angles[keep]) + 0.3, r[keep] * np.sin(angles[keep]), 0 * r[keep]], 1)
        assert log.clouds[k].shape == (N_BEAMS - 2, 3)
        assert np.allclose(log.clouds[k], expect, atol=1e-5)


def test_max_scans_and_an_explicit_no_return(tmp_path):
    _write(tmp_path / "log.clf")
    log = read_carmen_log(tmp_path / "log.clf", max_scans=2, no_return=60.0)
    assert len(log.clouds) == 2 and len(log.clouds[0]) == N_BEAMS  # 50 m is a range below 60


def test_a_361_beam_scan_spans_both_ends_as_the_shipped_bag():
    """mit-csail (361 beams, -90..+90 deg): every point of the shipped bag's first scans
    lies on a beam of the odd-count model, the even-count model misses most."""
    bag = read_laser_log(SHARED / "data" / "real" / "mit-csail", max_scans=5)
    for pts in bag.clouds:
        bearing = np.degrees(np.arctan2(pts[:, 1], pts[:, 0]))
        odd = bearing / (180.0 / 360) + 180.0  # beam index for step 180/(n-1)
        even = bearing / (180.0 / 361) + 180.5
        assert np.all(np.abs(odd - np.round(odd)) < 1e-3)
        assert np.mean(np.abs(even - np.round(even)) < 1e-3) < 0.1


@pytest.mark.parametrize("mutate, match", [
    (lambda s: s.replace("FLASER 180", "FLASER 181", 1), "fields for 181 readings"),
    (lambda s: re.sub(r"(FLASER 180 )\S+", r"\1nan", s, count=1), "non-finite"),
    (lambda s: s.replace("102.050000 nohost", "100.000000 nohost"), "not after the previous"),
    (lambda s: "\n".join(l for l in s.splitlines() if not l.startswith("FLASER")), "no FLASER lines"),
])
def test_bad_files_name_the_problem(tmp_path, mutate, match):
    _write(tmp_path / "good.clf")
    (tmp_path / "bad.clf").write_text(mutate((tmp_path / "good.clf").read_text()))
    with pytest.raises(ValueError, match=match):
        read_carmen_log(tmp_path / "bad.clf")
    with pytest.raises(FileNotFoundError):
        read_carmen_log(tmp_path / "missing.clf")
