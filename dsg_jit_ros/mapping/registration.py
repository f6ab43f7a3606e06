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

Each iteration's correspondence search is one vectorised numpy pass: the cells
around every point are looked up in a dense table of the target's cells
(``mapping.cell_table``), and residuals are computed for every (point, cell)
candidate at once on the target's means and ``W`` stored component by component
(contiguous gathers).  On a planar log (~360 points after downsampling) an
iteration is a few dozen numpy calls of a few microseconds each, ~0.5 ms; a jitted
XLA version (points and voxels padded to 512 x 4096, the whole loop in one
``while_loop``) measured ~1 ms per iteration on the same inputs, its sorted key
search and gathers alone ~0.2 ms (an earlier one at 4096 x 2048 points: ~2.7 ms),
and it would compile once per capacity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dsg_jit_ros.mapping.cell_table import CellTable
from dsg_jit_ros.mapping.voxelize import pack_keys
from dsg_jit_ros.geometry.poses import pose_matrices, pose_values

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
    """Voxel surfaces to register against: packed keys, means (map, m) and square-root
    informations ``W`` (3x3, ``W^T W = Omega``); ``table`` finds a cell's row.  The rows'
    order does not matter: a point chooses among cells, and a cell has one row."""

    keys: np.ndarray  # (K,) int64, unique
    means: np.ndarray  # (K, 3)
    sqrt_info: np.ndarray  # (K, 3, 3)
    voxel_size: float
    table: CellTable = field(init=False, repr=False, compare=False)
    _columns: np.ndarray = field(init=False, repr=False, compare=False)  # (12, K + 1) means then W, by component

    def __post_init__(self) -> None:
        object.__setattr__(self, "table", CellTable(self.keys))
        # one more column of zeros: what a missing cell (row -1) reads
        object.__setattr__(self, "_columns", np.ascontiguousarray(np.concatenate(
            [np.concatenate([np.reshape(self.means, (-1, 3)), np.reshape(self.sqrt_info, (-1, 9))], axis=1),
             np.zeros((1, 12))]).T))

    @staticmethod
    def build(keys: np.ndarray, means: np.ndarray, sqrt_info: np.ndarray, voxel_size: float) -> "SurfaceTarget":
        """The target of the voxels that carry information (volumes with none are left out)."""
        informative = np.flatnonzero(np.abs(sqrt_info).sum(axis=(1, 2)) > 0)
        return SurfaceTarget(np.asarray(keys)[informative], means[informative], sqrt_info[informative], float(voxel_size))

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def match(self, q: np.ndarray, planar: bool, max_dist: float) -> tuple[np.ndarray, np.ndarray]:
        """For each (N, 3) map-frame point: row of its surface (-1: none within
        ``max_dist`` m of its mean) among the 2x2x2 (planar: 2x2) cells nearest to it
        (``_neighbour_offsets``), and its whitened residual ``W (q - mu)``
        ((N, 3), zero when unmatched).  The surface is the candidate with the least
        ``|W d|^2 + TIE_BREAK |d|^2 / voxel_size^2`` (first of equals), ``d = q - mu``."""
        offsets = _OFFSETS[bool(planar)]
        n, k = len(q), len(offsets)
        if not len(self) or not n:
            return np.full(n, -1, dtype=np.int64), np.zeros((n, 3))
        s = self.voxel_size
        # lower corner of the block of nearest cell centres (a single layer: the point's own)
        base = np.floor(q / s - _HALF[bool(planar)]).astype(np.int64)
        rows = self.table.block_rows(base, offsets).reshape(-1)  # (N k,) candidate cells, -1: not in the target
        # every candidate at once (a missing cell, row -1, reads the zero column after the target's)
        r, dist2 = self._residuals(np.repeat(q.T, k, axis=1), rows)
        near = (rows >= 0) & (dist2 <= max_dist ** 2)
        cost = np.where(near, np.einsum("in,in->n", r, r) + TIE_BREAK * dist2 / s ** 2, np.inf)
        best = np.arange(0, n * k, k) + np.argmin(cost.reshape(n, k), axis=1)  # flat index of each point's choice
        found = np.isfinite(cost[best])
        return np.where(found, rows[best], -1), np.where(found, r[:, best], 0.0).T

    def _residuals(self, p: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Whitened residuals ``W (p - mu)`` ((3, M)) and squared distances ``|p - mu|^2``
        ((M,), m^2) of map-frame points ``p`` ((3, M)) to the surfaces of ``rows`` (-1: the
        column of zeros): component by component on contiguous columns (``_columns``,
        one gather), each sum in the order of the first implementation (the same bits)."""
        g = self._columns.take(rows, axis=1)  # (12, M): mean, then W row-major
        d = p - g[:3]
        r = (g[3:].reshape(3, 3, -1) * d).sum(axis=1)  # r_i = (W_i0 d0 + W_i1 d1) + W_i2 d2
        return r, np.einsum("in,in->n", d, d)


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


def _offset_grid(planar: bool) -> np.ndarray:
    """The read-only (k, 3) 0/1 block of ``_neighbour_offsets``."""
    grid = np.stack(np.meshgrid([0, 1], [0, 1], [0] if planar else [0, 1], indexing="ij"), -1).reshape(-1, 3)
    grid = grid.astype(np.int64)
    grid.flags.writeable = False
    return grid


_OFFSETS = {planar: _offset_grid(planar) for planar in (False, True)}
_HALF = {planar: 0.5 * o.max(axis=0) for planar, o in _OFFSETS.items()}  # half the block's extent, in cells


def _neighbour_offsets(planar: bool) -> np.ndarray:
    """(k, 3) 0/1 offsets of the 2x2x2 (planar: 2x2) cells around a point's nearest corner (read-only)."""
    return _OFFSETS[bool(planar)]


def _normal_equations(a: np.ndarray, p: np.ndarray, r: np.ndarray, robust: np.ndarray,
                      dofs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Newton ``H = J^T D J`` and ``g = J^T D r`` over the estimated ``dofs`` of the
    tangent ``[rho, phi]`` (right perturbation of T_map_body) for m matched points:
    ``a = W R`` ((m, 3, 3): each surface's square-root information times the pose's
    rotation), ``p`` (m, 3) body-frame points, ``r`` (m, 3) whitened residuals and
    ``robust`` (m,) kernel weights ``D``.  The Jacobian of ``W (R p + t - mu)`` is
    ``[W R, -W R [p]x]`` (the product as the first implementation took it: the same bits)."""
    m = len(p)
    jac = np.empty((m, 3, 6))
    jac[:, :, :3] = a
    hat = np.zeros((m, 3, 3))  # [p]x
    hat[:, 0, 1], hat[:, 0, 2], hat[:, 1, 2] = -p[:, 2], p[:, 1], -p[:, 0]
    hat[:, 1, 0], hat[:, 2, 0], hat[:, 2, 1] = p[:, 2], -p[:, 1], p[:, 0]
    np.negative(a @ hat, out=jac[:, :, 3:])
    jac = jac[:, :, dofs]  # (the copy's memory layout, and so the products' rounding, as before)
    jw = (jac * robust[:, None, None]).reshape(-1, len(dofs))
    return jw.T @ jac.reshape(-1, len(dofs)), jw.T @ r.reshape(-1)


def register(points_body: np.ndarray, t_pred: np.ndarray, target: SurfaceTarget, prior_sigma: np.ndarray,
             cfg: RegistrationConfig, planar: bool = False) -> RegistrationResult:
    """Register an (N, 3) body-frame scan to ``target`` starting from ``t_pred`` (T_map_body).

    ``prior_sigma`` (6,): odometry sigmas of the correction ``[rho, phi]`` (m, rad).
    """
    pts = _downsample(np.asarray(points_body, dtype=np.float64), cfg.downsample)
    dofs = PLANAR_DOFS if planar else np.arange(6)
    w_prior = 1.0 / np.asarray(prior_sigma, dtype=np.float64)[dofs]
    t = np.asarray(t_pred, dtype=np.float64).copy()
    matched, rmse, degenerate, converged, it = 0, float("nan"), 0, False, 0
    t_pred_inv = np.linalg.inv(t_pred)
    w_outer = np.outer(w_prior, w_prior)
    for it in range(1, cfg.max_iterations + 1):
        rot = t[:3, :3]
        q = pts @ rot.T + t[:3, 3]
        rows, r = target.match(q, planar, cfg.max_correspondence)
        hit = np.flatnonzero(rows >= 0)
        matched = len(hit)
        if matched < cfg.min_matches:
            return RegistrationResult(np.asarray(t_pred, dtype=np.float64).copy(), False, it, len(pts), matched,
                                      float("nan"), 0, False)
        r = r[hit]
        sq = np.add.reduce(r * r, axis=1)
        rmse = math.sqrt(float(np.add.reduce(sq)) / matched)  # np.sqrt(np.mean(sq)), the same bits
        robust = 1.0 / (1.0 + sq / cfg.kernel_scale ** 2)  # Cauchy IRLS weights
        a = (target.sqrt_info[rows[hit]].reshape(-1, 3) @ rot).reshape(-1, 3, 3)  # W R
        h_scan, g_scan = _normal_equations(a, pts[hit], r, robust, dofs)
        # prior on the correction (first order): xi = log(T_pred^-1 T) restricted to dofs
        xi = pose_values((t_pred_inv @ t)[None])[0][dofs]
        # scan information in units of the prior's; degenerate directions keep the prediction
        h_white = h_scan / w_outer
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
    xi = pose_values((t_pred_inv @ t)[None])[0][dofs]
    size = float(np.linalg.norm(w_prior * xi))
    info = np.zeros((6, 6))
    info[np.ix_(dofs, dofs)] = h_scan
    if size > cfg.max_correction_sigma:
        return RegistrationResult(np.asarray(t_pred, dtype=np.float64).copy(), False, it, len(pts), matched, rmse,
                                  degenerate, converged, True, size, info)
    return RegistrationResult(t, True, it, len(pts), matched, rmse, degenerate, converged, False, size, info)
