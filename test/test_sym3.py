"""The closed-form batched 3x3 eigensolver (``geometry.sym3.eigh3``) against LAPACK
(``numpy.linalg.eigh``): eigenvalues, reconstruction ``V diag(lam) V^T`` and
orthonormality, on the cases a voxel's point covariance takes (flat discs, lines,
isotropic cubes, planar-mode zero rows) and badly conditioned ones."""

import numpy as np
import pytest

from dsg_jit_ros.geometry.sym3 import SMALL_BATCH, closed_form_eigh3, eigh3
from dsg_jit_ros.mapping.voxel_map import SurfaceConfig, VoxelStats, surface_sqrt_information

RNG = np.random.default_rng(7)
N = 4000


def _rotations(n):
    q, r = np.linalg.qr(RNG.normal(size=(n, 3, 3)))
    return q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]


def _with_spectrum(diag):
    rot = _rotations(N)
    return (rot * np.asarray(diag, float)) @ np.swapaxes(rot, 1, 2)


def _gram(k):
    x = RNG.normal(size=(N, 3, k))
    return x @ np.swapaxes(x, 1, 2)


CASES = {
    "random_spd": lambda: _gram(3),
    "indefinite": lambda: (lambda x: x + np.swapaxes(x, 1, 2))(RNG.normal(size=(N, 3, 3))),
    "rank_one_line": lambda: _gram(1),
    "rank_two_disc": lambda: _gram(2),
    "planar_zero_row": lambda: np.pad(_gram(2)[:, :2, :2], ((0, 0), (0, 1), (0, 1))),
    "pair_low": lambda: _with_spectrum([1.0, 1.0, 2.0]),
    "pair_high": lambda: _with_spectrum([1.0, 2.0, 2.0]),
    "triple": lambda: _with_spectrum([3.0, 3.0, 3.0]),
    "near_pair": lambda: _with_spectrum([1.0, 1.0 + 1e-9, 2.0]),
    "near_triple": lambda: _with_spectrum([3.0, 3.0, 3.0 + 1e-12]),
    "thin_wall": lambda: _with_spectrum([1e-12, 1e-6, 1.0]),
    "two_zero": lambda: _with_spectrum([0.0, 0.0, 1.0]),
    "tiny": lambda: 1e-30 * _gram(3),
    "huge": lambda: 1e30 * _gram(3),
    "diagonal_unsorted": lambda: np.tile(np.diag([2.0, -1.0, 3.0]), (5, 1, 1)),
    "zero": lambda: np.zeros((3, 3, 3)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_closed_form_matches_lapack(name):
    a = CASES[name]()
    lam, vec = closed_form_eigh3(a)
    ref, _ = np.linalg.eigh(a)
    scale = np.abs(a).reshape(len(a), 9).max(axis=1)[:, None] + 1e-300
    assert lam.shape == (len(a), 3) and vec.shape == (len(a), 3, 3)
    assert np.all(np.diff(lam, axis=1) >= 0.0)
    assert np.max(np.abs(lam - ref) / scale) < 1e-13
    rebuilt = vec @ (lam[:, :, None] * np.swapaxes(vec, 1, 2))
    assert np.max(np.abs(rebuilt - a).reshape(len(a), 9) / scale) < 1e-13
    assert np.max(np.abs(np.swapaxes(vec, 1, 2) @ vec - np.eye(3))) < 1e-14


def test_closed_form_reads_the_upper_triangle():
    a = _gram(3)[:50]
    lower_garbage = a.copy()
    lower_garbage[:, 1, 0] = lower_garbage[:, 2, 0] = lower_garbage[:, 2, 1] = 99.0
    for x, y in zip(closed_form_eigh3(a), closed_form_eigh3(lower_garbage)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("n", [0, 1, SMALL_BATCH - 1, SMALL_BATCH])
def test_eigh3_any_batch_size(n):
    """Small batches go to LAPACK, larger ones to the closed form: both decompose."""
    a = _gram(3)[:n]
    lam, vec = eigh3(a)
    assert lam.shape == (n, 3) and vec.shape == (n, 3, 3)
    np.testing.assert_allclose(vec @ (lam[:, :, None] * np.swapaxes(vec, 1, 2)), a, atol=1e-12)


@pytest.mark.parametrize("slide", [1000.0, np.inf])
def test_surface_information_unchanged_by_the_solver(slide):
    """The voxel surface model built on it equals the one built on LAPACK's eigh."""
    rng = np.random.default_rng(3)
    n = 3000
    pts = rng.normal(size=(n, 3)) * np.array([0.05, 0.04, 0.002])  # voxel means
    count = rng.integers(1, 30, size=n).astype(float)
    spread = _with_spectrum([1e-6, 4e-4, 2.5e-3])[:n]  # thin wall patches
    spread[: n // 3, 2, :] = spread[: n // 3, :, 2] = pts[: n // 3, 2] = 0.0  # planar mode: no z at all
    mean_outer = np.einsum("ni,nj->nij", pts, pts)
    stats = VoxelStats(count, count[:, None] * pts, count[:, None, None] * (spread + mean_outer))
    cfg = SurfaceConfig(slide=slide)
    w = surface_sqrt_information(stats, 0.2, cfg)
    omega = np.swapaxes(w, 1, 2) @ w
    cov = stats.covariance()
    cov = 0.5 * (cov + np.swapaxes(cov, 1, 2))
    cov[stats.count < cfg.min_points] = 0.2 ** 2 / 12.0 * np.eye(3)
    lam, vec = np.linalg.eigh(cov)
    lam = np.maximum(lam, 0.0)
    t2 = cfg.thickness ** 2
    extent = np.maximum(lam - t2, 0.0)
    var = cfg.point_sigma ** 2 + np.minimum(lam, t2) + np.where(extent > 0, cfg.slide * np.where(extent > 0, extent, 1.0), 0.0)
    ref = vec @ (1.0 / var[:, :, None] * np.swapaxes(vec, 1, 2))
    scale = np.abs(ref).reshape(n, 9).max(axis=1)[:, None, None] + 1e-300  # 0: a cube spread, slide inf
    assert np.max(np.abs(omega - ref) / scale) < 1e-12


def _cosine_formula_eigenvalues(a):
    """Counter-example: all three eigenvalues from the cosine formula (the textbook
    trigonometric solution), as a first version of ``closed_form_eigh3`` had them."""
    q = np.trace(a, axis1=1, axis2=2) / 3.0
    b = a - q[:, None, None] * np.eye(3)
    p = np.sqrt(np.einsum("nij,nij->n", b, b) / 6.0)
    r = np.clip(np.linalg.det(b / p[:, None, None]) / 2.0, -1.0, 1.0)
    phi = np.arccos(r) / 3.0
    roots = [q + 2.0 * p * np.cos(phi + 2.0 * np.pi * k / 3.0) for k in (1, 2, 0)]
    return np.stack(roots, axis=1)


def test_cosine_formula_alone_loses_half_the_digits_on_a_pair():
    """Why the pair's values come from a 2x2 problem and Rayleigh quotients: the cosine
    formula's arccos near +-1 turns rounding into ~1e-8 errors for a repeated pair (a
    voxel's disc), where the closed form above stays at rounding level."""
    a = CASES["pair_low"]()
    ref, _ = np.linalg.eigh(a)
    assert np.max(np.abs(_cosine_formula_eigenvalues(a) - ref)) > 1e-10
    assert np.max(np.abs(closed_form_eigh3(a)[0] - ref)) < 1e-13
