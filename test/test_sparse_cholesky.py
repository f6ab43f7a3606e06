"""Host sparse Cholesky with reused symbolic analysis (``optimization.sparse_cholesky``).

The oracle is scipy's ``spsolve`` (SuperLU, no Cholesky, no shared code) on the
damped matrix assembled here from the same blocks by plain loops: a solve that
reuses an earlier analysis must equal both that oracle and a from-scratch
``BlockSystem`` on the same values.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

from dsg_jit_ros.optimization import sparse_cholesky as sc

DIM = 3  # entries per variable
N_VARS = 60


def random_pattern(rng, n_factors=150, padded=10):
    """One batch of binary factors (columns (cap, 2 DIM)) with ``padded`` unused slots,
    plus a unary batch on every variable (keeps H positive definite)."""
    pairs = np.stack([rng.permutation(N_VARS)[:2] for _ in range(n_factors + padded)])
    binary = (pairs[:, :, None] * DIM + np.arange(DIM)).reshape(len(pairs), 2 * DIM)
    unary = (np.arange(N_VARS)[:, None] * DIM + np.arange(DIM))
    live = [np.r_[np.ones(n_factors, bool), np.zeros(padded, bool)], np.ones(N_VARS, bool)]
    free = np.ones(N_VARS * DIM, bool)
    free[[4, 5, 17, 40]] = False
    return [binary, unary], live, free


def random_blocks(rng, columns):
    """J^T J of random Jacobians (garbage in unused slots is fine: they are masked out)."""
    out = []
    for cols in columns:
        d = cols.shape[1]
        jac = rng.normal(size=(cols.shape[0], d, d))
        out.append(np.einsum("cki,ckj->cij", jac, jac))
    return out


def oracle_solve(n, free, columns, live, blocks, lam, rhs, mode, min_diag=1e-6):
    """Dense assembly by loops, damping, restriction to free entries, scipy spsolve."""
    h = np.zeros((n, n))
    for cols, used, blk in zip(columns, live, blocks):
        for c, u, b in zip(cols, used, blk):
            if u:
                h[np.ix_(c, c)] += b
    idx = np.flatnonzero(free)
    h = h[np.ix_(idx, idx)]
    d = np.maximum(np.diag(h), min_diag) if mode == "marquardt" else np.ones(idx.size)
    a = sp.csc_matrix(h + np.diag(lam * d))
    out = np.zeros(n)
    out[idx] = spsolve(a, rhs[idx])
    return out


@pytest.mark.parametrize("mode", sc.DAMPING_MODES)
def test_reused_analysis_equals_scratch_and_spsolve(mode):
    rng = np.random.default_rng(3)
    columns, live, free = random_pattern(rng)
    n = N_VARS * DIM
    sc.clear_cache()
    before = sc.analyses
    for step, lam in enumerate([1e-3, 1e-1, 10.0]):
        blocks = random_blocks(rng, columns)
        rhs = rng.normal(size=n)
        system = sc.system_for(n, free, columns, live)
        assert sc.analyses == before + 1  # analysed on the first solve only
        reused = system.solve(blocks, lam, rhs, mode)
        scratch = sc.BlockSystem(n, free, columns, live).solve(blocks, lam, rhs, mode)
        expected = oracle_solve(n, free, columns, live, blocks, lam, rhs, mode)
        np.testing.assert_allclose(reused, expected, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(reused, scratch, rtol=1e-12, atol=1e-14)
        assert np.all(reused[~free] == 0.0)
    assert system.factorizations == 3


def test_matrix_is_the_assembled_lower_triangle():
    rng = np.random.default_rng(5)
    columns, live, free = random_pattern(rng)
    n = N_VARS * DIM
    system = sc.BlockSystem(n, free, columns, live)
    colptr, rowind, _ = system.matrix.CCS
    np.testing.assert_array_equal(np.asarray(rowind).ravel(), system.rows)
    np.testing.assert_array_equal(np.diff(np.asarray(colptr).ravel()), np.bincount(system.cols, minlength=system.nf))
    blocks = random_blocks(rng, columns)
    h = system.csc(system.lower_values(blocks)).toarray()
    expected = np.zeros((n, n))
    for cols, used, blk in zip(columns, live, blocks):
        for c, u, b in zip(cols, used, blk):
            if u:
                expected[np.ix_(c, c)] += b
    idx = np.flatnonzero(free)
    np.testing.assert_allclose(h, expected[np.ix_(idx, idx)], rtol=1e-14, atol=1e-12)


def test_changed_pattern_is_analysed_again():
    rng = np.random.default_rng(7)
    columns, live, free = random_pattern(rng)
    n = N_VARS * DIM
    sc.clear_cache()
    first = sc.system_for(n, free, columns, live)
    assert sc.system_for(n, free, [c.copy() for c in columns], [m.copy() for m in live]) is first
    grown = [m.copy() for m in live]
    grown[0][-1] = True  # one more live factor
    second = sc.system_for(n, free, columns, grown)
    assert second is not first
    moved = [c.copy() for c in columns]
    moved[0][0] = moved[0][1]  # a factor on other variables
    assert sc.system_for(n, free, moved, live) not in (first, second)
    fixed = free.copy()
    fixed[0] = False
    assert sc.system_for(n, fixed, columns, live) not in (first, second)
    blocks = random_blocks(rng, columns)
    rhs = rng.normal(size=n)
    np.testing.assert_allclose(second.solve(blocks, 0.1, rhs),
                               oracle_solve(n, free, columns, grown, blocks, 0.1, rhs, "marquardt"),
                               rtol=1e-9, atol=1e-12)


def test_indefinite_matrix_gives_nan():
    rng = np.random.default_rng(9)
    columns, live, free = random_pattern(rng)
    n = N_VARS * DIM
    system = sc.BlockSystem(n, free, columns, live)
    blocks = [-b for b in random_blocks(rng, columns)]
    out = system.solve(blocks, 1e-3, rng.normal(size=n))
    assert np.all(np.isnan(out[free])) and np.all(out[~free] == 0.0)
    # the same system still solves a positive definite matrix afterwards
    blocks = random_blocks(rng, columns)
    rhs = rng.normal(size=n)
    np.testing.assert_allclose(system.solve(blocks, 1e-3, rhs),
                               oracle_solve(n, free, columns, live, blocks, 1e-3, rhs, "marquardt"),
                               rtol=1e-9, atol=1e-12)
