"""Rotation matrix <-> unit quaternion ``[qx, qy, qz, qw]`` (scalar last, Hamilton) conversions.

Shared by the g2o and TUM readers and writers, which store rotations as quaternions.
"""

from __future__ import annotations

import numpy as np

__all__ = ["QUAT_NORM_TOLERANCE", "quat_xyzw_to_matrix", "matrix_to_quat_xyzw"]

#: Largest accepted deviation of a file quaternion's norm from 1 before normalising.
QUAT_NORM_TOLERANCE = 1e-3


def quat_xyzw_to_matrix(q_xyzw: np.ndarray) -> np.ndarray:
    """Rotation matrices from unit quaternions ``[qx, qy, qz, qw]``, shape (..., 4) -> (..., 3, 3).

    The quaternion is normalised first; ``R @ p`` rotates a point p.
    """
    q = np.asarray(q_xyzw, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
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

