"""The final full-rate trajectory between keyframes (``export.poses_at(spread=True)``):
each keyframe's correction spread over the interval before it.

Oracle: straight-line motion at constant speed whose odometry under-reads the
distance by 10 %, keyframes at their true poses.  The drift accrues in proportion to
time, so the spread poses equal the truth at every scan (closed form); the default
(step) poses are off by up to 10 % of a keyframe interval's travel just before each
keyframe: the counter-example that the spread changes what the relations metric sees."""

from types import SimpleNamespace

import numpy as np

from dsg_jit_ros.geometry.poses import from_xyz_rpy
from dsg_jit_ros.mapping.export import poses_at


def _pipeline(kf_stamps, kf_poses, kf_odom):
    return SimpleNamespace(window=SimpleNamespace(keyframe_poses=list(zip(kf_stamps, kf_poses))),
                           keyframe_odometry=list(zip(kf_stamps, kf_odom)))


def test_linear_drift_is_removed_between_keyframes():
    v, yaw = 0.8, 0.4  # m/s along a fixed heading
    heading = from_xyz_rpy(np.array([0, 0, 0, 0, 0, yaw]))

    def pose(dist):
        return heading @ from_xyz_rpy(np.array([dist, 0, 0, 0, 0, 0]))

    stamps = np.linspace(0.0, 6.0, 61)
    truth = np.array([pose(v * t) for t in stamps])
    odom = np.array([from_xyz_rpy(np.array([2.0, -1.0, 0, 0, 0, 1.0])) @ pose(0.9 * v * t) for t in stamps])
    kf = [0, 20, 40]  # keyframes at 0, 2, 4 s, at their true poses
    pipe = _pipeline(stamps[kf], truth[kf], odom[kf])
    spread = poses_at(pipe, stamps, odom, spread=True)
    step = poses_at(pipe, stamps, odom)
    inside = stamps <= 4.0  # after the last keyframe both are the step form
    assert np.allclose(spread[inside], truth[inside], atol=1e-12)
    assert np.allclose(spread[~inside], step[~inside], atol=1e-12)
    step_err = np.linalg.norm(step[inside][:, :3, 3] - truth[inside][:, :3, 3], axis=1)
    assert np.isclose(step_err.max(), 0.1 * v * 1.9, rtol=1e-9)  # the scan before a keyframe


def test_keyframes_are_kept_and_turns_do_not_jump():
    rng = np.random.default_rng(4)
    stamps = np.arange(0.0, 10.0, 0.1)
    odom = [np.eye(4)]
    for _ in stamps[1:]:
        odom.append(odom[-1] @ from_xyz_rpy(np.array([0.05, 0.0, 0.0, 0.0, 0.0, 0.08])))
    odom = np.array(odom)
    kf = np.arange(0, len(stamps), 7)
    noise = np.array([from_xyz_rpy(np.r_[rng.normal(0, 0.05, 2), 0, 0, 0, rng.normal(0, 0.02)]) for _ in kf])
    kf_poses = odom[kf] @ noise
    out = poses_at(_pipeline(stamps[kf], kf_poses, odom[kf]), stamps, odom, spread=True)
    assert np.allclose(out[kf], kf_poses, atol=1e-12)
    # no jump: consecutive scans differ by about one odometry step everywhere
    steps = np.linalg.norm(np.diff(out[:, :3, 3], axis=0), axis=1)
    assert steps.max() < 0.05 + 0.03
