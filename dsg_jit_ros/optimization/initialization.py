"""Chordal (linear) initialisation of 3D pose graphs (numpy + scipy only).

Given relative measurements ``T_i_j = (R_ij, t_ij)`` the poses ``T_world_i`` are
estimated in two linear least-squares stages:

1. Rotations: minimise ``sum_e kappa_e ||R_j - R_i R_ij||_F^2`` over unconstrained
   3x3 matrices with ``R_anchor`` fixed, then project each onto SO(3) by SVD.
   Row ``r`` of the constraint reads ``R_j[r, :]^T - R_ij^T R_i[r, :]^T = 0``: the
   three rows share one sparse system, solved once with three right-hand sides.
2. Translations (metres): minimise ``sum_e tau_e ||t_j - t_i - R_i t_ij||^2`` with
   ``t_anchor`` fixed and the rotations from stage 1.  Each coordinate decouples
   into a weighted graph-Laplacian system, again with three right-hand sides.

Edge weights are scalars: ``kappa_e`` is the trace of the rotational 3x3 block of the
information matrix divided by 3 (rad^-2) and ``tau_e`` the same for the
translational block (m^-2).  Both blocks follow the ``[tx, ty, tz, rx, ry, rz]``
order of :class:`dsg_jit_ros.io.g2o.PoseGraph`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import splu

from dsg_jit_ros.io.g2o import PoseGraph

__all__ = ["chordal_initialization", "project_to_so3"]


def project_to_so3(matrices: np.ndarray) -> np.ndarray:
    """Nearest rotations (Frobenius norm) to (..., 3, 3) matrices, via SVD with det fix."""
    u, _, vt = np.linalg.svd(matrices)
    det = np.linalg.det(u @ vt)
    u = u.copy()
    u[..., :, 2] *= det[..., None]
    return u @ vt


def _edge_weights(information: np.ndarray, block: slice, name: str) -> np.ndarray:
    """Scalar weight per edge: trace of a 3x3 diagonal block of the information / 3."""
    weights = np.trace(information[:, block, block], axis1=1, axis2=2) / 3.0
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError(f"chordal_initialization: {name} information has negative or non-finite trace")
    return weights


def _check_connected(n: int, edge_i: np.ndarray, edge_j: np.ndarray, weights: np.ndarray, name: str) -> None:
    """Raise ValueError unless the edges of positive weight connect all n poses."""
    used = weights > 0
    adjacency = sp.coo_matrix((np.ones(used.sum()), (edge_i[used], edge_j[used])), shape=(n, n))
    n_components, _ = connected_components(adjacency, directed=False)
    if n_components != 1:
        raise ValueError(
            f"chordal_initialization: {name} constraints leave {n_components} disconnected components; "
            "every pose must be linked to the anchor"
        )


def _solve_anchored(
    design: sp.csr_matrix, rhs: np.ndarray, fixed_cols: np.ndarray, fixed_values: np.ndarray
) -> np.ndarray:
    """Least squares ``design @ x ~= rhs`` with ``x[fixed_cols] = fixed_values``.

    Solves the normal equations of the free columns with a sparse LU; ``rhs`` and
    ``fixed_values`` may carry several right-hand-side columns.  Returns the full
    ``x`` including the fixed rows.
    """
    n_cols = design.shape[1]
    free = np.setdiff1d(np.arange(n_cols), fixed_cols)
    design = design.tocsc()
    a_free = design[:, free]
    b = rhs - design[:, fixed_cols] @ fixed_values
    normal = (a_free.T @ a_free).tocsc()
    x = np.zeros((n_cols,) + rhs.shape[1:])
    x[fixed_cols] = fixed_values
    x[free] = splu(normal).solve(np.asarray(a_free.T @ b))
    return x


def _rotation_stage(graph: PoseGraph, kappa: np.ndarray, anchor: int) -> np.ndarray:
    """Chordal rotation estimate, (n, 3, 3) matrices in SO(3) with ``R[anchor]`` kept."""
    n, m = graph.num_poses, graph.num_edges
    sqrt_w = np.sqrt(kappa)
    # Residual rows 3e..3e+2: sqrt(w) * (x_j - R_ij^T x_i), x_k = R_k[r, :]^T.
    rows = 3 * np.arange(m)[:, None] + np.arange(3)[None, :]  # (m, 3)
    ident_rows = rows.ravel()
    ident_cols = (3 * graph.edge_j[:, None] + np.arange(3)[None, :]).ravel()
    ident_vals = np.repeat(sqrt_w, 3)
    # -sqrt(w) * R_ij^T: entry (a, c) is -R_ij[c, a].
    m_rows = np.broadcast_to(rows[:, :, None], (m, 3, 3)).ravel()
    m_cols = np.broadcast_to((3 * graph.edge_i[:, None] + np.arange(3)[None, :])[:, None, :], (m, 3, 3)).ravel()
    m_vals = (-sqrt_w[:, None, None] * np.transpose(graph.measurements[:, :3, :3], (0, 2, 1))).ravel()
    values = np.concatenate([ident_vals, m_vals])
    indices = (np.concatenate([ident_rows, m_rows]), np.concatenate([ident_cols, m_cols]))
    design = sp.csr_matrix((values, indices), shape=(3 * m, 3 * n))
    anchor_cols = 3 * anchor + np.arange(3)
    # Column r of the unknown block holds row r of each rotation: X[3k:3k+3, :] = R_k^T.
    solution = _solve_anchored(design, np.zeros((3 * m, 3)), anchor_cols, graph.poses[anchor, :3, :3].T)
    relaxed = np.transpose(solution.reshape(n, 3, 3), (0, 2, 1))
    rotations = project_to_so3(relaxed)
    rotations[anchor] = graph.poses[anchor, :3, :3]
    return rotations


def _translation_stage(graph: PoseGraph, tau: np.ndarray, rotations: np.ndarray, anchor: int) -> np.ndarray:
    """Translations (n, 3) in metres given world rotations, with ``t[anchor]`` kept."""
    n, m = graph.num_poses, graph.num_edges
    sqrt_w = np.sqrt(tau)
    edges = np.arange(m)
    indices = (np.concatenate([edges, edges]), np.concatenate([graph.edge_j, graph.edge_i]))
    incidence = sp.csr_matrix((np.concatenate([sqrt_w, -sqrt_w]), indices), shape=(m, n))
    # t_ij expressed in the world frame: R_i @ t_ij.
    rhs = sqrt_w[:, None] * np.einsum("eab,eb->ea", rotations[graph.edge_i], graph.measurements[:, :3, 3])
    return _solve_anchored(incidence, rhs, np.array([anchor]), graph.poses[anchor, :3, 3][None, :])


def chordal_initialization(graph: PoseGraph, anchor: int = 0) -> np.ndarray:
    """Estimate all poses ``T_world_body`` (n, 4, 4) from the edges of ``graph``.

    Args:
        graph: pose graph; ``graph.poses`` is used only for the anchor.
        anchor: row index (not vertex id) of the pose held fixed; its rotation and
            translation are copied unchanged to the output.

    Returns:
        (n, 4, 4) float64 ``T_world_body`` estimates; translations in metres.

    Raises:
        ValueError: if ``anchor`` is out of range, the information matrices give a
            negative/non-finite weight, or the positively weighted edges do not
            connect every pose.
    """
    n = graph.num_poses
    if not 0 <= anchor < n:
        raise ValueError(f"chordal_initialization: anchor {anchor} outside [0, {n})")
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[anchor] = graph.poses[anchor]
    if n == 1:
        return poses
    kappa = _edge_weights(graph.information, slice(3, 6), "rotation")
    tau = _edge_weights(graph.information, slice(0, 3), "translation")
    _check_connected(n, graph.edge_i, graph.edge_j, kappa, "rotation")
    _check_connected(n, graph.edge_i, graph.edge_j, tau, "translation")
    rotations = _rotation_stage(graph, kappa, anchor)
    poses[:, :3, :3] = rotations
    poses[:, :3, 3] = _translation_stage(graph, tau, rotations, anchor)
    poses[anchor] = graph.poses[anchor]
    return poses
