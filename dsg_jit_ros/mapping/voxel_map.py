"""The voxel map: point statistics per voxel in the map frame, and the surface model.

Each voxel (an integer cell of ``voxel_size`` metres, keyed by ``pack_keys``)
keeps the count, sum and sum of outer products of the points that fell into it,
taken relative to the cell's centre (so sums stay small and exact in float64).
Keyframes add their points here when they leave the sliding window (frozen, at
their final pose); the window adds its own keyframes' contributions on the fly
(``combine``).  From the statistics come the mean, the covariance and the
*surface information* of a voxel, the observation model shared by registration
and the window.  With ``lambda_i, u_i`` the eigenpairs of the points' covariance:

    Omega_l = sum_i u_i u_i^T / (point_sigma^2 + min(lambda_i, thickness^2)
                                  + slide * max(lambda_i - thickness^2, 0))    (map frame)

Directions in which the points spread less than ``thickness`` are surface normals
(across a wall: roughness and noise), stiff.  Along a wall the spread is the
cell's extent: a keyframe seeing part of the cell has its centroid slide along the
wall with the viewpoint, a bias of that size, so those directions are soft, by
``slide`` (0: centroids are exact; infinity: nothing along the surface, the
point-to-plane model of registration).  Voxels with fewer than ``min_points``
points have no reliable covariance: their spread is taken as a cube's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsg_jit_ros.geometry.sym3 import eigh3
from dsg_jit_ros.mapping.voxelize import pack_keys, unpack_keys
from dsg_jit_ros.world.sorted_lookup import sorted_positions


@dataclass(frozen=True)
class SurfaceConfig:
    """Observation model of voxel surfaces (metres)."""

    point_sigma: float = 0.03  # noise of a centroid across the surface (sensor noise)
    thickness: float = 0.03  # spreads below this are surface roughness, not extent
    slide: float = 1000.0  # share of a voxel's extent along its surface that counts as viewpoint bias
    min_points: int = 4  # fewer points: an isotropic spread (no normal)
    count_saturation: float = 5.0  # an observation of n points weighs n / (n + count_saturation)

    def __post_init__(self) -> None:
        if not (self.point_sigma > 0 and self.thickness >= 0 and self.slide >= 0 and self.count_saturation >= 0):
            raise ValueError("point_sigma must be > 0; thickness, slide and count_saturation >= 0")
        if self.min_points < 3:
            raise ValueError(f"min_points must be >= 3 (a covariance needs them), got {self.min_points}")


@dataclass(frozen=True)
class VoxelStats:
    """Point statistics of M voxels in the map frame: count, sum and sum of outer
    products of ``q - c`` with ``c`` each voxel's centre (m, m^2)."""

    count: np.ndarray  # (M,)
    first: np.ndarray  # (M, 3)
    second: np.ndarray  # (M, 3, 3)

    def __add__(self, other: "VoxelStats") -> "VoxelStats":
        return VoxelStats(self.count + other.count, self.first + other.first, self.second + other.second)

    @staticmethod
    def zeros(m: int) -> "VoxelStats":
        return VoxelStats(np.zeros(m), np.zeros((m, 3)), np.zeros((m, 3, 3)))

    def mean_offset(self) -> np.ndarray:
        """(M, 3) mean minus the voxel centre (zero for empty voxels)."""
        return self.first / np.maximum(self.count, 1e-300)[:, None]

    def covariance(self) -> np.ndarray:
        """(M, 3, 3) population covariance of the points (zero for empty voxels)."""
        n = np.maximum(self.count, 1e-300)[:, None, None]
        mu = self.mean_offset()
        return self.second / n - mu[:, :, None] * mu[:, None, :]


def voxel_centres(keys: np.ndarray, voxel_size: float) -> np.ndarray:
    """(M, 3) map-frame centres of packed voxel keys (m)."""
    return (unpack_keys(keys) + 0.5) * voxel_size


def _kron(rot: np.ndarray) -> np.ndarray:
    """``np.kron(rot, rot)`` (9, 9) of a 3x3 matrix, without np.kron's generic overhead."""
    return (rot[:, None, :, None] * rot[None, :, None, :]).reshape(9, 9)


