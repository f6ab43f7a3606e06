"""Scan-to-map registration of a new keyframe, seeded by the odometry increment.

Each scan point ``q = T p`` (map frame) is matched to the surface of a voxel near
it (of the 2x2x2, or 2x2 in planar mode, cells whose centres are nearest to q: the
one with the smallest ``|W d|^2 + |d|^2 / voxel_size^2``, ``d = q - mu``: the surface
distance, with the distance to the voxel's mean to prefer near surfaces over far
ones along a plane) and contributes the residual
``W_l (q - mu_l)``: a point-to-surface error whose information ``W_l^T W_l`` is
the voxel's surface information with an infinite ``slide``: point-to-plane on
walls (nothing along them), point-to-line on edges, nothing from volumes.  A Cauchy kernel takes
outliers (people, glass, doors that moved); points farther than
``max_correspondence`` from every voxel mean are not matched.

The odometry prediction enters as a prior on the correction ``T_pred^-1 T``
(odometry sigmas).  A result whose correction is beyond ``max_correction_sigma``
of those sigmas (e.g. a door frame matched to its neighbour along a corridor) is
not believed: the prediction is kept and the result flagged ``rejected``.  Degeneracy: the scan's Hessian, in units of the prior's
information, is split by its eigenvectors; along directions where the scan adds
less than ``degeneracy_ratio`` of the prior's information (a featureless corridor,
along its axis) the scan is ignored and the prediction kept, instead of letting
the estimate slide.  Gauss-Newton iterations (correspondences re-found each
time) run until the step is below the tolerances.  Planar mode estimates only
x, y and yaw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsg_jit_ros.mapping.voxelize import pack_keys
from dsg_jit_ros.slam.pose_graph import pose_matrices, pose_values

PLANAR_DOFS = np.array([0, 1, 5])  # [rho_x, rho_y, phi_z] of the tangent [rho, phi]
TIE_BREAK = 0.1  # weight of the distance to a voxel mean (in voxel sizes) when choosing a surface


@dataclass(frozen=True)
class RegistrationConfig:
    """Scan-to-map settings (metres, radians)."""

    enabled: bool = True
    max_iterations: int = 20
    tolerance_translation: float = 5e-4
    tolerance_rotation: float = 5e-4
    max_correspondence: float = 1.0
    kernel_scale: float = 3.0  # Cauchy scale of the whitened point residual
    min_matches: int = 20
    degeneracy_ratio: float = 0.5
    max_correction_sigma: float = 6.0
    downsample: float = 0.25  # scan voxel grid (m) before registering; 0: every point

    def __post_init__(self) -> None:
        if self.max_iterations < 1 or self.min_matches < 1:
            raise ValueError("max_iterations and min_matches must be >= 1")
        for name in ("tolerance_translation", "tolerance_rotation", "max_correspondence", "kernel_scale",
                     "max_correction_sigma"):
            if not getattr(self, name) > 0:
                raise ValueError(f"registration.{name} must be positive, got {getattr(self, name)}")
        if self.degeneracy_ratio < 0 or self.downsample < 0:
            raise ValueError("degeneracy_ratio and downsample must be >= 0")


@dataclass(frozen=True)
class SurfaceTarget:
    """Voxel surfaces to register against: packed keys (sorted), means (map, m) and
    square-root informations ``W`` (3x3, ``W^T W = Omega``)."""

    keys: np.ndarray  # (K,) int64, sorted
    means: np.ndarray  # (K, 3)
    sqrt_info: np.ndarray  # (K, 3, 3)
    voxel_size: float

    @staticmethod
    def build(keys: np.ndarray, means: np.ndarray, sqrt_info: np.ndarray, voxel_size: float) -> "SurfaceTarget":
        """The target of the voxels that carry information (volumes with none are left out)."""
        informative = np.abs(sqrt_info).sum(axis=(1, 2)) > 0
        keys, means, sqrt_info = np.asarray(keys)[informative], means[informative], sqrt_info[informative]
        order = np.argsort(keys, kind="stable")
        return SurfaceTarget(keys[order], means[order], sqrt_info[order], float(voxel_size))

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def rows(self, keys: np.ndarray) -> np.ndarray:
        """Row of each packed key, -1 where absent."""
        if not len(self):
            return np.full(keys.shape, -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.keys, keys), len(self) - 1)
        return np.where(self.keys[pos] == keys, pos, -1)


@dataclass(frozen=True)
class RegistrationResult:
    """Outcome: the registered pose and what supports it."""

    t_map_body: np.ndarray  # (4, 4)
    used: bool  # False: too few matches or rejected; the prediction is returned
    iterations: int
    points: int  # scan points registered (after downsampling)
    matched: int  # points with a surface within max_correspondence (last iteration)
    rmse: float  # RMS whitened residual of the matched points (last iteration)
    degenerate: int  # directions left to the prediction (last iteration)
    converged: bool
    rejected: bool = False  # the correction was beyond max_correction_sigma: prediction kept
    correction_sigma: float = 0.0  # size of the correction in odometry sigmas
    information: np.ndarray | None = None  # (6, 6) the scan's Hessian of the last iteration, tangent [rho, phi]


def _downsample(points: np.ndarray, size: float) -> np.ndarray:
    """One point (the mean) per ``size`` grid cell; all points when size is 0."""
    if size <= 0 or len(points) == 0:
        return points
    keys = pack_keys(np.floor(points / size).astype(np.int64))
    if keys is None:
        return points
    _, inverse, count = np.unique(keys, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    sums = np.stack([np.bincount(inverse, weights=points[:, i]) for i in range(3)], axis=1)
    return sums / count[:, None]


def _hat(v: np.ndarray) -> np.ndarray:
    """(n, 3) -> (n, 3, 3) cross-product matrices."""
    out = np.zeros(v.shape[:-1] + (3, 3))
    out[..., 0, 1], out[..., 0, 2] = -v[..., 2], v[..., 1]
    out[..., 1, 0], out[..., 1, 2] = v[..., 2], -v[..., 0]
    out[..., 2, 0], out[..., 2, 1] = -v[..., 1], v[..., 0]
    return out


def _neighbour_offsets(planar: bool) -> np.ndarray:
    """(k, 3) 0/1 offsets of the 2x2x2 (planar: 2x2) cells around a point's nearest corner."""
    grid = np.stack(np.meshgrid([0, 1], [0, 1], [0] if planar else [0, 1], indexing="ij"), -1).reshape(-1, 3)
    return grid.astype(np.int64)


