"""Marginal covariance of one variable at a solution, from the Gauss-Newton Hessian.

The information matrix of the (whitened) least-squares problem is ``H = J^T J``;
the marginal covariance of variable ``v`` is the ``v`` block of ``H^-1``.  Euclidean
variables (voxels, points) are eliminated first (the Schur complement of the
solver), so only the small pose system is factorised.  The block is expressed in
the variable's tangent (for ``pose_se3``: ``[rho (m), phi (rad)]``, body frame,
right perturbation).  The variable's slot is data, so one compile serves every
variable of a type.

``pose_covariance`` reads the same block from the Cholesky factor a Schur solve
already computed (``LMConfig.keep_factor``): no second linearisation and Schur
complement, at the price of being taken at the solve's last linearisation point
(damped by its ``lam``) instead of at the returned state.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dsg_jit_ros.optimization.compile_count import counted_jit
from dsg_jit_ros.optimization.linear_solvers import has_schur_structure, reduced_offset, schur_system
from dsg_jit_ros.optimization.linearize import dense_hessian, linearize
from dsg_jit_ros.world.graph import FactorGraph


def _marginal_covariance(graph: FactorGraph, x: jnp.ndarray, position: int, slot) -> jnp.ndarray:
    """(dim, dim) covariance of variable ``slot`` of type ``position`` at ``x``."""
    layout = graph.layout
    dim = layout.types[position].dim
    lins, _ = linearize(graph, x)
    eliminate = has_schur_structure(graph) and layout.types[position].manifold != "euclidean"
    if eliminate:
        h, _, _ = schur_system(graph, lins, x, jnp.zeros_like(x), 0.0, 0.0)
        start = reduced_offset(graph, position) + slot * dim
    else:
        h = dense_hessian(graph, lins, x)
        start = layout.offsets[position] + slot * dim
    idx = start + jnp.arange(dim)
    unit = jnp.zeros((h.shape[0], dim), h.dtype).at[idx, jnp.arange(dim)].set(1.0)
    cols = jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(h), True), unit)
    cov = cols[idx]
    return 0.5 * (cov + cov.T)


marginal_covariance = counted_jit(_marginal_covariance, name="marginal_covariance", static_argnames=("position",))


def _covariance_from_factor(factor: jnp.ndarray, start, dim: int) -> jnp.ndarray:
    """(dim, dim) block at rows ``start:start + dim`` of ``(L L^T)^-1`` (``factor`` = L, lower)."""
    idx = start + jnp.arange(dim)
    unit = jnp.zeros((factor.shape[0], dim), factor.dtype).at[idx, jnp.arange(dim)].set(1.0)
    cov = jax.scipy.linalg.cho_solve((factor, True), unit)[idx]
    return 0.5 * (cov + cov.T)


covariance_from_factor = counted_jit(_covariance_from_factor, name="covariance_from_factor", static_argnames=("dim",))


def pose_covariance(graph: FactorGraph, factor: jnp.ndarray, position: int, slot) -> jnp.ndarray:
    """Marginal covariance of variable ``slot`` of kept type ``position`` from the Cholesky
    factor of a solve's reduced pose system (``LMResult.factor``, ``LMConfig.keep_factor``):
    the Gauss-Newton covariance at the solve's last linearisation point, damped by its
    ``lam`` (Marquardt: the diagonal scaled by ``1 + lam``), without linearising again.
    Tangent of the variable (``pose_se3``: ``[rho (m), phi (rad)]``, body frame)."""
    dim = graph.layout.types[position].dim
    return covariance_from_factor(factor, reduced_offset(graph, position) + slot * dim, dim=dim)
