"""Poses on the host (numpy): the one place where 4x4 ``T_a_b`` matrices meet the other
rotation forms (rotation vectors, quaternions, Euler angles, yaw) outside the jitted
core (``geometry.se3`` / ``geometry.so3`` are the JAX side, with the same conventions).

Conventions (as ``geometry.se3``):
- a pose is a 4x4 homogeneous ``T_a_b`` (maps points in b to a), metres;
- a pose value is ``[tx, ty, tz, rx, ry, rz]``: the translation, then the rotation
  vector (axis * angle, radians, angle in [0, pi]) — what ``pose_se3`` variables store;
- quaternions are Hamilton, scalar last ``[qx, qy, qz, qw]`` (ROS, TUM, g2o order);
- ``xyz_rpy`` is ``[x, y, z, roll, pitch, yaw]`` with ``R = Rz(yaw) Ry(pitch) Rx(roll)``
  (fixed axes x, then y, then z: ROS's RPY);
- yaw is the heading ``atan2(R[1, 0], R[0, 0])`` (radians, (-pi, pi]).
Every function takes stacks (..., 4, 4) / (n, k) where it says so; rotation vectors,
Euler angles and interpolation are computed by scipy's ``Rotation`` (a single pose's
rotation vector and matrix by the same operations in Python floats, 20x faster) and
quaternions as transforms3d does, so moving a module's conversion here changed no result by a bit
(the replays of the real logs are sensitive to the last bit: an odometry matrix
rounded differently moved mit-csail's consistency from 0.0204 to 0.0174 m).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial.transform import Rotation

__all__ = ["QUAT_NORM_TOLERANCE", "quat_xyzw_to_matrix", "matrix_to_quat_xyzw", "pose_values", "pose_matrices",
           "from_xyz_rpy", "rpy_of", "rotation_angle", "yaw_of", "yaw_matrices", "split_planar", "adjoint_matrix", "interpolate"]

#: Largest accepted deviation of a quaternion's norm from 1 before normalising (files, messages).
QUAT_NORM_TOLERANCE = 1e-3


def quat_xyzw_to_matrix(q_xyzw: np.ndarray) -> np.ndarray:
    """Rotation matrices from quaternions ``[qx, qy, qz, qw]``, shape (..., 4) -> (..., 3, 3).

    ``R @ p`` rotates a point p.  A quaternion of any non-zero norm gives the rotation of
    the unit one (scaled by ``2 / |q|^2``); the operations are those of transforms3d's
    ``quat2mat``, in the same order, so odometry read from messages and from files gives
    the same bits whichever path converted it.
    """
    q = np.asarray(q_xyzw, dtype=np.float64)
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    s = 2.0 / (w * w + x * x + y * y + z * z)
    xs, ys, zs = x * s, y * s, z * s
    wx, wy, wz = w * xs, w * ys, w * zs
    xx, xy, xz = x * xs, x * ys, x * zs
    yy, yz, zz = y * ys, y * zs, z * zs
    rows = [[1.0 - (yy + zz), xy - wz, xz + wy],
            [xy + wz, 1.0 - (xx + zz), yz - wx],
            [xz - wy, yz + wx, 1.0 - (xx + yy)]]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def matrix_to_quat_xyzw(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternions ``[qx, qy, qz, qw]`` (with ``qw >= 0``) from rotations, (..., 3, 3) -> (..., 4).

    Uses the symmetric matrix ``M = 4 q q^T`` built from the rotation entries and
    reads ``q`` off its row with the largest diagonal (Shepperd's method), which is
    accurate for every rotation angle.
    """
    r = np.asarray(rotation, dtype=np.float64)
    m00, m01, m02 = r[..., 0, 0], r[..., 0, 1], r[..., 0, 2]
    m10, m11, m12 = r[..., 1, 0], r[..., 1, 1], r[..., 1, 2]
    m20, m21, m22 = r[..., 2, 0], r[..., 2, 1], r[..., 2, 2]
    # Rows/columns ordered [w, x, y, z]; M[a, b] = 4 q_a q_b for an exact rotation.
    outer = np.stack(
        [
            np.stack([1 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01], axis=-1),
            np.stack([m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20], axis=-1),
            np.stack([m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21], axis=-1),
            np.stack([m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22], axis=-1),
        ],
        axis=-2,
    )
    best = np.argmax(np.diagonal(outer, axis1=-2, axis2=-1), axis=-1)
    row = np.take_along_axis(outer, best[..., None, None], axis=-2)[..., 0, :]
    q_wxyz = row / np.linalg.norm(row, axis=-1, keepdims=True)
    q_wxyz = np.where(q_wxyz[..., :1] < 0, -q_wxyz, q_wxyz)
    return np.concatenate([q_wxyz[..., 1:], q_wxyz[..., :1]], axis=-1)