def _match(q: np.ndarray, target: SurfaceTarget, offsets: np.ndarray, max_dist: float):
    """For each map-frame point: row of its best voxel (-1: none) and whitened residual."""
    s = target.voxel_size
    # lower corner of the block of nearest cell centres (a single layer: the point's own)
    base = np.floor(q / s - 0.5 * offsets.max(axis=0)).astype(np.int64)
    cells = base[:, None, :] + offsets[None, :, :]
    keys = pack_keys(cells.reshape(-1, 3))
    if keys is None:
        return np.full(len(q), -1), np.zeros((len(q), 3))
    rows = target.rows(keys).reshape(len(q), -1)
    pi, ki = np.nonzero(rows >= 0)  # candidate (point, cell) pairs whose cell is in the target
    cand = rows[pi, ki]
    d = q[pi] - target.means[cand]
    w = target.sqrt_info[cand]
    r = np.stack([w[:, i, 0] * d[:, 0] + w[:, i, 1] * d[:, 1] + w[:, i, 2] * d[:, 2] for i in range(3)], axis=1)
    dist2 = np.einsum("ni,ni->n", d, d)
    cost = np.full(rows.shape, np.inf)
    near = dist2 <= max_dist ** 2
    cost[pi[near], ki[near]] = np.einsum("ni,ni->n", r[near], r[near]) + TIE_BREAK * dist2[near] / s ** 2
    best = np.argmin(cost, axis=1)
    idx = np.arange(len(q))
    found = np.isfinite(cost[idx, best])
    out_r = np.zeros((len(q), 3))
    pair = np.full(rows.shape, -1)
    pair[pi, ki] = np.arange(len(pi))
    chosen = pair[idx[found], best[found]]
    out_r[found] = r[chosen]
    return np.where(found, rows[idx, best], -1), out_r


