"""Eigen-decomposition of many symmetric 3x3 matrices at once, in closed form.

``numpy.linalg.eigh`` on an (n, 3, 3) batch calls LAPACK once per matrix (2-3 µs
each here): the window re-shapes ~2,200 voxel surfaces per keyframe
(``mapping.voxel_map.surface_sqrt_information``; ``bench/node_latency.py``), ~5 ms of
a keyframe on the 2-core machine.  This one runs the same arithmetic on the batch's
(n,) columns of entries, a few dozen vector operations whatever n is: 2,300 matrices
in 1.1-1.3 ms where LAPACK took 2.9-7.8 ms (same process, loaded machine); below
``SMALL_BATCH`` matrices LAPACK is faster and is used.

Method (the trigonometric solution made robust, along the lines of D. Eberly, "A
Robust Eigensolver for 3x3 Symmetric Matrices", 2014): each matrix is scaled by its
largest entry and shifted by its mean eigenvalue; the cosine formula for the roots of
the characteristic polynomial gives the *isolated* eigenvalue (the largest when the
shifted matrix's determinant is >= 0, else the smallest), which it gives to rounding
error (the formula loses half the digits only for the two eigenvalues of a close pair);
its eigenvector is the longest cross product of two rows of ``A - lam I``.  The other
two come from the 2x2 matrix of ``A`` in the plane orthogonal to it (a rotation angle
from ``atan2``: exact even for a repeated pair, e.g. a voxel's disc of points), and
every eigenvalue is the Rayleigh quotient of its vector.  Accuracy (``test/test_sym3.py``,
against LAPACK on random, rank-deficient, repeated, clustered and badly scaled
matrices): eigenvalues and ``V diag(lam) V^T`` within ~1e-13 of the largest entry,
``V`` orthonormal to 1e-15.
"""

from __future__ import annotations

import numpy as np


def _cross(a, b):
    """Cross product of (3, n) column stacks."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def _quad(m, u, w):
    """``u^T M w`` per column, M given as its 6 distinct entries (m00, m01, m02, m11, m12, m22)."""
    m00, m01, m02, m11, m12, m22 = m
    mw = (m00 * w[0] + m01 * w[1] + m02 * w[2], m01 * w[0] + m11 * w[1] + m12 * w[2],
          m02 * w[0] + m12 * w[1] + m22 * w[2])
    return u[0] * mw[0] + u[1] * mw[1] + u[2] * mw[2]


#: below this many matrices LAPACK is faster (the closed form's ~0.2 ms of fixed cost)
SMALL_BATCH = 64


def eigh3(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (n, 3), ascending, and orthonormal eigenvectors (n, 3, 3) as columns
    of symmetric ``a`` (n, 3, 3), as ``numpy.linalg.eigh`` returns them (a vector's sign,
    and the basis of a repeated eigenvalue's plane, may differ): ``closed_form_eigh3``
    from ``SMALL_BATCH`` matrices on, LAPACK below.  ``a`` must be symmetric."""
    a = np.asarray(a, dtype=np.float64)
    if len(a) < SMALL_BATCH:
        return np.linalg.eigh(a)
    return closed_form_eigh3(a)


def closed_form_eigh3(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``eigh3`` in closed form on the whole batch (see the module doc); only the upper
    triangle of ``a`` is read."""
    a = np.asarray(a, dtype=np.float64)
    n = len(a)
    m = np.ascontiguousarray(a.reshape(n, 9)[:, [0, 1, 2, 4, 5, 8]].T)  # upper triangle, (6, n)
    scale = np.max(np.abs(m), axis=0)
    scale[scale == 0.0] = 1.0
    m /= scale
    m00, m01, m02, m11, m12, m22 = m
    q = (m00 + m11 + m22) / 3.0
    b00, b11, b22 = m00 - q, m11 - q, m22 - q
    p = np.sqrt((b00 * b00 + b11 * b11 + b22 * b22 + 2.0 * (m01 * m01 + m02 * m02 + m12 * m12)) / 6.0)
    # p == 0: a multiple of the identity; any isolated value works (q) and any basis
    pz = np.where(p > 0.0, p, 1.0)
    det = (b00 * (b11 * b22 - m12 * m12) - m01 * (m01 * b22 - m12 * m02) + m02 * (m01 * m12 - b11 * m02))
    half_det = np.clip(0.5 * det / pz ** 3, -1.0, 1.0)
    phi = np.arccos(half_det) / 3.0
    top = half_det >= 0.0  # the largest eigenvalue is the isolated one, else the smallest
    iso = q + 2.0 * p * np.where(top, np.cos(phi), np.cos(phi + 2.0 * np.pi / 3.0))
    # eigenvector of the isolated value: the longest cross product of rows of M - iso I
    r0 = (m00 - iso, m01, m02)
    r1 = (m01, m11 - iso, m12)
    r2 = (m02, m12, m22 - iso)
    v = _cross(r0, r1)
    v_len = np.sum(v * v, axis=0)
    for other in (_cross(r0, r2), _cross(r1, r2)):
        o_len = np.sum(other * other, axis=0)
        longer = o_len > v_len
        v = np.where(longer, other, v)
        v_len = np.where(longer, o_len, v_len)
    # no cross product at all (p == 0, or an isolated value with a rank < 2 shift): e_z
    degenerate = ~(v_len > 0.0)
    v = np.where(degenerate, np.array([[0.0], [0.0], [1.0]]), v / np.sqrt(np.where(degenerate, 1.0, v_len)))
    # an orthonormal basis (u, w) of the plane orthogonal to v
    x_big = np.abs(v[0]) > np.abs(v[1])
    zero = np.zeros(n)
    u = np.where(x_big, np.stack([-v[2], zero, v[0]]), np.stack([zero, v[2], -v[1]]))
    u /= np.sqrt(np.sum(u * u, axis=0))
    w = _cross(v, u)
    # the 2x2 matrix of M in (u, w): e_big, e_small its eigenvectors (theta: of the larger)
    c00, c01, c11 = _quad(m, u, u), _quad(m, u, w), _quad(m, w, w)
    theta = 0.5 * np.arctan2(2.0 * c01, c00 - c11)
    ct, st = np.cos(theta), np.sin(theta)
    e_big = ct * u + st * w
    e_small = ct * w - st * u
    # ascending: (e_small, e_big, v) when v's value is the largest, else (v, e_small, e_big)
    first = np.where(top, e_small, v)
    second = np.where(top, e_big, e_small)
    third = np.where(top, v, e_big)
    lam = np.empty((n, 3))
    vec = np.empty((n, 3, 3))
    for j, e in enumerate((first, second, third)):
        lam[:, j] = _quad(m, e, e) * scale  # Rayleigh quotient
        vec[:, :, j] = e.T
    lam.sort(axis=1)  # ties broken by rounding may come out of order by an ulp
    return lam, vec
