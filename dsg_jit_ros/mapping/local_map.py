"""The voxel statistics the window works with: frozen map + the window's own keyframes.

The frozen ``VoxelMap`` holds the points of keyframes that left the window, at
their final poses.  The window's keyframes contribute their observations (per
voxel: count, body-frame mean and scatter) placed by their *current* poses, which
change at every solve; ``place`` re-places those whose pose changed (one small
matrix product per keyframe).  ``stats`` sums both for any voxels, ``target`` builds the registration
model of the voxels within sensor range of a pose (frozen surfaces cached until
their statistics change).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dsg_jit_ros.mapping.association import CellObservations, recell
from dsg_jit_ros.mapping.registration import SurfaceTarget
from dsg_jit_ros.mapping.voxel_map import (SurfaceConfig, VoxelMap, VoxelStats, observation_stats, sum_by_key,
                                           surface_sqrt_information, voxel_centres)


class LocalMap:
    """Frozen voxel statistics plus the window keyframes' observations (map frame)."""

    def __init__(self, voxel_size: float, surface: SurfaceConfig):
        self.frozen = VoxelMap(voxel_size)
        self.voxel_size = float(voxel_size)
        # registration's model: point-to-plane, nothing along surfaces
        self.registration_surface = dataclasses.replace(surface, slide=np.inf)
        self._keys = np.zeros(0, dtype=np.int64)  # window observations, one row each
        self._stats = VoxelStats.zeros(0)
        self._placed: dict[int, tuple] = {}  # id(cells) -> (cells, T_map_body, map-frame stats)

    def place(self, observations: list[tuple[CellObservations, np.ndarray]]) -> None:
        """Set the window's observations: (cells, T_map_body) per keyframe.  A keyframe
        placed before at the same pose (the same ``cells`` object) is not recomputed."""
        cache, parts = {}, []
        for cells, pose in observations:
            if cells is None or not len(cells):
                continue
            hit = self._placed.get(id(cells))
            if hit is None or hit[0] is not cells or not np.array_equal(hit[1], pose):
                hit = (cells, np.array(pose), observation_stats(
                    cells.count, cells.mean_body, cells.scatter_body, pose, voxel_centres(cells.keys, self.voxel_size)))
            cache[id(cells)] = hit
            parts.append((cells.keys, hit[2]))
        self._placed = cache
        if not parts:
            self._keys, self._stats = np.zeros(0, dtype=np.int64), VoxelStats.zeros(0)
            return
        self._keys = np.concatenate([k for k, _ in parts])
        self._stats = VoxelStats(np.concatenate([p.count for _, p in parts]),
                                 np.concatenate([p.first for _, p in parts]),
                                 np.concatenate([p.second for _, p in parts]))

    def freeze(self, cells: CellObservations, t_map_body: np.ndarray) -> None:
        """Add a keyframe leaving the window to the frozen map at its final pose."""
        if cells is not None and len(cells):
            self.frozen.add(cells.keys, observation_stats(cells.count, cells.mean_body, cells.scatter_body,
                                                          t_map_body, voxel_centres(cells.keys, self.voxel_size)))

    def unfreeze(self, cells: CellObservations, t_map_body: np.ndarray) -> None:
        """Take a keyframe frozen by ``freeze(cells, t_map_body)`` out of the frozen map again."""
        if cells is not None and len(cells):
            self.frozen.subtract(cells.keys, observation_stats(cells.count, cells.mean_body, cells.scatter_body,
                                                               t_map_body, voxel_centres(cells.keys, self.voxel_size)))

    def rebuild(self, frozen: list[tuple[CellObservations | None, np.ndarray, np.ndarray]],
                base: VoxelMap | None = None) -> None:
        """A new frozen map from keyframes' observations (cells, T_map_body, keying pose),
        on top of the statistics of ``base`` (e.g. the global graph's retired submaps)."""
        self.frozen = placed_map(frozen, self.voxel_size)
        if base is not None and len(base):
            self.frozen.add(base.keys, base.all_stats())

    def stats(self, keys: np.ndarray) -> VoxelStats:
        """Statistics of ``keys`` (sorted, unique): frozen plus the placed window observations."""
        return self.frozen.stats(keys) + sum_by_key(self._keys, self._stats, keys)

    def means(self, keys: np.ndarray, stats: VoxelStats) -> np.ndarray:
        """(K, 3) map-frame means of ``keys`` with ``stats``."""
        return voxel_centres(keys, self.voxel_size) + stats.mean_offset()

    def target(self, position: np.ndarray, radius: float) -> SurfaceTarget:
        """Registration target: voxels within ``radius`` (m) of ``position`` (frozen ones
        from the frozen map, those the window observes from all their points)."""
        rows = self.frozen.rows_near(position, radius + self.voxel_size)
        frozen_keys = self.frozen.keys[rows]
        window_keys = np.unique(self._keys)
        outside = ~np.isin(frozen_keys, window_keys, assume_unique=True)
        rows, frozen_keys = rows[outside], frozen_keys[outside]
        frozen_stats = self.frozen.all_stats()
        win_stats = self.stats(window_keys)
        keys = np.concatenate([frozen_keys, window_keys])
        means = np.concatenate([
            voxel_centres(frozen_keys, self.voxel_size) + VoxelStats(
                frozen_stats.count[rows], frozen_stats.first[rows], frozen_stats.second[rows]).mean_offset(),
            self.means(window_keys, win_stats)])
        sqrt = np.concatenate([self.frozen.surfaces(rows, self.registration_surface),
                               surface_sqrt_information(win_stats, self.voxel_size, self.registration_surface)])
        return SurfaceTarget.build(keys, means, sqrt, self.voxel_size)


def placed_map(observations: list[tuple[CellObservations | None, np.ndarray, np.ndarray]],
               voxel_size: float) -> VoxelMap:
    """A voxel map of keyframes' observations (cells, T, T_key): each placed by ``T`` and
    keyed as its association would have keyed it under ``T_key`` (cells keep their
    voxels when ``T_key`` is the pose they were associated under; after a correction
    ``C``, ``T_key = C T_assoc``)."""
    keys, parts = [], []
    for cells, pose, t_key in observations:
        if cells is not None and len(cells):
            keyed = recell(cells, t_key, voxel_size)
            keys.append(keyed.keys)
            parts.append(observation_stats(keyed.count, keyed.mean_body, keyed.scatter_body, pose,
                                           voxel_centres(keyed.keys, voxel_size)))
    vmap = VoxelMap(voxel_size)
    if parts:
        vmap.add(np.concatenate(keys), VoxelStats(np.concatenate([p.count for p in parts]),
                                                  np.concatenate([p.first for p in parts]),
                                                  np.concatenate([p.second for p in parts])))
    return vmap
