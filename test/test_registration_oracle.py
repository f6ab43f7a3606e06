"""Scan-to-map registration (``mapping.registration``, vectorised correspondence search
over a dense cell table) against the first implementation kept here as the oracle:
the same poses (bit for bit), the same matches, iterations and flags, in 3D and planar
mode, on walls, a corridor, far-off and empty targets; and the cell table against a
sorted search of packed keys."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dsg_jit_ros.mapping import cell_table
from dsg_jit_ros.mapping.association import associate
from dsg_jit_ros.mapping.cell_table import CellTable
from dsg_jit_ros.mapping.registration import (PLANAR_DOFS, TIE_BREAK, RegistrationConfig, SurfaceTarget,
                                              _downsample, _neighbour_offsets, register)
from dsg_jit_ros.mapping.voxel_map import SurfaceConfig, VoxelMap, observation_stats, surface_sqrt_information, voxel_centres
from dsg_jit_ros.mapping.voxelize import VoxelConfig, pack_keys, unpack_keys
from dsg_jit_ros.geometry.poses import pose_matrices, pose_values


# ---------------------------------------------------------------- the oracle: the first implementation ---
def _oracle_rows(keys_sorted: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if not len(keys_sorted):
        return np.full(keys.shape, -1, dtype=np.int64)
    pos = np.minimum(np.searchsorted(keys_sorted, keys), len(keys_sorted) - 1)
    return np.where(keys_sorted[pos] == keys, pos, -1)


def _oracle_hat(v):
    out = np.zeros(v.shape[:-1] + (3, 3))
    out[..., 0, 1], out[..., 0, 2] = -v[..., 2], v[..., 1]
    out[..., 1, 0], out[..., 1, 2] = v[..., 2], -v[..., 0]
    out[..., 2, 0], out[..., 2, 1] = -v[..., 1], v[..., 0]
    return out


def _oracle_match(q, target, offsets, max_dist):
    s = target.voxel_size
    base = np.floor(q / s - 0.5 * offsets.max(axis=0)).astype(np.int64)
    cells = base[:, None, :] + offsets[None, :, :]
    keys = pack_keys(cells.reshape(-1, 3))
    if keys is None:
        return np.full(len(q), -1), np.zeros((len(q), 3))
    order = np.argsort(target.keys)  # the target's rows in any order
    rows = _oracle_rows(target.keys[order], keys)
    rows = np.where(rows >= 0, order[rows], -1).reshape(len(q), -1)
    pi, ki = np.nonzero(rows >= 0)
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
    out_r[found] = r[pair[idx[found], best[found]]]
    return np.where(found, rows[idx, best], -1), out_r


def _oracle_register(points_body, t_pred, target, prior_sigma, cfg, planar=False):
    """(T, used, iterations, matched, rmse, degenerate, converged, rejected, information)."""
    pts = _downsample(np.asarray(points_body, dtype=np.float64), cfg.downsample)
    dofs = PLANAR_DOFS if planar else np.arange(6)
    w_prior = 1.0 / np.asarray(prior_sigma, dtype=np.float64)[dofs]
    offsets = _neighbour_offsets(planar)
    t = np.asarray(t_pred, dtype=np.float64).copy()
    matched, rmse, degenerate, converged, it = 0, float("nan"), 0, False, 0
    for it in range(1, cfg.max_iterations + 1):
        q = pts @ t[:3, :3].T + t[:3, 3]
        rows, r = _oracle_match(q, target, offsets, cfg.max_correspondence)
        hit = rows >= 0
        matched = int(hit.sum())
        if matched < cfg.min_matches:
            return t_pred, False, it, matched, float("nan"), 0, False, False, None
        w_sqrt = target.sqrt_info[rows[hit]]
        r = r[hit]
        sq = np.sum(r * r, axis=1)
        rmse = float(np.sqrt(np.mean(sq)))
        robust = 1.0 / (1.0 + sq / cfg.kernel_scale ** 2)
        rot = t[:3, :3]
        jac = np.concatenate([w_sqrt @ rot, -w_sqrt @ rot @ _oracle_hat(pts[hit])], axis=2)[:, :, dofs]
        jw = (jac * robust[:, None, None]).reshape(-1, len(dofs))
        h_scan = jw.T @ jac.reshape(-1, len(dofs))
        g_scan = jw.T @ r.reshape(-1)
        xi = pose_values((np.linalg.inv(t_pred) @ t)[None])[0][dofs]
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
    rejected = size > cfg.max_correction_sigma
    return (t_pred if rejected else t), not rejected, it, matched, rmse, degenerate, converged, rejected, info


# ---------------------------------------------------------------- scenes ---
SIZE = 0.3


def _pose(x=0.0, y=0.0, yaw=0.0, z=0.0, roll=0.0, pitch=0.0):
    t = np.eye(4)
    t[:3, :3] = Rotation.from_euler("ZYX", [yaw, pitch, roll]).as_matrix()
    t[:3, 3] = [x, y, z]
    return t


def _room(rng, planar: bool, corridor: bool = False) -> np.ndarray:
    """World points (m): walls of a room with a pillar (or a corridor), 3D with a floor."""
    s = np.arange(-10, 10, 0.02)
    if corridor:
        walls = np.concatenate([np.c_[s, np.full_like(s, -1.2), 0 * s], np.c_[s, np.full_like(s, 1.2), 0 * s]])
    else:
        a = np.linspace(0, 2 * np.pi, 150)
        walls = np.concatenate([np.c_[s[:450] / 2, np.full(450, -3.0), np.zeros(450)],
                                np.c_[s[:450] / 2, np.full(450, 3.0), np.zeros(450)],
                                np.c_[np.full(300, -4.5), np.linspace(-3, 3, 300), np.zeros(300)],
                                np.c_[np.full(300, 4.5), np.linspace(-3, 3, 300), np.zeros(300)],
                                np.c_[1 + 0.3 * np.cos(a), 0.3 * np.sin(a), np.zeros(150)]])
    if planar:
        return walls
    world = np.concatenate([walls + [0, 0, z] for z in np.arange(0.0, 2.0, 0.15)])
    return np.concatenate([world, np.c_[rng.uniform(-4.5, 4.5, (6000, 2)), np.zeros(6000)]])


def _target(world: np.ndarray, slide: float = np.inf) -> SurfaceTarget:
    cells = associate(world, np.eye(4), VoxelConfig(SIZE, 0.0, 100.0))
    vmap = VoxelMap(SIZE)
    vmap.add(cells.keys, observation_stats(cells.count, cells.mean_body, cells.scatter_body, np.eye(4),
                                           voxel_centres(cells.keys, SIZE)))
    sqrt = surface_sqrt_information(vmap.all_stats(), SIZE, SurfaceConfig(0.03, 0.03, slide))
    return SurfaceTarget.build(vmap.keys, vmap.means(), sqrt, SIZE)


def _assert_same(points, t_pred, target, prior, cfg, planar):
    new = register(points, t_pred, target, prior, cfg, planar=planar)
    t, used, it, matched, rmse, degenerate, converged, rejected, info = _oracle_register(
        points, t_pred, target, prior, cfg, planar)
    assert (new.used, new.iterations, new.matched, new.degenerate, new.converged, new.rejected) == (
        used, it, matched, degenerate, converged, rejected)
    # the same operations in the same order: the same bits (the requirement is 1e-9)
    np.testing.assert_array_equal(new.t_map_body, t)
    if used or rejected:
        assert new.rmse == rmse
        np.testing.assert_array_equal(new.information, info)
    return new


PRIOR = np.array([0.05] * 3 + [0.02] * 3)


@pytest.mark.parametrize("planar", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_registration_equals_the_oracle_in_a_room(planar, seed):
    rng = np.random.default_rng(seed)
    world = _room(rng, planar)
    target = _target(world)
    truth = _pose(rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(-0.5, 0.5))
    scan = world[rng.random(len(world)) < 0.5]
    scan = (scan - truth[:3, 3]) @ truth[:3, :3] + rng.normal(0, 0.01, scan.shape) * [1, 1, 0 if planar else 1]
    scan = np.concatenate([scan, rng.uniform(-8, 8, (200, 3)) * [1, 1, 0 if planar else 0.3]])  # clutter
    predicted = truth @ _pose(0.12, -0.08, 0.05)
    for downsample in (0.0, 0.1):
        cfg = RegistrationConfig(max_correspondence=0.5, downsample=downsample)
        res = _assert_same(scan, predicted, target, PRIOR * 10, cfg, planar)
        assert res.used and res.matched > 100


def test_registration_equals_the_oracle_in_a_corridor_and_when_rejected():
    rng = np.random.default_rng(4)
    target = _target(_room(rng, True, corridor=True))
    truth = _pose(1.0, 0.1, 0.02)
    world = _room(rng, True, corridor=True)
    scan = (world - truth[:3, 3]) @ truth[:3, :3]
    scan = scan[np.linalg.norm(scan, axis=1) < 8.0] + rng.normal(0, 0.01, (1, 3)) * [1, 1, 0]
    res = _assert_same(scan, truth @ _pose(0.3, 0.15, 0.04), target, PRIOR, RegistrationConfig(max_correspondence=0.5),
                       True)
    assert res.degenerate == 1
    # a tight prior: the correction is beyond max_correction_sigma, the prediction is kept
    res = _assert_same(scan, truth @ _pose(0.0, 0.15, 0.04), target, PRIOR / 20,
                       RegistrationConfig(max_correspondence=0.5, max_correction_sigma=1.0), True)
    assert res.rejected


def test_registration_equals_the_oracle_without_matches():
    rng = np.random.default_rng(5)
    target = _target(_room(rng, False))
    scan = rng.uniform(-1, 1, (500, 3))
    far = _pose(500.0, -300.0, 1.0)  # the scan lands nowhere near the map
    res = _assert_same(scan, far, target, PRIOR, RegistrationConfig(), False)
    assert not res.used and res.matched == 0
    empty = SurfaceTarget.build(np.zeros(0, dtype=np.int64), np.zeros((0, 3)), np.zeros((0, 3, 3)), SIZE)
    res = register(scan, np.eye(4), empty, PRIOR, RegistrationConfig())
    assert not res.used and res.matched == 0


@pytest.mark.parametrize("dense", [True, False])
def test_cell_table_equals_a_sorted_search(dense, monkeypatch):
    """Both the dense table and the sorted fallback (a box beyond MAX_TABLE_CELLS) give each
    queried cell its row, -1 for cells absent, outside the box, or beyond pack_keys' range."""
    rng = np.random.default_rng(6)
    if not dense:
        monkeypatch.setattr(cell_table, "MAX_TABLE_CELLS", 10)
    cells = np.unique(rng.integers(-40, 40, (3000, 3)), axis=0)
    keys = np.sort(pack_keys(cells))
    table = CellTable(keys)
    assert (table._table is not None) == dense
    queries = np.concatenate([rng.integers(-45, 45, (5000, 3)), unpack_keys(keys[:100]),
                              [[1 << 22, 0, 0], [0, -(1 << 22), 5]]])
    expect = np.full(len(queries), -1)
    packable = np.all(np.abs(queries) < (1 << 20), axis=1)
    expect[packable] = _oracle_rows(keys, pack_keys(queries[packable]))
    np.testing.assert_array_equal(table.rows(queries), expect)
    np.testing.assert_array_equal(table.rows(queries.reshape(-1, 2, 3)), expect.reshape(-1, 2))
    # a block of cells per point, as registration asks
    offsets = _neighbour_offsets(False)
    base = queries[:-2]
    block = base[:, None, :] + offsets[None]
    np.testing.assert_array_equal(table.block_rows(base, offsets),
                                  _oracle_rows(keys, pack_keys(block.reshape(-1, 3))).reshape(len(base), -1))
    assert (CellTable(np.zeros(0, dtype=np.int64)).block_rows(base, offsets) == -1).all()