def observation_stats(count, mean_body, scatter_body, t_map_body, centres) -> VoxelStats:
    """Map-frame statistics of M observations made from one keyframe.

    ``count`` (M,), ``mean_body`` (M, 3) and ``scatter_body`` (M, 3, 3) (sum of
    ``(p - mean)(p - mean)^T``) of each observation's points in the body frame;
    ``t_map_body`` (4, 4) the keyframe's pose; ``centres`` (M, 3) each voxel's centre.
    ``R S R^T`` of all observations is one (M, 9) x (9, 9) product (``R kron R``).
    """
    rot = np.asarray(t_map_body)[:3, :3]
    d = mean_body @ rot.T + t_map_body[:3, 3] - centres
    n = np.asarray(count, dtype=np.float64)
    m = len(n)
    second = (scatter_body.reshape(m, 9) @ _kron(rot).T).reshape(m, 3, 3)
    second += n[:, None, None] * d[:, :, None] * d[:, None, :]
    return VoxelStats(n, n[:, None] * d, second)


def observation_columns(count, mean_body, scatter_body, t_map_body, centres) -> np.ndarray:
    """``observation_stats`` laid out by component: (13, M) rows ``[count, first (3),
    second (9, row-major)]``, each row contiguous (for per-row sums over voxels); the
    same arguments, and the same numbers bit for bit."""
    st = observation_stats(count, mean_body, scatter_body, t_map_body, centres)
    m = len(st.count)
    out = np.empty((13, m))
    out[0] = st.count
    out[1:4] = st.first.T
    out[4:] = st.second.reshape(m, 9).T
    return out


def stats_from_columns(columns: np.ndarray) -> VoxelStats:
    """The ``VoxelStats`` of (13, M) ``observation_columns`` (or their sums)."""
    m = columns.shape[1]
    return VoxelStats(columns[0].copy(), columns[1:4].T.copy(), columns[4:].T.reshape(m, 3, 3).copy())


def surface_sqrt_information(stats: VoxelStats, voxel_size: float, cfg: SurfaceConfig) -> np.ndarray:
    """(M, 3, 3) map-frame ``W_l`` with ``W_l^T W_l = Omega_l`` (see module doc);
    ``cfg.slide`` may be ``inf`` (no information along surfaces: rank-deficient)."""
    cov = stats.covariance()
    cov = 0.5 * (cov + np.swapaxes(cov, 1, 2))
    cov[stats.count < cfg.min_points] = voxel_size ** 2 / 12.0 * np.eye(3)  # a cube's spread
    lam, vec = eigh3(cov)  # closed form, batched (LAPACK, one call per matrix, was ~5 ms per keyframe)
    lam = np.maximum(lam, 0.0)
    t2 = cfg.thickness ** 2
    extent = np.maximum(lam - t2, 0.0)
    with np.errstate(invalid="ignore"):
        spread = np.where(extent > 0, cfg.slide * extent, 0.0)  # inf * 0 -> 0
    var = cfg.point_sigma ** 2 + np.minimum(lam, t2) + spread
    return (1.0 / np.sqrt(var))[:, :, None] * np.swapaxes(vec, 1, 2)


def surface_information(stats: VoxelStats, voxel_size: float, cfg: SurfaceConfig) -> np.ndarray:
    """(M, 3, 3) map-frame surface information ``Omega_l`` of voxels (see module doc)."""
    w = surface_sqrt_information(stats, voxel_size, cfg)
    return np.swapaxes(w, 1, 2) @ w


def observation_weights(count: np.ndarray, cfg: SurfaceConfig) -> np.ndarray:
    """(M,) information scale of observations of ``count`` points, in (0, 1)."""
    n = np.asarray(count, dtype=np.float64)
    return n / (n + cfg.count_saturation)


