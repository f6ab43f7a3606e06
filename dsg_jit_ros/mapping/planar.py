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

# tangent components a planar pose holds fixed: [rho_x, rho_y, rho_z, phi_x, phi_y, phi_z]
PLANAR_FIXED = np.array([False, False, True, True, True, False])
PLANAR_Z_TOLERANCE = 1e-6  # m: a z extent below this makes a cloud planar


def is_planar_cloud(points: np.ndarray) -> bool:
    """True when the z of an (N, 3) body-frame cloud spans at most PLANAR_Z_TOLERANCE (N > 0)."""
    pts = np.asarray(points)
    return bool(pts.shape[0] > 0 and np.ptp(pts[:, 2]) <= PLANAR_Z_TOLERANCE)
