"""Host sparse Cholesky of block-structured normal equations, analysed once per pattern.

The damped normal equations of a factor graph, ``(H + lam D) d = rhs`` with
``H = sum_f P_f^T B_f P_f`` (one dense symmetric ``D_f x D_f`` block ``B_f = J_f^T J_f``
per factor at its state columns), keep the same sparsity for every LM iteration of
one graph: only the values and the damping change.  ``BlockSystem`` does the
structural work once for a sparsity pattern:

* numbering of the free state entries (fixed components and unused slots are left
  out of the system: their step is zero);
* the lower triangle of ``H`` in compressed-column form (one sort of the blocks'
  entries by their place in it), and per batch a sparse matrix summing the raveled
  blocks into its values (duplicates summed);
* with the ``cholmod`` backend, CHOLMOD's symbolic analysis (fill-reducing
  ordering, supernodal structure) through CVXOPT's ``cholmod.symbolic``.

Each solve is then one sparse mat-vec per batch, the damping on the diagonal and
the factorisation: with ``cholmod``, CHOLMOD's numeric supernodal factorisation
(``cholmod.numeric``) and two triangular solves; with ``cholespy``, ordering,
analysis and factorisation of the lower triangle from scratch (exact-zero entries
left out).  Which backend runs is decided by ``optimization.sparse_backend``
(CVXOPT is GPL: it is used when installed, never required).  ``system_for``
keeps the last few systems keyed by their pattern (the factors' state columns,
which factors are live, which entries are free) and backend, so a graph whose
structure changes (the online global graph growing) is re-analysed only when it
does.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter, OrderedDict

import numpy as np
import scipy.sparse as sp

from dsg_jit_ros.optimization import sparse_backend

DAMPING_MODES = ("marquardt", "identity")
_CACHE_SIZE = 8


class BlockSystem:
    """Sparsity pattern, scatter map and (``cholmod``) symbolic factorisation of one block system.

    Args:
      n: state size.
      free: (n,) bool, entries that take part in the solve.
      columns: per batch, (cap, D) int state columns of each factor's block (any order;
        a column may repeat).
      live: per batch, (cap,) bool, factors that are used (padding is not).
      backend: ``cholmod`` or ``cholespy`` (SparseBackendUnavailable if it does not
        import), or ``auto`` (``sparse_backend.resolve``); the one used is ``self.backend``.
    """

    def __init__(self, n: int, free: np.ndarray, columns, live, backend: str = "auto") -> None:
        self.backend = backend if backend in sparse_backend.BACKENDS else sparse_backend.resolve(backend)
        self._solver = sparse_backend.load(self.backend)
        free = np.asarray(free, dtype=bool).reshape(n)
        self.n = n
        self.free_index = np.flatnonzero(free)
        nf = self.free_index.size
        self.nf = nf
        number = np.full(n, -1, dtype=np.int64)
        number[self.free_index] = np.arange(nf)
        rows, cols, sources, sizes = [], [], [], []
        for batch_cols, used in zip(columns, live):
            r, c, src = _lower_block_entries(number, np.asarray(batch_cols), used)
            rows.append(r)
            cols.append(c)
            sources.append(src + sum(sizes))
            cap, d = np.shape(batch_cols)
            sizes.append(cap * d * d)
        self.block_size = total = sum(sizes)
        diag = np.arange(nf, dtype=np.int64)  # every diagonal entry is in the pattern (damping)
        pos, source, unique = _sorted_entries(np.concatenate(cols + [diag]), np.concatenate(rows + [diag]),
                                              np.concatenate(sources + [total + diag]), nf, total + nf)
        self.nnz = unique.size
        self.cols, self.rows = np.divmod(unique, nf) if nf else (unique, unique)  # compressed-column order
        self.colptr = np.concatenate([[0], np.cumsum(np.bincount(self.cols, minlength=nf))])
        virtual = source >= total
        self.diag_pos = np.empty(nf, dtype=np.int64)
        self.diag_pos[source[virtual] - total] = pos[virtual]
        # per batch (nnz x its block entries), one 1 per kept block entry: H's values are the sum of
        # their products with the raveled blocks (each entry sums its sources in increasing order)
        bounds = np.cumsum([0] + sizes)
        self._gathers = []
        for start, stop in zip(bounds[:-1], bounds[1:]):
            mine = (source >= start) & (source < stop)
            indptr = np.concatenate([[0], np.cumsum(np.bincount(pos[mine], minlength=self.nnz))])
            self._gathers.append(sp.csr_matrix((np.ones(indptr[-1]), source[mine] - start, indptr),
                                               shape=(self.nnz, stop - start)))
        self.lock = threading.Lock()
        self.factorizations = 0
        self.matrix = self.symbolic = None
        if self.backend == "cholmod":
            import cvxopt  # imports: sparse_backend.load checked it

            self._cvxopt = cvxopt
            self.matrix = cvxopt.spmatrix(
                cvxopt.matrix(np.where(self.rows == self.cols, 1.0, 0.0)),
                cvxopt.matrix(self.rows), cvxopt.matrix(self.cols), (nf, nf),
            )
            self.symbolic = self._solver.symbolic(self.matrix, uplo="L")
        else:
            self._rows32, self._cols32 = self.rows.astype(np.int32), self.cols.astype(np.int32)

    def lower_values(self, blocks) -> np.ndarray:
        """Values of H's lower triangle (compressed-column order) from the (cap, D, D) blocks."""
        values = np.zeros(self.nnz)
        for gather, b in zip(self._gathers, blocks):
            values += gather @ np.asarray(b, dtype=np.float64).ravel()
        return values

    def csc(self, values: np.ndarray) -> sp.csc_matrix:
        """The full symmetric matrix (scipy) with lower-triangle ``values`` (for checks)."""
        low = sp.csc_matrix((values, (self.rows, self.cols)), shape=(self.nf, self.nf))
        return (low + sp.tril(low, -1).T).tocsc()

    def damped_values(self, blocks, lam: float, mode: str, min_diag: float) -> np.ndarray:
        """Lower-triangle values of ``H + lam D``: D = max(diag H, min_diag) or I."""
        values = self.lower_values(blocks)
        if mode == "marquardt":
            values[self.diag_pos] += lam * np.maximum(values[self.diag_pos], min_diag)
        elif mode == "identity":
            values[self.diag_pos] += lam
        else:
            raise ValueError(f"damping must be one of {DAMPING_MODES}")
        return values

    def solve_values(self, values: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        """(n,) solution of the system with lower-triangle ``values``; 0 on entries not
        free; NaN when the matrix is not positive definite (numerically)."""
        out = np.zeros(self.n)
        if self.nf == 0:
            return out
        b = np.ascontiguousarray(np.asarray(rhs, dtype=np.float64)[self.free_index])
        solution = (self._solve_cholmod if self.backend == "cholmod" else self._solve_cholespy)(values, b)
        if solution is None:
            out[self.free_index] = np.nan
            return out
        with _systems_lock:
            runs[self.backend] += 1
        out[self.free_index] = solution
        return out

    def _solve_cholmod(self, values: np.ndarray, b: np.ndarray) -> np.ndarray | None:
        """Numeric refactorisation on the stored analysis, solve; None if not positive definite."""
        cvxopt, cholmod = self._cvxopt, self._solver
        b = cvxopt.matrix(b)
        with self.lock:
            self.matrix.V = cvxopt.matrix(values)
            try:
                cholmod.numeric(self.matrix, self.symbolic)
            except ArithmeticError:
                return None
            self.factorizations += 1
            cholmod.solve(self.symbolic, b)
        return np.asarray(b).ravel()

    def _solve_cholespy(self, values: np.ndarray, b: np.ndarray) -> np.ndarray | None:
        """cholespy on the lower triangle from scratch (ordering, analysis, factorisation),
        exact-zero entries left out; None if not positive definite."""
        cholespy = self._solver
        keep = values != 0.0
        try:
            factor = cholespy.CholeskySolverD(self.nf, self._rows32[keep], self._cols32[keep],
                                              np.ascontiguousarray(values[keep]), cholespy.MatrixType.COO)
        except ValueError:  # "Matrix is not positive definite!"
            return None
        x = np.zeros(self.nf)
        factor.solve(b, x)
        with self.lock:
            self.factorizations += 1
        return x

    def solve(self, blocks, lam: float, rhs: np.ndarray, mode: str = "marquardt",
              min_diag: float = 1e-6) -> np.ndarray:
        """Solution of ``(H + lam D) d = rhs`` with H from ``blocks`` (see ``damped_values``)."""
        return self.solve_values(self.damped_values(blocks, lam, mode, min_diag), rhs)


def _lower_block_entries(number: np.ndarray, cols: np.ndarray, used) -> tuple[np.ndarray, ...]:
    """(row, col, source) of the block entries of one batch that land in H's lower
    triangle: system numbers ``row >= col >= 0`` and the index of the block entry in
    the batch's raveled (cap, D, D) blocks, the one at (larger, smaller) system number
    (blocks are symmetric).  A column listed twice in one factor brings both of its
    cross entries, as a sum of the whole block would."""
    cap, d = cols.shape
    f = np.where(np.asarray(used, dtype=bool)[:, None], number[cols], -1)  # -1: not in the system
    order = np.argsort(f, axis=1, kind="stable")  # each factor's entries by system number
    fs = np.take_along_axis(f, order, axis=1)
    a, b = np.tril_indices(d)  # a >= b, so fs[:, a] >= fs[:, b]
    row, col = fs[:, a], fs[:, b]
    base = (np.arange(cap, dtype=np.int64) * (d * d))[:, None]
    src = base + order[:, a] * d + order[:, b]
    twin = (row == col) & (a != b)[None, :] & (col >= 0)
    if twin.any():
        row, col, src = (np.concatenate([row.ravel(), row[twin]]), np.concatenate([col.ravel(), col[twin]]),
                         np.concatenate([src.ravel(), (base + order[:, b] * d + order[:, a])[twin]]))
    else:
        row, col, src = row.ravel(), col.ravel(), src.ravel()
    keep = col >= 0
    if not keep.all():
        row, col, src = row[keep], col[keep], src[keep]
    return row, col, src


def _sorted_entries(cols, rows, sources, nf: int, n_sources: int):
    """Entries sorted by (column, row, source): (position of each in the deduplicated
    compressed-column pattern, its source, the pattern's keys ``col * nf + row``)."""
    keys = cols * nf + rows
    shift = max(int(n_sources - 1).bit_length(), 1)
    if int(max(nf * nf - 1, 1)).bit_length() + shift <= 63:
        packed = np.sort((keys << shift) | sources)  # one sort of (key, source) packed in an int64
        keys, sources = packed >> shift, packed & ((1 << shift) - 1)
    else:
        order = np.lexsort((sources, keys))
        keys, sources = keys[order], sources[order]
    new = np.empty(keys.size, dtype=bool)
    new[:1] = True
    np.not_equal(keys[1:], keys[:-1], out=new[1:])
    return np.cumsum(new) - 1, sources, keys[new]


_systems: OrderedDict[bytes, tuple] = OrderedDict()
_systems_lock = threading.Lock()
_last: tuple | None = None  # (backend, n, free, columns, live, system) of the last lookup, inputs copied
analyses = 0  # patterns analysed by ``system_for`` (tests count them)
runs: Counter[str] = Counter()  # successful factorisations per backend (what ran: benches record it)


def _pattern_arrays(n: int, free, columns, live) -> list[np.ndarray]:
    arrays = [np.asarray([n], dtype=np.int64), np.packbits(np.asarray(free, dtype=bool).ravel())]
    for cols, used in zip(columns, live):
        used = np.asarray(used, dtype=bool)
        arrays.append(np.asarray(cols.shape, dtype=np.int64))
        arrays.append(np.packbits(used))
        arrays.append(np.ascontiguousarray(np.asarray(cols)[used], dtype=np.int64))
    return arrays


def system_for(n: int, free, columns, live, backend: str = "auto") -> BlockSystem:
    """The ``BlockSystem`` of this pattern and backend: cached (exact match), else analysed anew.

    The inputs of the last lookup are kept: the same inputs again (every iteration of
    one solve) return its system after a plain comparison, without hashing."""
    global analyses, _last
    if backend not in sparse_backend.BACKENDS:
        backend = sparse_backend.resolve(backend)
    with _systems_lock:
        last = _last
    if last is not None and last[0] == backend and last[1] == n and _same_inputs(last[2:5], free, columns, live):
        return last[5]
    system = _lookup(n, free, columns, live, backend)
    inputs = tuple([np.array(a, copy=True) for a in group] for group in ([free], columns, live))
    with _systems_lock:
        _last = (backend, n, inputs[0][0], inputs[1], inputs[2], system)
    return system


def _same_inputs(last, free, columns, live) -> bool:
    last_free, last_columns, last_live = last
    return (len(last_columns) == len(columns) and len(last_live) == len(live)
            and np.array_equal(last_free, free)
            and all(np.array_equal(a, b) for a, b in zip(last_columns, columns))
            and all(np.array_equal(a, b) for a, b in zip(last_live, live)))


def _lookup(n: int, free, columns, live, backend: str) -> BlockSystem:
    """``system_for`` by the pattern's digest (an exact match of its arrays)."""
    global analyses
    arrays = [np.frombuffer(backend.encode(), dtype=np.uint8)] + _pattern_arrays(n, free, columns, live)
    digest = hashlib.blake2b(b"".join(a.tobytes() for a in arrays), digest_size=20).digest()
    with _systems_lock:
        hit = _systems.get(digest)
        if hit is not None and len(hit[0]) == len(arrays) and all(
                np.array_equal(a, b) for a, b in zip(hit[0], arrays)):
            _systems.move_to_end(digest)
            return hit[1]
    system = BlockSystem(n, free, columns, live, backend)
    with _systems_lock:
        analyses += 1
        _systems[digest] = (arrays, system)
        while len(_systems) > _CACHE_SIZE:
            _systems.popitem(last=False)
    return system


def clear_cache() -> None:
    """Forget every analysed pattern."""
    global _last
    with _systems_lock:
        _systems.clear()
        _last = None
