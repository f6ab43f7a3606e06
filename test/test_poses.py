"""Host pose helpers (``geometry.poses``) against independent oracles: transforms3d's
Euler / axis-angle / quaternion maps, the matrix exponential of a twist (scipy's
``expm``), scipy's ``Slerp`` and closed forms (angles, yaw, halves of a turn)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import expm
from scipy.spatial.transform import Rotation, Slerp
from transforms3d.axangles import axangle2mat
from transforms3d.euler import euler2mat
from transforms3d.quaternions import quat2mat

from dsg_jit_ros.geometry import poses


def _random_poses(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.tile(np.eye(4), (n, 1, 1))
    for k in range(n):
        axis = rng.normal(size=3)
        out[k, :3, :3] = axangle2mat(axis, rng.uniform(0.0, np.pi))
        out[k, :3, 3] = rng.normal(scale=5.0, size=3)
    return out


def test_pose_values_are_translation_and_rotation_vector() -> None:
    t = _random_poses(20)
    v = poses.pose_values(t)
    for k in range(len(t)):
        angle = np.linalg.norm(v[k, 3:])
        np.testing.assert_allclose(axangle2mat(v[k, 3:] / angle, angle), t[k, :3, :3], atol=1e-12)
        assert 0.0 <= angle <= np.pi + 1e-12
    np.testing.assert_allclose(v[:, :3], t[:, :3, 3])
    np.testing.assert_allclose(poses.pose_matrices(v), t, atol=1e-12)
    assert poses.pose_values(np.zeros((0, 4, 4))).shape == (0, 6)


def _rotation_vectors(n: int, seed: int) -> np.ndarray:
    """Rotation vectors of every regime: any angle, under the series' 1e-3 rad, within
    1e-3 rad of pi, and exactly 0 and pi."""
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    angle = np.concatenate([rng.uniform(0.0, np.pi, n // 3), rng.uniform(0.0, 1e-3, n // 3),
                            np.pi - rng.uniform(0.0, 1e-3, n - 2 * (n // 3))])
    angle[:2] = [0.0, np.pi]
    return axis * angle[:, None]


def test_one_pose_is_converted_as_scipy_converts_a_stack() -> None:
    """A single pose takes a Python-float path (20x faster than scipy's ``Rotation`` for
    one); it must give scipy's bits, on rotations and on products of them (the
    registration converts ``T_pred^-1 T``), or a replay would take another course."""
    rvec = _rotation_vectors(3000, seed=5)
    rng = np.random.default_rng(6)
    values = np.column_stack([rng.normal(size=(len(rvec), 3)), rvec])
    mats = Rotation.from_rotvec(rvec).as_matrix()
    products = mats @ Rotation.from_rotvec(rng.normal(size=(len(rvec), 3))).as_matrix()
    for k in range(len(rvec)):
        one = poses.pose_matrices(values[k][None])
        assert np.array_equal(one[0, :3, :3], mats[k])
        assert np.array_equal(one[0, :3, 3], values[k, :3]) and np.array_equal(one[0, 3], [0.0, 0.0, 0.0, 1.0])
        for rot in (mats[k], products[k]):
            t = np.eye(4)
            t[:3, :3], t[:3, 3] = rot, values[k, :3]
            got = poses.pose_values(t[None])
            assert got.shape == (1, 6) and np.array_equal(got[0, 3:], Rotation.from_matrix(rot).as_rotvec())
            assert poses.rotation_angle(rot) == poses.rotation_angle(rot[None])[0]  # one / a stack
            assert np.array_equal(got[0, :3], values[k, :3])


def test_one_pose_that_is_not_a_rotation_goes_to_scipy() -> None:
    """Off a rotation by more than 1e-9 the single-pose path hands over: scipy
    orthogonalises a scaled rotation and rejects a reflection."""
    t = np.eye(4)
    t[:3, :3] = 1.01 * Rotation.from_rotvec([0.3, 0.2, 0.1]).as_matrix()
    np.testing.assert_allclose(poses.pose_values(t[None])[0, 3:], [0.3, 0.2, 0.1], atol=1e-12)
    t[:3, :3] = np.diag([1.0, 1.0, -1.0])
    with pytest.raises(ValueError, match="determinant"):
        poses.pose_values(t[None])


def test_xyz_rpy_is_ros_fixed_axis_rpy() -> None:
    rng = np.random.default_rng(1)
    vals = np.column_stack([rng.normal(size=(10, 3)), rng.uniform(-1.5, 1.5, size=(10, 3))])
    t = poses.from_xyz_rpy(vals)
    for k, v in enumerate(vals):
        np.testing.assert_allclose(t[k, :3, :3], euler2mat(*v[3:], axes="sxyz"), atol=1e-12)  # Rz Ry Rx
        np.testing.assert_allclose(t[k, :3, 3], v[:3])
    np.testing.assert_allclose(poses.from_xyz_rpy(vals[0]), t[0])  # one pose in, one out
    np.testing.assert_allclose(poses.rpy_of(t[:, :3, :3]), vals[:, 3:], atol=1e-12)


def test_angles_and_yaw_closed_forms() -> None:
    rng = np.random.default_rng(2)
    axis = rng.normal(size=(8, 3))
    angle = rng.uniform(0.0, 3.0, size=8)
    rot = np.stack([axangle2mat(a, th) for a, th in zip(axis, angle)])
    np.testing.assert_allclose(poses.rotation_angle(rot), angle, atol=1e-12)
    assert isinstance(poses.rotation_angle(rot[0]), float)
    yaw = rng.uniform(-np.pi + 0.01, np.pi - 0.01, size=8)
    r = poses.yaw_matrices(yaw)
    np.testing.assert_allclose(r, np.stack([euler2mat(0.0, 0.0, y, axes="sxyz") for y in yaw]), atol=1e-15)
    np.testing.assert_allclose(poses.yaw_of(r), yaw, atol=1e-14)
    assert isinstance(poses.yaw_of(r[0]), float)


def test_quaternions_match_transforms3d() -> None:
    rng = np.random.default_rng(3)
    q = rng.normal(size=(30, 4))
    ref = np.stack([quat2mat(np.r_[x[3], x[:3]]) for x in q])  # transforms3d is w-first, normalises
    # the same operations in the same order: the same bits (messages and files agree)
    assert np.array_equal(poses.quat_xyzw_to_matrix(q), ref)
    np.testing.assert_allclose(np.einsum("nij,nkj->nik", ref, ref), np.tile(np.eye(3), (30, 1, 1)), atol=1e-12)
    back = poses.matrix_to_quat_xyzw(ref)
    assert np.all(back[:, 3] >= 0)
    np.testing.assert_allclose(poses.quat_xyzw_to_matrix(back), ref, atol=1e-12)


def test_split_planar_recomposes_and_separates_yaw() -> None:
    for t in _random_poses(10, seed=4):
        planar, level = poses.split_planar(t)
        np.testing.assert_allclose(planar @ level, t, atol=1e-12)
        assert planar[2, 3] == 0.0 and np.allclose(planar[2, :3], [0, 0, 1]) and np.allclose(planar[:3, 2], [0, 0, 1])
        assert np.allclose(level[:2, 3], 0.0)
        # the levelling has no yaw: its x-axis stays in the vertical plane through x
        assert abs(level[1, 0]) < 1e-12


def test_adjoint_moves_a_twist_between_frames() -> None:
    """``T exp(xi) T^-1 = exp(Ad_T xi)`` with twists [rho, phi] (tangent order of ``se3``)."""

    def twist(xi: np.ndarray) -> np.ndarray:
        m = np.zeros((4, 4))
        w = xi[3:]
        m[:3, :3] = [[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]]
        m[:3, 3] = xi[:3]
        return m

    rng = np.random.default_rng(5)
    for t in _random_poses(5, seed=6):
        xi = rng.normal(scale=0.3, size=6)
        lhs = t @ expm(twist(xi)) @ np.linalg.inv(t)
        np.testing.assert_allclose(expm(twist(poses.adjoint_matrix(t) @ xi)), lhs, atol=1e-10)


def test_interpolate_is_slerp_with_linear_translation() -> None:
    a, b = _random_poses(2, seed=7)
    np.testing.assert_allclose(poses.interpolate(a, b, 0.0), a, atol=1e-12)
    np.testing.assert_allclose(poses.interpolate(a, b, 1.0), b, atol=1e-12)
    # a turn about a fixed axis: halfway is half the angle
    axis = np.array([0.3, -0.2, 0.9])
    c = a.copy()
    c[:3, :3] = a[:3, :3] @ axangle2mat(axis, 1.2)
    mid = poses.interpolate(a, c, 0.5)
    np.testing.assert_allclose(mid[:3, :3], a[:3, :3] @ axangle2mat(axis, 0.6), atol=1e-12)
    np.testing.assert_allclose(mid[:3, 3], a[:3, 3])
    # bit-identical to scipy's Slerp, one pose and a batch alike
    s = np.array([0.0, 0.25, 0.7, 1.0])
    ref = Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([a[:3, :3], b[:3, :3]])))(s).as_matrix()
    batch = poses.interpolate(np.repeat(a[None], 4, 0), np.repeat(b[None], 4, 0), s)
    assert np.array_equal(batch[:, :3, :3], ref)
    for k in range(4):
        assert np.array_equal(poses.interpolate(a, b, s[k]), batch[k])
    np.testing.assert_allclose(batch[:, :3, 3], (1 - s)[:, None] * a[:3, 3] + s[:, None] * b[:3, 3])


@pytest.mark.parametrize("module", ["dsg_jit_ros.mapping.keyframes", "dsg_jit_ros.mapping.odometry_buffer",
                                    "dsg_jit_ros.mapping.planar", "dsg_jit_ros.config", "dsg_jit_ros.tools.relations",
                                    "dsg_jit_ros.slam.pose_graph", "dsg_jit_ros.mapping.pipeline_config"])
def test_rotation_forms_live_in_one_module(module: str) -> None:
    """The modules that used to convert rotations themselves now go through ``geometry.poses``."""
    import importlib
    import inspect

    source = inspect.getsource(importlib.import_module(module))
    assert "scipy.spatial.transform" not in source and "transforms3d" not in source
