"""Information matrices of g2o edges: parsing, the positive-definiteness check, repairs.

``information[e]`` is the 6x6 inverse covariance of edge ``e`` in tangent order
``[tx, ty, tz, rx, ry, rz]`` (metres, radians).  Files store its upper triangle row
by row: 21 values over all six components for ``EDGE_SE3:QUAT``, 6 over
``x, y, theta`` for ``EDGE_SE2``, which land at tangent indices ``SE2_TANGENT``
(every entry involving ``z``, ``rx`` or ``ry`` is 0: not observed).

Information matrices must be positive definite over the observed tangent
components (all six in 3D; ``x, y, theta`` in 2D): an edge whose smallest
eigenvalue is not above ``INFORMATION_PD_RTOL`` times its largest is an error
naming the file, line and vertex ids, unless ``read_g2o`` is given a
``repair_information``:

* ``"nearest_pd"``: eigenvalues raised to at least ``REPAIR_EIGEN_FLOOR`` times the
  largest (the nearest such matrix in the Frobenius norm; well-observed
  directions are kept exactly);
* ``"isotropic"``: ``(trace / size) * I`` per block, translation (m^-2) and
  rotation (rad^-2) separately, because one scalar across both would mix units.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "INFORMATION_PD_RTOL",
    "REPAIR_EIGEN_FLOOR",
    "REPAIR_OPTIONS",
    "SE2_TANGENT",
    "information_from_upper",
    "check_information",
]

#: An information matrix counts as positive definite when its smallest eigenvalue
#: exceeds this fraction of its largest (parking-garage.g2o goes down to 4e-10).
INFORMATION_PD_RTOL = 1e-12
#: ``repair_information="nearest_pd"`` raises eigenvalues to this fraction of the largest.
REPAIR_EIGEN_FLOOR = 1e-6
#: Accepted values of ``read_g2o(repair_information=...)``.
REPAIR_OPTIONS = (None, "nearest_pd", "isotropic")
# Tangent indices [x, y, theta] of an SE(2) information matrix inside the SE(3) 6x6.
SE2_TANGENT = np.array([0, 1, 5])
# Translation / rotation blocks (indices into the observed information) per dimension.
_BLOCKS = {3: (np.arange(3), np.arange(3, 6)), 2: (np.arange(2), np.arange(2, 3))}


def information_from_upper(upper: np.ndarray, size: int) -> np.ndarray:
    """(k, size*(size+1)/2) row-major upper-triangular entries -> (k, size, size) symmetric."""
    rows, cols = np.triu_indices(size)
    info = np.zeros((len(upper), size, size))
    info[:, rows, cols] = upper
    info[:, cols, rows] = upper
    return info


def _observed_index(dim: int) -> np.ndarray:
    """Tangent indices of the 6x6 information that a ``dim``-D edge observes."""
    return SE2_TANGENT if dim == 2 else np.arange(6)


def _not_positive_definite(info: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bad mask (m,), eigenvalues (m, d) ascending) of (m, d, d) symmetric matrices.

    Bad = smallest eigenvalue not above ``INFORMATION_PD_RTOL`` times the largest
    (or no positive eigenvalue at all): the Cholesky whitening would fail or be
    meaningless.
    """
    if len(info) == 0:
        return np.zeros(0, dtype=bool), np.zeros((0, info.shape[-1]))
    eig = np.linalg.eigvalsh(info)
    bad = (eig[:, -1] <= 0.0) | (eig[:, 0] <= INFORMATION_PD_RTOL * eig[:, -1])
    return bad, eig


def _repair_information(info: np.ndarray, eig: np.ndarray, method: str, dim: int) -> np.ndarray:
    """Positive definite replacements for (r, d, d) information matrices (``method``).

    ``nearest_pd``: eigenvalues clipped below at ``REPAIR_EIGEN_FLOOR`` times the
    largest, eigenvectors kept.  ``isotropic``: ``trace(block) / size * I`` for the
    translation and the rotation block.  Returns the repaired (r, d, d) stack and
    a (r,) mask of matrices that could not be repaired (no positive eigenvalue, or
    a block with a non-positive trace).
    """
    if method == "nearest_pd":
        failed = eig[:, -1] <= 0.0
        _, vecs = np.linalg.eigh(info)
        clipped = np.maximum(eig, REPAIR_EIGEN_FLOOR * eig[:, -1:])
        return (vecs * clipped[:, None, :]) @ np.swapaxes(vecs, 1, 2), failed
    out = np.zeros_like(info)
    failed = np.zeros(len(info), dtype=bool)
    for block in _BLOCKS[dim]:
        scale = np.trace(info[:, block[:, None], block[None, :]], axis1=1, axis2=2) / len(block)
        failed |= scale <= 0.0
        out[:, block, block] = scale[:, None]
    return out, failed


def check_information(
    information: np.ndarray, dim: int, repair: str | None, path: str, lines: list[int], edge_ids: np.ndarray
) -> np.ndarray:
    """Validate (and with ``repair`` fix, in place) the observed information blocks.

    Returns the (r,) int64 rows of the repaired edges; raises ValueError naming the
    first offending edge (file, line, vertex ids) when ``repair`` is None or cannot
    fix it.
    """
    obs = _observed_index(dim)
    block = information[:, obs[:, None], obs[None, :]]
    bad, eig = _not_positive_definite(block)
    rows = np.flatnonzero(bad)
    if rows.size == 0:
        return rows.astype(np.int64)
    tag = "EDGE_SE2" if dim == 2 else "EDGE_SE3:QUAT"

    def where(e: int) -> str:
        return f"{path} line {lines[e]}: {tag} {edge_ids[e, 0]} {edge_ids[e, 1]}"

    if repair is None:
        e = rows[0]
        raise ValueError(
            f"{where(e)}: information matrix is not positive definite (eigenvalues {eig[e, 0]:.6g} .. "
            f"{eig[e, -1]:.6g}; {rows.size} of {len(block)} edges in the file are affected). "
            f"To read the file anyway pass read_g2o(..., repair_information='nearest_pd') to raise eigenvalues "
            f"to {REPAIR_EIGEN_FLOOR:g} x the largest (keeps the well-observed directions), or "
            f"repair_information='isotropic' to replace each by trace/size times the identity per "
            f"translation/rotation block"
        )
    repaired, failed = _repair_information(block[rows], eig[rows], repair, dim)
    if failed.any():
        e = rows[np.flatnonzero(failed)[0]]
        raise ValueError(
            f"{where(e)}: information matrix (eigenvalues {eig[e, 0]:.6g} .. {eig[e, -1]:.6g}) cannot be "
            f"repaired with repair_information={repair!r}: "
            + ("it has no positive eigenvalue" if repair == "nearest_pd" else "a block has a non-positive trace")
        )
    information[rows[:, None, None], obs[None, :, None], obs[None, None, :]] = repaired
    return rows.astype(np.int64)