def pose_values(poses: np.ndarray) -> np.ndarray:
    """(n, 4, 4) ``T_world_body`` -> (n, 6) pose values [t (m), rotation vector (rad)]."""
    t = np.asarray(poses, dtype=np.float64).reshape(-1, 4, 4)
    if t.shape[0] == 0:
        return np.zeros((0, 6))
    if t.shape[0] == 1 and _is_rotation(m := t[0, :3, :3].tolist()):  # one per registration iteration
        return np.array([[*t[0, :3, 3].tolist(), *_rotation_vector(m)]])
    return np.concatenate([t[:, :3, 3], Rotation.from_matrix(t[:, :3, :3]).as_rotvec()], axis=1)


def pose_matrices(values: np.ndarray) -> np.ndarray:
    """(n, 6) pose values [t (m), rotation vector (rad)] -> (n, 4, 4) ``T_world_body``."""
    v = np.asarray(values, dtype=np.float64).reshape(-1, 6)
    out = np.zeros((v.shape[0], 4, 4))
    if v.shape[0] == 1:
        out[0, :3, :3] = _rotation_matrix(*v[0, 3:].tolist())
    elif v.shape[0]:
        out[:, :3, :3] = Rotation.from_rotvec(v[:, 3:]).as_matrix()
    out[:, :3, 3] = v[:, :3]
    out[:, 3, 3] = 1.0
    return out


# One rotation in Python floats: scipy's ``Rotation`` costs about 0.1 ms per call in
# argument handling, 20x the arithmetic.  The operations are scipy's, in its order (the
# quaternion from the largest of the diagonal and the trace, normalised, w >= 0; the
# angle's series below 1e-3 rad), so the results are the same to the bit
# (``test/test_poses.py`` compares them on random, small and near-pi rotations).  A
# matrix that is not a rotation to 1e-9 goes to scipy, which orthogonalises it or
# rejects a reflection.
def _is_rotation(m: list) -> bool:
    """True when the 3x3 nested lists are orthonormal to 1e-9 with determinant +1."""
    (a, b, c), (d, e, f), (g, h, i) = m
    gram = (a * a + b * b + c * c - 1.0, d * d + e * e + f * f - 1.0, g * g + h * h + i * i - 1.0,
            a * d + b * e + c * f, a * g + b * h + c * i, d * g + e * h + f * i)
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    return max(map(abs, gram)) < 1e-9 and det > 0.0


def _rotation_vector(m: list) -> list[float]:
    """Rotation vector (rad) of one 3x3 rotation given as nested lists."""
    tr = m[0][0] + m[1][1] + m[2][2]
    decision = (m[0][0], m[1][1], m[2][2], tr)
    i = max(range(4), key=decision.__getitem__)
    if i == 3:
        q = [m[2][1] - m[1][2], m[0][2] - m[2][0], m[1][0] - m[0][1], 1.0 + tr]
    else:
        j, k = (i + 1) % 3, (i + 2) % 3
        q = [0.0] * 4
        q[i] = 1.0 - tr + 2.0 * m[i][i]
        q[j] = m[j][i] + m[i][j]
        q[k] = m[k][i] + m[i][k]
        q[3] = m[k][j] - m[j][k]
    norm = math.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3])
    x, y, z, w = (c / norm for c in q)
    if w < 0:
        x, y, z, w = -x, -y, -z, -w
    angle = 2.0 * math.atan2(math.sqrt(x * x + y * y + z * z), w)
    if angle <= 1e-3:
        a2 = angle * angle
        scale = 2.0 + a2 / 12.0 + 7.0 * a2 * a2 / 2880.0
    else:
        scale = angle / math.sin(angle / 2.0)
    return [scale * x, scale * y, scale * z]


def _rotation_matrix(x: float, y: float, z: float) -> list[list[float]]:
    """3x3 rotation (nested lists) of the rotation vector (x, y, z) (rad), through its quaternion."""
    angle = math.sqrt(x * x + y * y + z * z)
    if angle <= 1e-3:
        a2 = angle * angle
        scale = 0.5 - a2 / 48.0 + a2 * a2 / 3840.0
    else:
        scale = math.sin(angle / 2.0) / angle
    x, y, z, w = scale * x, scale * y, scale * z, math.cos(angle / 2.0)
    x2, y2, z2, w2 = x * x, y * y, z * z, w * w
    xy, zw, xz, yw, yz, xw = x * y, z * w, x * z, y * w, y * z, x * w
    return [[x2 - y2 - z2 + w2, 2.0 * (xy - zw), 2.0 * (xz + yw)],
            [2.0 * (xy + zw), -x2 + y2 - z2 + w2, 2.0 * (yz - xw)],
            [2.0 * (xz - yw), 2.0 * (yz + xw), -x2 - y2 + z2 + w2]]


def from_xyz_rpy(xyz_rpy: np.ndarray) -> np.ndarray:
    """(n, 6) or (6,) ``[x, y, z, roll, pitch, yaw]`` (m, rad) -> (n, 4, 4) or (4, 4) poses,
    ``R = Rz(yaw) Ry(pitch) Rx(roll)``."""
    v = np.asarray(xyz_rpy, dtype=np.float64)
    flat = v.reshape(-1, 6)
    out = np.tile(np.eye(4), (len(flat), 1, 1))
    if len(flat):
        out[:, :3, :3] = Rotation.from_euler("xyz", flat[:, 3:]).as_matrix()
        out[:, :3, 3] = flat[:, :3]
    return out[0] if v.ndim == 1 else out


