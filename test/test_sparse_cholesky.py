"""Host sparse Cholesky with reused pattern and analysis (``optimization.sparse_cholesky``),
for both backends (``optimization.sparse_backend``): CHOLMOD through CVXOPT and cholespy.

The oracle is scipy's ``spsolve`` (SuperLU, no Cholesky, no shared code) on the
damped matrix assembled here from the same blocks by plain loops: a solve that
reuses an earlier analysis must equal both that oracle and a from-scratch
``BlockSystem`` on the same values.  Both backends are installed where the tests
run (cvxopt from requirements-test.txt): every check runs for each, none is
skipped; a backend that does not import is simulated by hiding its module.
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

from dsg_jit_ros.optimization import sparse_backend
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


def dense_hessian(n, columns, live, blocks):
    """(n, n) sum of the live blocks at their columns, assembled by loops."""
    h = np.zeros((n, n))
    for cols, used, blk in zip(columns, live, blocks):
        for c, u, b in zip(cols, used, blk):
            if u:
                h[np.ix_(c, c)] += b
    return h


def oracle_solve(n, free, columns, live, blocks, lam, rhs, mode, min_diag=1e-6):
    """Dense assembly by loops, damping, restriction to free entries, scipy spsolve."""
    h = dense_hessian(n, columns, live, blocks)
    idx = np.flatnonzero(free)
    h = h[np.ix_(idx, idx)]
    d = np.maximum(np.diag(h), min_diag) if mode == "marquardt" else np.ones(idx.size)
    a = sp.csc_matrix(h + np.diag(lam * d))
    out = np.zeros(n)
    out[idx] = spsolve(a, rhs[idx])
    return out


@pytest.fixture(params=sparse_backend.BACKENDS)
def backend(request):
    """Each backend by name (a missing one fails the test: both are test requirements)."""
    return request.param


@pytest.mark.parametrize("mode", sc.DAMPING_MODES)
def test_reused_analysis_equals_scratch_and_spsolve(mode, backend):
    rng = np.random.default_rng(3)
    columns, live, free = random_pattern(rng)
    n = N_VARS * DIM
    sc.clear_cache()
    before = sc.analyses
    runs = sc.runs[backend]
    for step, lam in enumerate([1e-3, 1e-1, 10.0]):
        blocks = random_blocks(rng, columns)
        rhs = rng.normal(size=n)
        system = sc.system_for(n, free, columns, live, backend)
        assert system.backend == backend
        assert sc.analyses == before + 1  # analysed on the first solve only
        reused = system.solve(blocks, lam, rhs, mode)
        scratch = sc.BlockSystem(n, free, columns, live, backend).solve(blocks, lam, rhs, mode)
        expected = oracle_solve(n, free, columns, live, blocks, lam, rhs, mode)
        np.testing.assert_allclose(reused, expected, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(reused, scratch, rtol=1e-12, atol=1e-14)
        assert np.all(reused[~free] == 0.0)
    assert system.factorizations == 3
    assert sc.runs[backend] == runs + 6  # reused and scratch, 3 each: what ran is recorded


def test_backends_agree():
    rng = np.random.default_rng(4)
    columns, live, free = random_pattern(rng)
    n = N_VARS * DIM
    blocks = random_blocks(rng, columns)
    rhs = rng.normal(size=n)
    cholmod, cholespy = (sc.BlockSystem(n, free, columns, live, b).solve(blocks, 0.1, rhs, "identity")
                         for b in ("cholmod", "cholespy"))
    np.testing.assert_allclose(cholmod, cholespy, rtol=1e-10, atol=1e-13)


def test_matrix_is_the_assembled_lower_triangle(backend):
    rng = np.random.default_rng(5)
    columns, live, free = random_pattern(rng)
    n = N_VARS * DIM
    system = sc.BlockSystem(n, free, columns, live, backend)
    np.testing.assert_array_equal(np.diff(system.colptr), np.bincount(system.cols, minlength=system.nf))
    assert np.all(np.diff(system.cols) >= 0) and np.all(system.rows >= system.cols)  # column-major lower triangle
    if backend == "cholmod":  # the CVXOPT matrix CHOLMOD factorises has this structure
        colptr, rowind, _ = system.matrix.CCS
        np.testing.assert_array_equal(np.asarray(rowind).ravel(), system.rows)
        np.testing.assert_array_equal(np.asarray(colptr).ravel(), system.colptr)
    blocks = random_blocks(rng, columns)
    h = system.csc(system.lower_values(blocks)).toarray()
    expected = dense_hessian(n, columns, live, blocks)
    idx = np.flatnonzero(free)
    np.testing.assert_allclose(h, expected[np.ix_(idx, idx)], rtol=1e-14, atol=1e-12)


def test_column_twice_in_a_factor_and_unsorted_columns(backend):
    """A factor listing one column twice (its cross entries both land on one entry of
    H) and factors whose columns are not in increasing order: the assembled matrix
    equals a sum by scalar loops, entry by entry (``np.add.at`` semantics)."""
    rng = np.random.default_rng(17)
    columns, live, free = random_pattern(rng)
    n = N_VARS * DIM
    columns[0] = columns[0][:, ::-1].copy()  # decreasing columns in every binary factor
    columns[0][1, 4] = columns[0][1, 1]  # one column twice in factor 1
    blocks = random_blocks(rng, columns)
    system = sc.BlockSystem(n, free, columns, live, backend)
    expected = np.zeros((n, n))
    for cols, used, blk in zip(columns, live, blocks):
        for c, u, b in zip(cols, used, blk):
            for i in range(len(c)):
                for j in range(len(c)):
                    expected[c[i], c[j]] += b[i, j] if u else 0.0
    idx = np.flatnonzero(free)
    np.testing.assert_allclose(system.csc(system.lower_values(blocks)).toarray(), expected[np.ix_(idx, idx)],
                               rtol=1e-14, atol=1e-12)


def test_changed_pattern_is_analysed_again(backend):
    rng = np.random.default_rng(7)
    columns, live, free = random_pattern(rng)
    n = N_VARS * DIM
    sc.clear_cache()
    first = sc.system_for(n, free, columns, live, backend)
    assert sc.system_for(n, free, [c.copy() for c in columns], [m.copy() for m in live], backend) is first
    other = next(b for b in sparse_backend.BACKENDS if b != backend)
    assert sc.system_for(n, free, columns, live, other).backend == other  # the backend is part of the key
    grown = [m.copy() for m in live]
    grown[0][-1] = True  # one more live factor
    second = sc.system_for(n, free, columns, grown, backend)
    assert second is not first
    moved = [c.copy() for c in columns]
    moved[0][0] = moved[0][1]  # a factor on other variables
    assert sc.system_for(n, free, moved, live, backend) not in (first, second)
    fixed = free.copy()
    fixed[0] = False
    assert sc.system_for(n, fixed, columns, live, backend) not in (first, second)
    blocks = random_blocks(rng, columns)
    rhs = rng.normal(size=n)
    np.testing.assert_allclose(second.solve(blocks, 0.1, rhs),
                               oracle_solve(n, free, columns, grown, blocks, 0.1, rhs, "marquardt"),
                               rtol=1e-9, atol=1e-12)


def test_indefinite_matrix_gives_nan(backend):
    rng = np.random.default_rng(9)
    columns, live, free = random_pattern(rng)
    n = N_VARS * DIM
    system = sc.BlockSystem(n, free, columns, live, backend)
    blocks = [-b for b in random_blocks(rng, columns)]
    out = system.solve(blocks, 1e-3, rng.normal(size=n))
    assert np.all(np.isnan(out[free])) and np.all(out[~free] == 0.0)
    # the same system still solves a positive definite matrix afterwards
    blocks = random_blocks(rng, columns)
    rhs = rng.normal(size=n)
    np.testing.assert_allclose(system.solve(blocks, 1e-3, rhs),
                               oracle_solve(n, free, columns, live, blocks, 1e-3, rhs, "marquardt"),
                               rtol=1e-9, atol=1e-12)


def test_zero_entries_are_left_out_of_the_solve(backend):
    """Exact zeros (a factor whose block is all zero) change nothing: same solution
    as the pattern without that factor."""
    rng = np.random.default_rng(11)
    columns, live, free = random_pattern(rng)
    n = N_VARS * DIM
    blocks = random_blocks(rng, columns)
    blocks[0][0] = 0.0
    rhs = rng.normal(size=n)
    without = [m.copy() for m in live]
    without[0][0] = False
    np.testing.assert_allclose(sc.BlockSystem(n, free, columns, live, backend).solve(blocks, 0.1, rhs),
                               sc.BlockSystem(n, free, columns, without, backend).solve(blocks, 0.1, rhs),
                               rtol=1e-10, atol=1e-13)


# ---- backend choice -------------------------------------------------------------------

@pytest.fixture
def hide(monkeypatch):
    """hide(backend): its modules no longer import (as if not installed)."""
    def hide(name):
        modules = {"cholmod": ("cvxopt", "cvxopt.cholmod"), "cholespy": ("cholespy",)}[name]
        for module in modules:
            monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    monkeypatch.delenv(sparse_backend.ENV_VAR, raising=False)
    return hide


def test_auto_takes_cholmod_when_cvxopt_imports_else_cholespy(hide, monkeypatch):
    assert sparse_backend.resolve("auto") == "cholmod"  # cvxopt is a test requirement
    monkeypatch.setenv(sparse_backend.ENV_VAR, "cholespy")
    assert sparse_backend.resolve("auto") == "cholespy"  # the variable forces one
    assert sparse_backend.resolve("cholmod") == "cholmod"  # an argument wins over the variable
    monkeypatch.setenv(sparse_backend.ENV_VAR, "auto")
    hide("cholmod")
    assert not sparse_backend.available("cholmod")
    assert sparse_backend.resolve("auto") == "cholespy"
    columns, live, free = random_pattern(np.random.default_rng(13))
    assert sc.BlockSystem(N_VARS * DIM, free, columns, live).backend == "cholespy"


@pytest.mark.parametrize("forced_by", ["argument", "environment"])
@pytest.mark.parametrize("missing", sparse_backend.BACKENDS)
def test_forcing_an_unavailable_backend_is_a_clear_error(hide, monkeypatch, missing, forced_by):
    hide(missing)
    if forced_by == "environment":
        monkeypatch.setenv(sparse_backend.ENV_VAR, missing)
    choice = missing if forced_by == "argument" else "auto"
    package = "cvxopt" if missing == "cholmod" else "cholespy"
    with pytest.raises(sparse_backend.SparseBackendUnavailable,
                       match=rf"backend '{missing}' is not available.*needs {package} \(pip install {package}==") as err:
        sparse_backend.resolve(choice)
    assert ("DSG_JIT_ROS_SPARSE_BACKEND" in str(err.value)) == (forced_by == "environment")
    assert isinstance(err.value, ImportError)
    columns, live, free = random_pattern(np.random.default_rng(13))
    with pytest.raises(sparse_backend.SparseBackendUnavailable, match=package):
        sc.BlockSystem(N_VARS * DIM, free, columns, live, choice)


def test_no_backend_at_all_and_unknown_names(hide, monkeypatch):
    hide("cholmod")
    hide("cholespy")
    with pytest.raises(sparse_backend.SparseBackendUnavailable, match="no sparse Cholesky backend imports"):
        sparse_backend.resolve("auto")
    with pytest.raises(ValueError, match="one of auto, cholmod, cholespy"):
        sparse_backend.resolve("umfpack")
    monkeypatch.setenv(sparse_backend.ENV_VAR, "umfpack")
    with pytest.raises(ValueError, match="DSG_JIT_ROS_SPARSE_BACKEND='umfpack'"):
        sparse_backend.resolve("auto")


def test_the_backend_is_logged_once(hide, monkeypatch, caplog):
    monkeypatch.setattr(sparse_backend, "_logged", set())
    with caplog.at_level(logging.INFO, logger=sparse_backend.__name__):
        sparse_backend.resolve("auto")
        sparse_backend.resolve("auto")
    lines = [r.getMessage() for r in caplog.records if r.name == sparse_backend.__name__]
    assert lines == ["sparse Cholesky backend: cholmod (CHOLMOD through CVXOPT, analysed once per sparsity "
                     "pattern) (auto: cvxopt imports)"]
