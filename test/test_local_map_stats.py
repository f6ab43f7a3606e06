"""The local map's window statistics (per-voxel sums of the window keyframes'
observations, placed by their current poses) and its registration target, against
direct sums of ``observation_stats`` per voxel (the first implementation, kept here
as the oracle), as keyframes move, join and leave."""

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
    out = VoxelStats.zeros(len(into))
    for i, k in enumerate(into):
        rows = keys == k
        out.count[i], out.first[i], out.second[i] = (stats.count[rows].sum(), stats.first[rows].sum(axis=0),
                                                    stats.second[rows].sum(axis=0))
    return out


def _oracle_stats(lm: LocalMap, placed, keys):
    """Frozen statistics plus each placed keyframe's observation_stats summed per voxel."""
    parts = [observation_stats(c.count, c.mean_body, c.scatter_body, p, voxel_centres(c.keys, SIZE)) for c, p in placed]
    rows = np.concatenate([c.keys for c, _ in placed])
    stats = VoxelStats(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("count", "first", "second")))
    return lm.frozen.stats(keys) + _oracle_sum_by_key(rows, stats, keys)


def _assert_stats_close(a: VoxelStats, b: VoxelStats):
    np.testing.assert_array_equal(a.count, b.count)
    np.testing.assert_allclose(a.first, b.first, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a.second, b.second, rtol=1e-12, atol=1e-12)


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
    np.testing.assert_allclose(target.means, expect.means, rtol=0, atol=1e-12)
    # W is defined up to the sign of each row (eigenvector signs): compare W^T W
    info = np.swapaxes(target.sqrt_info, 1, 2) @ target.sqrt_info
    expect_info = np.swapaxes(expect.sqrt_info, 1, 2) @ expect.sqrt_info
    np.testing.assert_allclose(info, expect_info, rtol=1e-9, atol=1e-9 * np.abs(expect_info).max())


def test_observation_columns_equal_observation_stats():
    rng = np.random.default_rng(2)
    cells, poses = _scene(rng)
    c, t = cells[0], poses[1]
    centres = voxel_centres(c.keys, SIZE)
    expect = observation_stats(c.count, c.mean_body, c.scatter_body, t, centres)
    got = stats_from_columns(observation_columns(c.count, np.ascontiguousarray(c.mean_body.T),
                                                 np.ascontiguousarray(c.scatter_body.reshape(-1, 9).T), t,
                                                 np.ascontiguousarray(centres.T)))
    _assert_stats_close(got, expect)
