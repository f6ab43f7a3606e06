"""Planar mode through the pipeline: a level 2D laser on a robot whose odometry
reports a height, roll and pitch.  Auto mode detects the planar clouds (and says
so once); every keyframe's z, roll and pitch are exactly the odometry's while x, y
and yaw are corrected against the drifting odometry."""

import numpy as np
from scipy.spatial.transform import Rotation

from dsg_jit_ros.mapping.keyframes import KeyframeConfig
from dsg_jit_ros.mapping.pipeline import InputConfig, PipelineConfig, SlamPipeline
from dsg_jit_ros.mapping.voxelize import VoxelConfig
from dsg_jit_ros.mapping.window_config import WindowConfig

Z, ROLL, PITCH = 0.35, 0.02, -0.015


def pose(x, y, yaw, z=0.0, roll=0.0, pitch=0.0):
    t = np.eye(4)
    t[:3, :3] = Rotation.from_euler("ZYX", [yaw, pitch, roll]).as_matrix()
    t[:3, 3] = [x, y, z]
    return t


def room_scan(t_world_body: np.ndarray) -> np.ndarray:
    """Level laser (in the body's levelled plane): ray-cast a 10 x 6 m room with a pillar."""
    x, y, yaw = t_world_body[0, 3], t_world_body[1, 3], np.arctan2(t_world_body[1, 0], t_world_body[0, 0])
    ang = np.radians(np.arange(-180, 180, 0.5))
    d = np.c_[np.cos(ang + yaw), np.sin(ang + yaw)]
    with np.errstate(divide="ignore"):
        tx = np.where(d[:, 0] > 0, (5 - x) / d[:, 0], (-5 - x) / d[:, 0])
        ty = np.where(d[:, 1] > 0, (3 - y) / d[:, 1], (-3 - y) / d[:, 1])
    r = np.minimum(tx, ty)
    oc = np.array([x - 1.5, y - 1.0])  # pillar of radius 0.4 at (1.5, 1.0)
    b = d @ oc
    disc = b * b - (oc @ oc - 0.16)
    hit = (disc > 0) & (-b - np.sqrt(np.maximum(disc, 0)) > 0)
    r = np.where(hit, np.minimum(r, -b - np.sqrt(np.maximum(disc, 0))), r)
    return np.c_[r * np.cos(ang), r * np.sin(ang), np.zeros_like(r)]


def test_planar_mode_keeps_z_roll_pitch_of_odometry_and_corrects_the_rest():
    cfg = PipelineConfig(
        window=WindowConfig(size=6, voxel=VoxelConfig(0.2, 0.1, 20.0), max_voxels=1500,
                            max_observations=6000, odom_sigma_translation=0.03, odom_sigma_rotation=0.02,
                            odom_rotation_scale=0.05),
        keyframe=KeyframeConfig(0.2, 0.1), inputs=InputConfig(compute_covariance=True), planar="auto")
    pipe = SlamPipeline(cfg)
    yaw_drift = 0.01  # rad per step: the odometry's heading error
    notices, truth, odom = [], [], []
    for k in range(40):
        a = 0.05 * k
        t_true = pose(2.0 * np.cos(a) - 2.0, 1.5 * np.sin(a), a + np.pi / 2)
        t_odom = pose(t_true[0, 3], t_true[1, 3], a + np.pi / 2 + yaw_drift * k, Z, ROLL, PITCH)
        truth.append(t_true)
        odom.append(t_odom)
        assert pipe.add_odometry(float(k), t_odom) is None
        updates, rejections = pipe.add_cloud(float(k), room_scan(t_true))
        assert not rejections
        for u in updates:
            notices += list(u.notices)
            # fixed components have zero variance: the world height of the body (body-frame
            # tangent: world translation R rho) and the tilt (roll/pitch axes)
            up = dict(pipe.window.keyframe_poses)[u.stamp][:3, :3].T @ [0.0, 0.0, 1.0]
            assert abs(up @ u.covariance[:3, :3] @ up) < 1e-12 * np.trace(u.covariance[:3, :3])
            assert abs(up @ u.covariance[3:, 3:] @ up) > 0  # yaw about the world vertical is estimated
    assert pipe.planar is True
    assert len(notices) == 1 and "planar" in notices[0]
    est = dict(pipe.window.keyframe_poses)
    odo = dict(pipe.keyframe_odometry)
    assert len(est) >= 15
    yaw_err_est, yaw_err_odo = [], []
    for s, t in est.items():
        e_zyx = Rotation.from_matrix(t[:3, :3]).as_euler("ZYX")
        o_zyx = Rotation.from_matrix(odo[s][:3, :3]).as_euler("ZYX")
        assert abs(t[2, 3] - Z) < 1e-12
        np.testing.assert_allclose(e_zyx[1:], o_zyx[1:], atol=1e-12)  # pitch, roll exactly the odometry's
        true_yaw = np.arctan2(truth[int(s)][1, 0], truth[int(s)][0, 0])
        yaw_err_est.append(abs(np.angle(np.exp(1j * (e_zyx[0] - true_yaw)))))
        yaw_err_odo.append(abs(np.angle(np.exp(1j * (o_zyx[0] - true_yaw)))))
    # the first keyframe fixes the map frame at the odometry's; after that heading drift is removed
    assert max(yaw_err_est) < 0.2 * max(yaw_err_odo), (max(yaw_err_est), max(yaw_err_odo))
