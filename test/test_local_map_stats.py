"""The local map's window statistics (per-voxel sums of the window keyframes'
observations, placed by their current poses) and its registration target, against
the first implementation (``observation_stats`` of every placed keyframe summed per
voxel at each query, kept here as the oracle): the same numbers bit for bit, as
keyframes move, join and leave."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from dsg_jit_ros.mapping.association import associate
from dsg_jit_ros.mapping.local_map import LocalMap
from dsg_jit_ros.mapping.registration import SurfaceTarget
from dsg_jit_ros.mapping.voxel_map import (SurfaceConfig, VoxelStats, observation_columns, observation_stats,
                                           stats_from_columns, surface_sqrt_information, voxel_centres)
from dsg_jit_ros.mapping.voxelize import VoxelConfig

SIZE = 0.5
SURFACE = SurfaceConfig()


def _pose(rng, scale=1.0):
    t = np.eye(4)
    t[:3, :3] = Rotation.from_rotvec(rng.normal(0, 0.3 * scale, 3)).as_matrix()
    t[:3, 3] = rng.normal(0, 2.0 * scale, 3)
    return t


def _oracle_sum_by_key(keys, stats, into):
    """The first implementation (voxel_map.sum_by_key): rows of ``stats`` summed per key of
    ``into`` (sorted, unique) with one bincount over (row, field)."""
    out = VoxelStats.zeros(len(into))
    if not len(into) or not len(keys):
        return out
    pos = np.minimum(np.searchsorted(into, keys), len(into) - 1)
    hit = into[pos] == keys
    pos, m = pos[hit], len(into)
    data = np.concatenate([stats.count[hit, None], stats.first[hit], stats.second[hit].reshape(-1, 9)], axis=1)
    sums = np.bincount((pos[:, None] * 13 + np.arange(13)).ravel(), data.ravel(), m * 13).reshape(m, 13)
    return VoxelStats(sums[:, 0], sums[:, 1:4], sums[:, 4:].reshape(m, 3, 3))


def _oracle_stats(lm: LocalMap, placed, keys):
    """Frozen statistics plus each placed keyframe's observation_stats summed per voxel."""
    parts = [observation_stats(c.count, c.mean_body, c.scatter_body, p, voxel_centres(c.keys, SIZE)) for c, p in placed]
    rows = np.concatenate([c.keys for c, _ in placed])
    stats = VoxelStats(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("count", "first", "second")))
    return lm.frozen.stats(keys) + _oracle_sum_by_key(rows, stats, keys)


def _assert_stats_close(a: VoxelStats, b: VoxelStats):
    """Equal bit for bit: the same sums in the same order."""
    np.testing.assert_array_equal(a.count, b.count)
    np.testing.assert_array_equal(a.first, b.first)
    np.testing.assert_array_equal(a.second, b.second)


def _scene(rng):
    world = np.concatenate([np.c_[rng.uniform(-8, 8, (3000, 2)), rng.normal(0, 0.02, 3000)],  # floor
                            np.c_[rng.uniform(-8, 8, 3000), np.full(3000, 4.0) + rng.normal(0, 0.02, 3000),
                                  rng.uniform(0, 3, 3000)],  # a wall
                            rng.uniform(-8, 8, (1500, 3))])  # clutter
    poses = [_pose(rng) for _ in range(7)]
    cells = [associate((world - t[:3, 3]) @ t[:3, :3], t, VoxelConfig(SIZE, 0.0, 100.0)) for t in poses]
    return cells, poses


def test_window_statistics_equal_direct_sums_as_keyframes_move_join_and_leave():
    rng = np.random.default_rng(0)
    cells, poses = _scene(rng)
    lm = LocalMap(SIZE, SURFACE)
    lm.freeze(cells[0], poses[0])
    lm.freeze(cells[1], poses[1])
    keys = np.unique(np.concatenate([c.keys for c in cells] + [np.array([123456789], dtype=np.int64)]))
    window = [(c, t) for c, t in zip(cells[2:6], poses[2:6])]
    lm.place(window)
    _assert_stats_close(lm.stats(keys), _oracle_stats(lm, window, keys))
    # the solve moved every pose a little
    window = [(c, t @ _pose(rng, 0.01)) for c, t in window]
    lm.place(window)
    _assert_stats_close(lm.stats(keys), _oracle_stats(lm, window, keys))
    # one keyframe leaves (frozen), one joins, one is re-associated (new cells object, same keys)
    lm.freeze(*window[0])
    c3 = cells[3]
    reassociated = type(c3)(c3.keys.copy(), c3.count, c3.mean_body, c3.scatter_body, 0, 0, 0)
    window = [window[1], (reassociated, window[2][1]), window[3], (cells[6], poses[6])]
    lm.place(window)
    _assert_stats_close(lm.stats(keys), _oracle_stats(lm, window, keys))
    subset = keys[::3]
    _assert_stats_close(lm.stats(subset), _oracle_stats(lm, window, subset))
    # an empty window: the frozen map alone
    lm.place([])
    _assert_stats_close(lm.stats(keys), lm.frozen.stats(keys))


def test_registration_target_equals_the_oracle():
    rng = np.random.default_rng(1)
    cells, poses = _scene(rng)
    lm = LocalMap(SIZE, SURFACE)
    for c, t in zip(cells[:3], poses[:3]):
        lm.freeze(c, t)
    window = list(zip(cells[3:], poses[3:]))
    lm.place(window)
    centre, radius = np.array([1.0, -0.5, 0.2]), 6.0
    target = lm.target(centre, radius)
    # oracle: frozen voxels near the centre that the window does not observe, from the frozen
    # map; the window's voxels from all their points; point-to-plane surfaces
    window_keys = np.unique(np.concatenate([c.keys for c, _ in window]))
    near = lm.frozen.keys[np.sum((voxel_centres(lm.frozen.keys, SIZE) - centre) ** 2, axis=1) <= (radius + SIZE) ** 2]
    near = near[~np.isin(near, window_keys)]
    keys = np.concatenate([near, window_keys])
    stats = VoxelStats(*(np.concatenate([getattr(lm.frozen.stats(near), f), getattr(_oracle_stats(lm, window, window_keys), f)])
                         for f in ("count", "first", "second")))
    surface = SurfaceConfig(SURFACE.point_sigma, SURFACE.thickness, np.inf, SURFACE.min_points)
    expect = SurfaceTarget.build(keys, voxel_centres(keys, SIZE) + stats.mean_offset(),
                                 surface_sqrt_information(stats, SIZE, surface), SIZE)
    np.testing.assert_array_equal(target.keys, expect.keys)
    np.testing.assert_array_equal(target.means, expect.means)
    np.testing.assert_array_equal(target.sqrt_info, expect.sqrt_info)


def test_observation_columns_equal_observation_stats():
    rng = np.random.default_rng(2)
    cells, poses = _scene(rng)
    c, t = cells[0], poses[1]
    centres = voxel_centres(c.keys, SIZE)
    expect = observation_stats(c.count, c.mean_body, c.scatter_body, t, centres)
    got = stats_from_columns(observation_columns(c.count, c.mean_body, c.scatter_body, t, centres))
    _assert_stats_close(got, expect)