def rpy_of(rotation: np.ndarray) -> np.ndarray:
    """(n, 3, 3) rotations -> (n, 3) ``[roll, pitch, yaw]`` (rad), inverse of ``from_xyz_rpy``'s."""
    r = np.asarray(rotation, dtype=np.float64).reshape(-1, 3, 3)
    return Rotation.from_matrix(r).as_euler("xyz") if len(r) else np.zeros((0, 3))


def rotation_angle(rotation: np.ndarray) -> np.ndarray | float:
    """Angle (rad, in [0, pi]) of a (3, 3) rotation (a float) or of each of (n, 3, 3)."""
    r = np.asarray(rotation, dtype=np.float64)
    if r.ndim == 2 and _is_rotation(m := r.tolist()):  # keyframe selection, twice per cloud
        return float(np.linalg.norm(np.array(_rotation_vector(m))))
    # the norm of each rotation vector on its own (np.linalg.norm of a stack along an axis
    # rounds differently in the last bit, and keyframe selection compares this angle)
    angle = np.array([np.linalg.norm(v) for v in Rotation.from_matrix(r.reshape(-1, 3, 3)).as_rotvec()])
    return float(angle[0]) if r.ndim == 2 else angle


def yaw_of(poses: np.ndarray) -> np.ndarray | float:
    """Heading (rad) of a 4x4 / 3x3 (a float) or of each of a stack (..., 4, 4) / (..., 3, 3)."""
    t = np.asarray(poses, dtype=np.float64)
    yaw = np.arctan2(t[..., 1, 0], t[..., 0, 0])
    return float(yaw) if t.ndim == 2 else yaw


def yaw_matrices(yaw: np.ndarray) -> np.ndarray:
    """(...,) yaw angles (rad) -> (..., 3, 3) rotations about +z."""
    c, s = np.cos(yaw), np.sin(yaw)
    out = np.zeros(np.shape(yaw) + (3, 3))
    out[..., 0, 0], out[..., 0, 1], out[..., 1, 0], out[..., 1, 1], out[..., 2, 2] = c, -s, s, c, 1.0
    return out


def split_planar(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(P, L)`` with ``T = P @ L``: ``P`` = (x, y, yaw) of ``T`` (Z-Y-X Euler yaw),
    ``L`` = the rotation ``Ry(pitch) Rx(roll)`` with translation (0, 0, z)."""
    t = np.asarray(t, dtype=np.float64)
    yaw, pitch, roll = Rotation.from_matrix(t[:3, :3]).as_euler("ZYX")
    planar = np.eye(4)
    planar[:3, :3] = Rotation.from_euler("Z", yaw).as_matrix()
    planar[:2, 3] = t[:2, 3]
    level = np.eye(4)
    level[:3, :3] = Rotation.from_euler("ZYX", [0.0, pitch, roll]).as_matrix()
    level[2, 3] = t[2, 3]
    return planar, level


def adjoint_matrix(t: np.ndarray) -> np.ndarray:
    """6x6 adjoint of a 4x4 transform for tangent order [rho, phi] (``geometry.se3.adjoint``'s convention)."""
    r, p = t[:3, :3], t[:3, 3]
    px = np.array([[0.0, -p[2], p[1]], [p[2], 0.0, -p[0]], [-p[1], p[0], 0.0]])
    out = np.zeros((6, 6))
    out[:3, :3], out[:3, 3:], out[3:, 3:] = r, px @ r, r
    return out


def interpolate(t_a: np.ndarray, t_b: np.ndarray, s: np.ndarray | float) -> np.ndarray:
    """Poses between ``t_a`` and ``t_b`` (each (4, 4) or both (n, 4, 4)) at fractions ``s``
    (scalar or (n,), 0 -> ``t_a``, 1 -> ``t_b``): translation linear, rotation along the
    shortest arc at a constant rate (slerp; the same numbers as
    scipy's ``Slerp``).  Returns (4, 4) or (n, 4, 4)."""
    a = np.asarray(t_a, dtype=np.float64)
    b = np.asarray(t_b, dtype=np.float64)
    single = a.ndim == 2
    a, b = a.reshape(-1, 4, 4), b.reshape(-1, 4, 4)
    frac = np.broadcast_to(np.asarray(s, dtype=np.float64), (len(a),))
    out = np.tile(np.eye(4), (len(a), 1, 1))
    if len(a):
        r0 = Rotation.from_matrix(a[:, :3, :3])
        rel = (r0.inv() * Rotation.from_matrix(b[:, :3, :3])).as_rotvec()
        out[:, :3, :3] = (r0 * Rotation.from_rotvec(frac[:, None] * rel)).as_matrix()
    out[:, :3, 3] = (1.0 - frac)[:, None] * a[:, :3, 3] + frac[:, None] * b[:, :3, 3]
    return out[0] if single else out
