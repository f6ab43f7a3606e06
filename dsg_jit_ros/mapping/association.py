"""Association: a body-frame cloud under a map pose -> per-voxel observations.

The cloud is cut into the map's voxels under ``T_map_body`` (so the same world
cell seen from two keyframes gets the same key); each occupied cell becomes one
observation: its point count, and the mean and scatter of its points in the
*body* frame (so the window can re-place it when the keyframe's pose moves).
Points that are not finite, outside ``[min_range, max_range]`` from the sensor,
or in cells with fewer than ``min_points`` points are dropped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsg_jit_ros.mapping.voxelize import VoxelConfig, pack_keys, range_filter


@dataclass(frozen=True)
class CellObservations:
    """Occupied voxels of one cloud: packed keys, counts, body-frame mean and scatter."""

    keys: np.ndarray  # (M,) int64 packed voxel keys (map frame)
    count: np.ndarray  # (M,) points per voxel
    mean_body: np.ndarray  # (M, 3) m, body frame
    scatter_body: np.ndarray  # (M, 3, 3) m^2: sum of (p - mean)(p - mean)^T
    dropped_nonfinite: int
    dropped_range: int
    dropped_sparse: int  # points in cells below min_points

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def select(self, idx: np.ndarray) -> "CellObservations":
        """The observations at ``idx`` (drop counts kept)."""
        return CellObservations(self.keys[idx], self.count[idx], self.mean_body[idx], self.scatter_body[idx],
                                self.dropped_nonfinite, self.dropped_range, self.dropped_sparse)


def associate(points_body: np.ndarray, t_map_body: np.ndarray, voxel: VoxelConfig,
              min_points: int = 1) -> CellObservations:
    """Group (N, 3) body-frame points by their map-frame voxel under ``t_map_body``."""
    pts = np.asarray(points_body, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {pts.shape}")
    kept, nonfinite, out_of_range = range_filter(pts, voxel.min_range, voxel.max_range)
    world = kept @ t_map_body[:3, :3].T + t_map_body[:3, 3]
    packed = pack_keys(np.floor(world / voxel.size).astype(np.int64)) if len(kept) else np.zeros(0, np.int64)
    if packed is None:  # cells beyond +-2^20 voxels from the map origin cannot be keyed
        return _empty(nonfinite, out_of_range + len(kept))
    keys, inverse, count = np.unique(packed, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    m = len(keys)
    sums = np.stack([np.bincount(inverse, weights=kept[:, i], minlength=m) for i in range(3)], axis=1)
    mean = sums / np.maximum(count, 1)[:, None]
    d = kept - mean[inverse]
    scatter = np.stack([np.bincount(inverse, weights=d[:, i] * d[:, j], minlength=m)
                        for i in range(3) for j in range(3)], axis=1).reshape(m, 3, 3)
    dense = count >= min_points
    return CellObservations(keys[dense], count[dense].astype(np.float64), mean[dense], scatter[dense],
                            nonfinite, out_of_range, int(count[~dense].sum()))


def _empty(nonfinite: int, out_of_range: int) -> CellObservations:
    z = np.zeros(0)
    return CellObservations(np.zeros(0, np.int64), z, np.zeros((0, 3)), np.zeros((0, 3, 3)), nonfinite, out_of_range, 0)


def recell(cells: CellObservations, t_map_body: np.ndarray, voxel_size: float) -> CellObservations:
    """``cells`` re-keyed under a new pose ``t_map_body``: each observation goes to the voxel
    its mean falls in; observations meeting in one voxel are pooled (counts added,
    means weighted, scatters combined with the spread of their means)."""
    if not len(cells):
        return cells
    world = cells.mean_body @ t_map_body[:3, :3].T + t_map_body[:3, 3]
    packed = pack_keys(np.floor(world / voxel_size).astype(np.int64))
    if packed is None:
        raise ValueError("voxel keys beyond +-2^20 cells from the map origin")
    keys, inverse = np.unique(packed, return_inverse=True)
    inverse = inverse.reshape(-1)
    m, n = len(keys), cells.count
    count = np.bincount(inverse, n, m)
    mean = np.stack([np.bincount(inverse, n * cells.mean_body[:, i], m) for i in range(3)], axis=1) / count[:, None]
    d = cells.mean_body - mean[inverse]
    spread = cells.scatter_body + n[:, None, None] * d[:, :, None] * d[:, None, :]
    scatter = np.stack([np.bincount(inverse, spread[:, i, j], m) for i in range(3) for j in range(3)],
                       axis=1).reshape(m, 3, 3)
    return CellObservations(keys, count, mean, scatter, cells.dropped_nonfinite, cells.dropped_range,
                            cells.dropped_sparse)
