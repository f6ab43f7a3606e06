"""Which ground-truth relations to take for trajectory evaluation (Kümmerle et al. 2009).

A relation is the relative pose ``T(t1)^-1 T(t2)`` of the ground truth ``T_map_base``
between two scan times; a SLAM estimate is scored by comparing its own relative
poses at the same times with these, so no global alignment is needed.  This module
only picks the index pairs; ``dsg_jit_ros.tools.relations`` computes the relations
(``relations_from_trajectory``), reads and writes the file (``t1 t2 x y z roll pitch
yaw``) and scores estimates.

Pairs are drawn between scan times: *local* pairs (a partner 0.5-10 s after every
few scans) measure short-term accuracy, *far* pairs (at least 30 s apart, positions a
few metres apart, headings similar enough for the scans to overlap) measure what a
loop closure must fix.
"""

from __future__ import annotations

import numpy as np

from dsg_jit_ros.geometry.poses import yaw_of

__all__ = ["relation_pairs"]


def relation_pairs(stamps_s: np.ndarray, poses: np.ndarray, rng: np.random.Generator, local_every: int = 5,
                   local_dt: tuple[float, float] = (0.5, 10.0), far_min_dt: float = 30.0, far_max_dist: float = 3.0,
                   far_max_yaw: float = np.pi / 2, far_every: int = 2, max_far: int = 200
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(i, j)``, ``i < j``, into scans at ``stamps_s`` [s] with ground truth ``poses`` (n, 4, 4).

    Local: for every ``local_every``-th scan, the scan nearest to a time drawn uniformly
    ``local_dt`` [s] later (skipped past the end).  Far: for every ``far_every``-th scan,
    one partner drawn among the scans at least ``far_min_dt`` [s] later whose position is
    within ``far_max_dist`` [m] and heading within ``far_max_yaw`` [rad]; then at most
    ``max_far`` of those, evenly spread over the candidates.

    Returns:
        ``(local (L, 2) int, far (F, 2) int)``.
    """
    t = np.asarray(stamps_s, dtype=float)
    T = np.asarray(poses, dtype=float)
    n = len(t)
    local = []
    for i in range(0, n, local_every):
        target = t[i] + rng.uniform(*local_dt)
        j = int(np.searchsorted(t, target))
        if j >= n:
            continue
        if j > 0 and target - t[j - 1] < t[j] - target:
            j -= 1
        if t[j] - t[i] >= local_dt[0] - 1e-9:
            local.append((i, j))
    xy = T[:, :2, 3]
    heading = yaw_of(T)
    far = []
    for i in range(0, n, far_every):
        later = np.flatnonzero(t >= t[i] + far_min_dt)
        dyaw = np.abs((heading[later] - heading[i] + np.pi) % (2 * np.pi) - np.pi)
        ok = later[(np.linalg.norm(xy[later] - xy[i], axis=1) <= far_max_dist) & (dyaw <= far_max_yaw)]
        if len(ok):
            far.append((i, int(rng.choice(ok))))
    if len(far) > max_far:
        far = [far[k] for k in np.linspace(0, len(far) - 1, max_far).round().astype(int)]
    return np.asarray(local, dtype=int).reshape(-1, 2), np.asarray(far, dtype=int).reshape(-1, 2)