def register(points_body: np.ndarray, t_pred: np.ndarray, target: SurfaceTarget, prior_sigma: np.ndarray,
             cfg: RegistrationConfig, planar: bool = False) -> RegistrationResult:
    """Register an (N, 3) body-frame scan to ``target`` starting from ``t_pred`` (T_map_body).

    ``prior_sigma`` (6,): odometry sigmas of the correction ``[rho, phi]`` (m, rad).
    """
    pts = _downsample(np.asarray(points_body, dtype=np.float64), cfg.downsample)
    dofs = PLANAR_DOFS if planar else np.arange(6)
    w_prior = 1.0 / np.asarray(prior_sigma, dtype=np.float64)[dofs]
    offsets = _neighbour_offsets(planar)
    t = np.asarray(t_pred, dtype=np.float64).copy()
    matched, rmse, degenerate, converged, it = 0, float("nan"), 0, False, 0
    for it in range(1, cfg.max_iterations + 1):
        q = pts @ t[:3, :3].T + t[:3, 3]
        rows, r = _match(q, target, offsets, cfg.max_correspondence)
        hit = rows >= 0
        matched = int(hit.sum())
        if matched < cfg.min_matches:
            return RegistrationResult(np.asarray(t_pred, dtype=np.float64).copy(), False, it, len(pts), matched,
                                      float("nan"), 0, False)
        w_sqrt = target.sqrt_info[rows[hit]]
        r = r[hit]
        sq = np.sum(r * r, axis=1)
        rmse = float(np.sqrt(np.mean(sq)))
        robust = 1.0 / (1.0 + sq / cfg.kernel_scale ** 2)  # Cauchy IRLS weights
        # J = W [R, -R [p]x] (right perturbation [rho, phi]), restricted to the estimated DOFs
        rot = t[:3, :3]
        jac = np.concatenate([w_sqrt @ rot, -w_sqrt @ rot @ _hat(pts[hit])], axis=2)[:, :, dofs]
        jw = (jac * robust[:, None, None]).reshape(-1, len(dofs))
        h_scan = jw.T @ jac.reshape(-1, len(dofs))
        g_scan = jw.T @ r.reshape(-1)
        # prior on the correction (first order): xi = log(T_pred^-1 T) restricted to dofs
        xi = pose_values((np.linalg.inv(t_pred) @ t)[None])[0][dofs]
        # scan information in units of the prior's; degenerate directions keep the prediction
        h_white = h_scan / np.outer(w_prior, w_prior)
        eigval, eigvec = np.linalg.eigh(h_white)
        keep = eigval >= cfg.degeneracy_ratio
        degenerate = int((~keep).sum())
        proj = eigvec[:, keep] @ eigvec[:, keep].T
        h_white = proj @ h_white @ proj
        g_white = proj @ (g_scan / w_prior)
        z = np.linalg.solve(h_white + np.eye(len(dofs)), -(g_white + w_prior * xi))
        step = np.zeros(6)
        step[dofs] = z / w_prior
        t = t @ pose_matrices(step[None])[0]
        if np.linalg.norm(step[:3]) < cfg.tolerance_translation and np.linalg.norm(step[3:]) < cfg.tolerance_rotation:
            converged = True
            break
    xi = pose_values((np.linalg.inv(t_pred) @ t)[None])[0][dofs]
    size = float(np.linalg.norm(w_prior * xi))
    info = np.zeros((6, 6))
    info[np.ix_(dofs, dofs)] = h_scan
    if size > cfg.max_correction_sigma:
        return RegistrationResult(np.asarray(t_pred, dtype=np.float64).copy(), False, it, len(pts), matched, rmse,
                                  degenerate, converged, True, size, info)
    return RegistrationResult(t, True, it, len(pts), matched, rmse, degenerate, converged, False, size, info)