class VoxelMap:
    """Frozen point statistics of every voxel seen so far (map frame), by packed key.

    Rows are appended as new voxels appear and never move; ``rows`` finds them
    with one sorted search (vectorised), so registration can look up thousands
    of cells per iteration.
    """

    def __init__(self, voxel_size: float):
        self.voxel_size = float(voxel_size)
        self._keys = np.zeros(0, dtype=np.int64)
        self._centres = np.zeros((0, 3))
        self._stats = VoxelStats.zeros(0)
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None  # (sorted keys, their rows)
        self._surface: dict[SurfaceConfig, tuple[np.ndarray, np.ndarray]] = {}  # cfg -> (sqrt info, valid)

    def __len__(self) -> int:
        return int(self._keys.shape[0])

    @property
    def keys(self) -> np.ndarray:
        return self._keys

    def rows(self, keys: np.ndarray) -> np.ndarray:
        """Row of each packed key, -1 where the map has no such voxel."""
        keys = np.asarray(keys, dtype=np.int64)
        if self._sorted is None:
            order = np.argsort(self._keys, kind="stable")
            self._sorted = (self._keys[order], order)
        sk, order = self._sorted
        if not len(sk):
            return np.full(keys.shape, -1, dtype=np.int64)
        pos, found = sorted_positions(sk, keys)
        return np.where(found, order[pos], -1)

    def add(self, keys: np.ndarray, stats: VoxelStats) -> None:
        """Accumulate statistics (relative to each voxel's centre) of ``keys`` (repeats allowed)."""
        keys = np.asarray(keys, dtype=np.int64)
        if not keys.size:
            return
        uniq, inverse = np.unique(keys, return_inverse=True)
        summed = VoxelStats.zeros(len(uniq))
        np.add.at(summed.count, inverse, stats.count)
        np.add.at(summed.first, inverse, stats.first)
        np.add.at(summed.second, inverse, stats.second)
        rows = self.rows(uniq)
        new = rows < 0
        if new.any():
            start = len(self)
            self._keys = np.concatenate([self._keys, uniq[new]])
            self._centres = np.concatenate([self._centres, voxel_centres(uniq[new], self.voxel_size)])
            self._stats = VoxelStats(np.concatenate([self._stats.count, np.zeros(new.sum())]),
                                     np.concatenate([self._stats.first, np.zeros((new.sum(), 3))]),
                                     np.concatenate([self._stats.second, np.zeros((new.sum(), 3, 3))]))
            rows[new] = start + np.arange(new.sum())
            self._sorted = None
        self._stats.count[rows] += summed.count
        self._stats.first[rows] += summed.first
        self._stats.second[rows] += summed.second
        # statistics taken out again (negative counts: ``subtract``) leave exact zeros, not rounding
        emptied = rows[self._stats.count[rows] <= 0]
        self._stats.count[emptied], self._stats.first[emptied], self._stats.second[emptied] = 0.0, 0.0, 0.0
        for sqrt, valid in self._surface.values():  # those rows' surfaces are stale
            valid[rows[rows < len(valid)]] = False

    def subtract(self, keys: np.ndarray, stats: VoxelStats) -> None:
        """Take statistics added before out again (the voxels stay, empty: count 0)."""
        self.add(keys, VoxelStats(-stats.count, -stats.first, -stats.second))

    def stats(self, keys: np.ndarray) -> VoxelStats:
        """Frozen statistics of ``keys`` (zeros for voxels the map does not have)."""
        rows = self.rows(keys)
        out = VoxelStats.zeros(len(rows))
        hit = rows >= 0
        out.count[hit] = self._stats.count[rows[hit]]
        out.first[hit] = self._stats.first[rows[hit]]
        out.second[hit] = self._stats.second[rows[hit]]
        return out

    def all_stats(self) -> VoxelStats:
        return self._stats

    def rows_near(self, position: np.ndarray, radius: float) -> np.ndarray:
        """Rows of the voxels whose centres are within ``radius`` (m) of ``position``."""
        return np.flatnonzero(np.sum((self._centres - position) ** 2, axis=1) <= radius ** 2)

    def surfaces(self, rows: np.ndarray, cfg: SurfaceConfig) -> np.ndarray:
        """(K, 3, 3) ``surface_sqrt_information`` of ``rows``, cached until their statistics change."""
        sqrt, valid = self._surface.get(cfg, (np.zeros((0, 3, 3)), np.zeros(0, dtype=bool)))
        if len(valid) < len(self):
            grow = len(self) - len(valid)
            sqrt = np.concatenate([sqrt, np.zeros((grow, 3, 3))])
            valid = np.concatenate([valid, np.zeros(grow, dtype=bool)])
            self._surface[cfg] = (sqrt, valid)
        stale = rows[~valid[rows]]
        if len(stale):
            st = self._stats
            sqrt[stale] = surface_sqrt_information(
                VoxelStats(st.count[stale], st.first[stale], st.second[stale]), self.voxel_size, cfg)
            valid[stale] = True
        return sqrt[rows]

    def means(self, keys: np.ndarray | None = None) -> np.ndarray:
        """(M, 3) map-frame means of ``keys`` (default all; NaN where unknown)."""
        keys = self._keys if keys is None else np.asarray(keys, dtype=np.int64)
        st = self.stats(keys)
        out = voxel_centres(keys, self.voxel_size) + st.mean_offset()
        out[st.count == 0] = np.nan
        return out


def packed(keys_xyz: np.ndarray) -> np.ndarray:
    """Packed int64 keys of (M, 3) integer cells; ValueError beyond pack_keys' range."""
    out = pack_keys(keys_xyz)
    if out is None:
        raise ValueError("voxel keys beyond +-2^20 cells from the map origin")
    return out
