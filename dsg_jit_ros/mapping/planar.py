"""Planar mode: 2D lasers on ground robots estimate x, y and yaw only.

A pose ``T_odom_body`` is split into a planar part ``P`` (x, y, yaw about the
odom frame's z) and a levelling ``L`` (z, roll, pitch) with ``T = P L``; the
window estimates planar poses and leaves ``L`` as the odometry gave it, so z, roll
and pitch are exactly the odometry's.  A cloud is *planar* when all its points
lie in one plane parallel to the body's xy-plane (a level 2D laser converted to
PointCloud2: z = 0 in its frame, the mounting height in the body frame).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

# tangent components a planar pose holds fixed: [rho_x, rho_y, rho_z, phi_x, phi_y, phi_z]
PLANAR_FIXED = np.array([False, False, True, True, True, False])
PLANAR_Z_TOLERANCE = 1e-6  # m: a z extent below this makes a cloud planar


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


def is_planar_cloud(points: np.ndarray) -> bool:
    """True when the z of an (N, 3) body-frame cloud spans at most PLANAR_Z_TOLERANCE (N > 0)."""
    pts = np.asarray(points)
    return bool(pts.shape[0] > 0 and np.ptp(pts[:, 2]) <= PLANAR_Z_TOLERANCE)


def adjoint_matrix(t: np.ndarray) -> np.ndarray:
    """6x6 adjoint of a 4x4 transform for tangent order [rho, phi] (numpy)."""
    r, p = t[:3, :3], t[:3, 3]
    px = np.array([[0.0, -p[2], p[1]], [p[2], 0.0, -p[0]], [-p[1], p[0], 0.0]])
    out = np.zeros((6, 6))
    out[:3, :3], out[:3, 3:], out[3:, 3:] = r, px @ r, r
    return out
