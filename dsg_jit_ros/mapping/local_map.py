"""The voxel statistics the window works with: frozen map + the window's own keyframes.

The frozen ``VoxelMap`` holds the points of keyframes that left the window, at
their final poses.  The window's keyframes contribute their observations (per
voxel: count, body-frame mean and scatter) placed by their *current* poses, which
change at every solve; ``place`` re-places those whose pose changed (one small
matrix product per keyframe) and sums them per voxel (one ``bincount`` per statistic, the
grouping kept while the keyframes' cells are the same).  ``stats`` adds both for any voxels, ``target`` builds the registration
model of the voxels within sensor range of a pose (frozen surfaces cached until
their statistics change; the window's part, which does not depend on the pose, until
the window's or the frozen statistics change, so ``prepare_target`` can build it
ahead, off a keyframe's latency).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dsg_jit_ros.mapping.association import CellObservations, recell
from dsg_jit_ros.mapping.registration import SurfaceTarget
from dsg_jit_ros.mapping.voxel_map import (SurfaceConfig, VoxelMap, VoxelStats, observation_columns, observation_stats,
                                           stats_from_columns, surface_sqrt_information, voxel_centres)
from dsg_jit_ros.world.sorted_lookup import sorted_positions


class _Placed:
    """One keyframe's observations (``cells``, with their voxels' centres) and their
    map-frame statistics at ``pose``, by component (``observation_columns``)."""

    def __init__(self, cells: CellObservations, voxel_size: float):
        self.cells = cells
        self.centres = voxel_centres(cells.keys, voxel_size)  # (M, 3) map frame
        self.pose: np.ndarray | None = None
        self.columns: np.ndarray | None = None  # (13, M) at pose

    def place(self, pose: np.ndarray) -> np.ndarray:
        """(13, M) map-frame statistics at ``pose`` (recomputed only when it moved)."""
        if self.pose is None or not np.array_equal(self.pose, pose):
            self.pose = np.array(pose, dtype=np.float64)
            c = self.cells
            self.columns = observation_columns(c.count, c.mean_body, c.scatter_body, self.pose, self.centres)
        return self.columns


class LocalMap:
    """Frozen voxel statistics plus the window keyframes' observations (map frame)."""

    def __init__(self, voxel_size: float, surface: SurfaceConfig):
        self.frozen = VoxelMap(voxel_size)
        self.voxel_size = float(voxel_size)
        # registration's model: point-to-plane, nothing along surfaces
        self.registration_surface = dataclasses.replace(surface, slide=np.inf)
        self._placed: dict[int, _Placed] = {}  # id(cells) -> that keyframe's placed observations
        # the window's observations summed per voxel: sorted unique keys, (13, U) sums
        self._window_keys = np.zeros(0, dtype=np.int64)
        self._window_sums = np.zeros((13, 0))
        self._groups: tuple[list, np.ndarray] | None = None  # (cells placed, each row's voxel among the keys)
        self._window_part: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # target rows of the window's voxels

    def place(self, observations: list[tuple[CellObservations, np.ndarray]]) -> None:
        """Set the window's observations: (cells, T_map_body) per keyframe.  A keyframe
        placed before at the same pose (the same ``cells`` object) is not recomputed, and
        the voxels' grouping is kept while the keyframes' cells are the same."""
        self._window_part = None
        cache, parts = {}, []
        for cells, pose in observations:
            if cells is None or not len(cells):
                continue
            hit = self._placed.get(id(cells))
            if hit is None or hit.cells is not cells:
                hit = _Placed(cells, self.voxel_size)
            hit.place(pose)
            cache[id(cells)] = hit
            parts.append(hit)
        self._placed = cache
        if not parts:
            self._window_keys, self._window_sums, self._groups = np.zeros(0, dtype=np.int64), np.zeros((13, 0)), None
            return
        same = (self._groups is not None and len(self._groups[0]) == len(parts)
                and all(a is b.cells for a, b in zip(self._groups[0], parts)))
        if not same:
            self._window_keys, inverse = np.unique(np.concatenate([p.cells.keys for p in parts]), return_inverse=True)
            self._groups = ([p.cells for p in parts], inverse.reshape(-1))
        inverse, u = self._groups[1], len(self._window_keys)
        columns = np.concatenate([p.columns for p in parts], axis=1)
        # per-voxel sums, keyframe by keyframe in window order
        self._window_sums = np.stack([np.bincount(inverse, columns[i], u) for i in range(13)])

    def freeze(self, cells: CellObservations, t_map_body: np.ndarray) -> None:
        """Add a keyframe leaving the window to the frozen map at its final pose."""
        self._window_part = None
        if cells is not None and len(cells):
            self.frozen.add(cells.keys, observation_stats(cells.count, cells.mean_body, cells.scatter_body,
                                                          t_map_body, voxel_centres(cells.keys, self.voxel_size)))

    def unfreeze(self, cells: CellObservations, t_map_body: np.ndarray) -> None:
        """Take a keyframe frozen by ``freeze(cells, t_map_body)`` out of the frozen map again."""
        self._window_part = None
        if cells is not None and len(cells):
            self.frozen.subtract(cells.keys, observation_stats(cells.count, cells.mean_body, cells.scatter_body,
                                                               t_map_body, voxel_centres(cells.keys, self.voxel_size)))

    def rebuild(self, frozen: list[tuple[CellObservations | None, np.ndarray, np.ndarray]],
                base: VoxelMap | None = None) -> None:
        """A new frozen map from keyframes' observations (cells, T_map_body, keying pose),
        on top of the statistics of ``base`` (e.g. the global graph's retired submaps)."""
        self._window_part = None
        self.frozen = placed_map(frozen, self.voxel_size)
        if base is not None and len(base):
            self.frozen.add(base.keys, base.all_stats())

    def stats(self, keys: np.ndarray) -> VoxelStats:
        """Statistics of ``keys`` (sorted, unique): frozen plus the placed window observations."""
        keys = np.asarray(keys, dtype=np.int64)
        window = VoxelStats.zeros(len(keys))
        u = len(self._window_keys)
        if u and len(keys):
            pos, hit = sorted_positions(self._window_keys, keys)
            sums = stats_from_columns(self._window_sums[:, pos[hit]])
            window.count[hit], window.first[hit], window.second[hit] = sums.count, sums.first, sums.second
        return self.frozen.stats(keys) + window

    def means(self, keys: np.ndarray, stats: VoxelStats) -> np.ndarray:
        """(K, 3) map-frame means of ``keys`` with ``stats``."""
        return voxel_centres(keys, self.voxel_size) + stats.mean_offset()

    def prepare_target(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The registration target's rows of the window's voxels (keys, map-frame means,
        square-root informations, from all their points): built now unless the
        statistics are unchanged since the last build."""
        if self._window_part is None:
            keys = self._window_keys
            stats = self.stats(keys)
            self._window_part = (keys, self.means(keys, stats),
                                 surface_sqrt_information(stats, self.voxel_size, self.registration_surface))
        return self._window_part

    def target(self, position: np.ndarray, radius: float) -> SurfaceTarget:
        """Registration target: voxels within ``radius`` (m) of ``position`` (frozen ones
        from the frozen map, those the window observes from all their points)."""
        window_keys, window_means, window_sqrt = self.prepare_target()
        rows = self.frozen.rows_near(position, radius + self.voxel_size)
        frozen_keys = self.frozen.keys[rows]
        # window_keys are sorted (np.unique): one sorted search instead of np.isin's sort of both
        outside = ~sorted_positions(window_keys, frozen_keys)[1] if len(window_keys) else np.ones(len(rows), dtype=bool)
        rows, frozen_keys = rows[outside], frozen_keys[outside]
        frozen_stats = self.frozen.all_stats()
        keys = np.concatenate([frozen_keys, window_keys])
        means = np.concatenate([
            voxel_centres(frozen_keys, self.voxel_size) + VoxelStats(
                frozen_stats.count[rows], frozen_stats.first[rows], frozen_stats.second[rows]).mean_offset(),
            window_means])
        sqrt = np.concatenate([self.frozen.surfaces(rows, self.registration_surface), window_sqrt])
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
