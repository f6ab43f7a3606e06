"""Voxelising a point cloud into occupied cells with centroids (numpy).

Points are in the sensor/body frame, metres.  Non-finite points and points
outside ``[min_range, max_range]`` are dropped and counted, never silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VoxelConfig:
    """Voxel edge length and accepted range band (metres)."""

    size: float = 0.5  # edge length
    min_range: float = 0.3
    max_range: float = 30.0

    def __post_init__(self) -> None:
        if not (self.size > 0 and np.isfinite(self.size)):
            raise ValueError(f"voxel size must be positive, got {self.size}")
        if not (0 <= self.min_range < self.max_range):
            raise ValueError(f"need 0 <= min_range < max_range, got {self.min_range}, {self.max_range}")


@dataclass(frozen=True)
class VoxelCells:
    """Occupied voxels of one cloud: integer keys, centroids (body frame, m), counts."""

    keys: np.ndarray  # (M, 3) int64, floor(p / cfg.size)
    centroids: np.ndarray  # (M, 3) float64
    counts: np.ndarray  # (M,) int64 points per voxel
    dropped_nonfinite: int
    dropped_range: int

    def __len__(self) -> int:
        return int(self.counts.shape[0])


def range_filter(points: np.ndarray, min_range: float, max_range: float) -> tuple[np.ndarray, int, int]:
    """(finite points with range in [min_range, max_range] as float64, #non-finite, #out of range)."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {pts.shape}")
    finite = np.all(np.isfinite(pts), axis=1)
    rng = np.linalg.norm(np.where(finite[:, None], pts, 0.0), axis=1)
    in_range = finite & (rng >= min_range) & (rng <= max_range)
    return pts[in_range], int((~finite).sum()), int((finite & ~in_range).sum())


def voxelize(points: np.ndarray, cfg: VoxelConfig, origin: np.ndarray | None = None) -> VoxelCells:
    """Group (N, 3) points into voxels of ``cfg.size``; centroid per voxel.

    The range band is measured from ``origin`` (default: the frame's origin), so
    points already moved into the map frame can be filtered around the sensor.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {pts.shape}")
    o = np.zeros(3) if origin is None else np.asarray(origin, dtype=np.float64)
    kept, nonfinite, out_of_range = range_filter(pts - o, cfg.min_range, cfg.max_range)
    kept = kept + o
    if kept.shape[0] == 0:
        empty = np.zeros((0, 3))
        return VoxelCells(empty.astype(np.int64), empty, np.zeros(0, np.int64), nonfinite, out_of_range)
    keys = np.floor(kept / cfg.size).astype(np.int64)
    packed = pack_keys(keys)
    if packed is None:  # beyond +-2^20 voxels from the origin: the slow row-wise unique
        uniq, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    else:  # one int64 per key; its order is the keys' lexicographic order
        upacked, inverse, counts = np.unique(packed, return_inverse=True, return_counts=True)
        uniq = unpack_keys(upacked)
    inverse = inverse.reshape(-1)
    m = uniq.shape[0]
    sums = np.stack([np.bincount(inverse, weights=kept[:, i], minlength=m) for i in range(3)], axis=1)
    return VoxelCells(
        keys=uniq,
        centroids=sums / counts[:, None],
        counts=counts.astype(np.int64),
        dropped_nonfinite=nonfinite,
        dropped_range=out_of_range,
    )


_KEY_BITS = 21
_KEY_OFFSET = 1 << (_KEY_BITS - 1)
KEY_LIMIT = _KEY_OFFSET  # pack_keys packs integer keys k with -KEY_LIMIT <= k < KEY_LIMIT


def pack_keys(keys: np.ndarray) -> np.ndarray | None:
    """(M, 3) integer voxel keys -> (M,) int64, order-preserving (lexicographic);
    None if a key is beyond +-2^20 (over 10^5 km at 0.1 m voxels)."""
    k = np.asarray(keys, dtype=np.int64)
    if k.size and (k.min() < -_KEY_OFFSET or k.max() >= _KEY_OFFSET):
        return None
    k = k + _KEY_OFFSET
    return (k[:, 0] << (2 * _KEY_BITS)) | (k[:, 1] << _KEY_BITS) | k[:, 2]


def unpack_keys(packed: np.ndarray) -> np.ndarray:
    """Inverse of ``pack_keys``: (M,) int64 -> (M, 3) int64."""
    p = np.asarray(packed, dtype=np.int64)
    mask = (1 << _KEY_BITS) - 1
    return np.stack([p >> (2 * _KEY_BITS), (p >> _KEY_BITS) & mask, p & mask], axis=1) - _KEY_OFFSET
