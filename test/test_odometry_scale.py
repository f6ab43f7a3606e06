"""The running estimate of the wheel odometry's distance scale (mapping.odometry_scale)."""

import math

import numpy as np
import pytest

from dsg_jit_ros.geometry.poses import from_xyz_rpy
from dsg_jit_ros.mapping.odometry_scale import OdometryScale


def _inc(x, y=0.0, yaw=0.0):
    return from_xyz_rpy(np.array([x, y, 0.0, 0.0, 0.0, yaw]))


def test_a_steady_ratio_is_found_once_half_the_memory_is_travelled():
    est = OdometryScale(memory=10.0, limit=0.1)
    travelled = 0.0
    while travelled < 4.5:  # under memory / 2: not used yet
        est.update(_inc(0.25, 0.01), _inc(0.25 * 0.97, 0.03, 0.02))  # sideways and heading errors do not count
        travelled += 0.25
        assert est.scale == 1.0
    for _ in range(8):
        est.update(_inc(0.25, 0.01), _inc(0.25 * 0.97, 0.03, 0.02))
    # along the odometry's direction (0.25, 0.01): (0.97 * 0.25 * 0.25 + 0.03 * 0.01) / 0.25^2+0.01^2
    odo, solved = np.array([0.25, 0.01]), np.array([0.25 * 0.97, 0.03])
    assert est.scale == pytest.approx(solved @ odo / (odo @ odo), rel=1e-12)
    np.testing.assert_allclose(est.apply(_inc(1.0, 2.0, 0.3)), _inc(est.scale, 2.0 * est.scale, 0.3), atol=1e-15)


def test_the_estimate_forgets_over_the_memory_and_is_clamped():
    est = OdometryScale(memory=10.0, limit=0.05)
    for _ in range(200):
        est.update(_inc(0.5), _inc(0.5 * 1.02))
    assert est.scale == pytest.approx(1.02, rel=1e-12)
    for _ in range(20):  # 10 m (one memory) at 0.99: weights e^-1 on the old ratio
        est.update(_inc(0.5), _inc(0.5 * 0.99))
    w = math.exp(-1.0)
    assert est.scale == pytest.approx((w * 1.02 + (1 - w) * 0.99), abs=2e-3)
    for _ in range(200):
        est.update(_inc(0.5), _inc(0.5 * 1.2))
    assert est.scale == pytest.approx(1.05)  # clamped


def test_turns_in_place_and_memory_zero_leave_it_alone():
    est = OdometryScale(memory=1.0, limit=0.1)
    for _ in range(50):
        est.update(_inc(0.01, 0.0, 0.5), _inc(0.03, 0.0, 0.5))  # under MIN_INTERVAL
    assert est.scale == 1.0
    off = OdometryScale(memory=0.0, limit=0.1)
    for _ in range(50):
        off.update(_inc(0.5), _inc(0.6))
    assert off.scale == 1.0
    with pytest.raises(ValueError, match="limit"):
        OdometryScale(memory=1.0, limit=1.0)


def _ring_keyframes(memory: float):
    """Keyframe poses and truth on a ring whose north corridor is bare (nothing along it
    within the laser's 10 m), driven with odometry reading 3 % long, loop closure off."""
    from planar_helpers import replay_planar
    from dsg_jit_ros.tools.planar_laser import PlanarLaserConfig, WheelOdometryNoise
    from dsg_jit_ros.tools.ring_world import RingConfig, simulate_ring

    stamps, truth, odom, scans = simulate_ring(RingConfig(length=30.0, width=10.0, laps=1.0, bare_north=True),
                                               noise=WheelOdometryNoise(scale_bias=0.03),
                                               laser=PlanarLaserConfig(max_range=10.0))
    pipe = replay_planar(stamps, odom, scans, ["loop.enabled=false", "keyframe.track_between=false",
                                               f"noise.odom_scale_memory={memory}"])
    index = {t: i for i, t in enumerate(stamps)}
    kf = [(index[t], m) for t, m in pipe.window.keyframe_poses]
    return pipe.window.odometry_scale.scale, np.array([m for _, m in kf]), truth[[i for i, _ in kf]]


def test_the_scale_is_learnt_where_scans_see_it_and_a_bare_corridor_keeps_its_length():
    scale, est, truth = _ring_keyframes(10.0)
    _, est_off, _ = _ring_keyframes(0.0)
    assert scale == pytest.approx(1.0 / 1.03, abs=0.005)
    # along the bare north corridor the scans see nothing of the motion: the keyframe
    # steps there are as long as the odometry makes them (3 % long without the scale)
    north = (truth[:-1, 1, 3] > 9.0) & (truth[1:, 1, 3] > 9.0)

    def length_ratio(poses):
        step = np.linalg.norm(np.diff(poses[:, :2, 3], axis=0), axis=1)
        true = np.linalg.norm(np.diff(truth[:, :2, 3], axis=0), axis=1)
        return step[north].sum() / true[north].sum()
    on, off = length_ratio(est), length_ratio(est_off)
    print("bare corridor length ratio with / without the scale:", on, off)
    assert north.sum() > 40 and off > 1.015
    assert abs(on - 1.0) < 0.3 * abs(off - 1.0)
