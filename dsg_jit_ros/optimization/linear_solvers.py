"""Solving the damped normal equations ``(J^T J + lam D) d = -J^T r``.

``dense``: assemble the dense Hessian, Cholesky (small systems, differentiable).
``pcg``:   preconditioned conjugate gradients with block-Jacobi preconditioner,
           Hessian-vector products through the per-factor Jacobians (large pose
           graphs; memory linear in the number of factors).
``D`` is Marquardt's scaling: the Hessian's diagonal, floored at ``min_diag``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dsg_jit_ros.optimization import linearize as lin_mod
from dsg_jit_ros.world.graph import FactorGraph

LINEAR_SOLVERS = ("dense", "pcg")


def dense_solve(graph: FactorGraph, lins, x, g, lam, min_diag: float, scaled: bool = True):
    """Damped Newton step by dense Cholesky (differentiable)."""
    h = lin_mod.dense_hessian(graph, lins, x)
    d = jnp.maximum(jnp.diag(h), min_diag) if scaled else jnp.ones_like(g)
    chol = jnp.linalg.cholesky(h + jnp.diag(lam * d))
    step = jax.scipy.linalg.cho_solve((chol, True), -g)
    return step


def pcg_solve(graph: FactorGraph, lins, x, g, lam, min_diag: float, tol: float, max_iters: int):
    """Damped Newton step by block-Jacobi PCG; returns (step, iterations)."""
    layout = graph.layout
    diag_blocks = lin_mod.hessian_diagonal_blocks(graph, lins, x)
    dvec = layout.join([jnp.maximum(jnp.diagonal(hb, axis1=1, axis2=2), min_diag) for hb in diag_blocks])
    damp_blocks = layout.split(lam * dvec)
    inv_blocks = [
        jnp.linalg.inv(hb + jax.vmap(jnp.diag)(db)) for hb, db in zip(diag_blocks, damp_blocks)
    ]

    def precond(v):
        vb = layout.split(v)
        return layout.join([jnp.einsum("ckl,cl->ck", ib, b) for ib, b in zip(inv_blocks, vb)])

    def matvec(v):
        return lin_mod.hessian_matvec(graph, lins, v) + lam * dvec * v

    b = -g
    bnorm = jnp.linalg.norm(b)
    x0 = precond(b)
    r0 = b - matvec(x0)
    z0 = precond(r0)

    def cond(s):
        _, r, _, _, _, k = s
        return (jnp.linalg.norm(r) > tol * bnorm) & (k < max_iters)

    def body(s):
        xk, r, z, p, rz, k = s
        ap = matvec(p)
        alpha = rz / jnp.dot(p, ap)
        xk = xk + alpha * p
        r = r - alpha * ap
        z = precond(r)
        rz_new = jnp.dot(r, z)
        p = z + (rz_new / rz) * p
        return xk, r, z, p, rz_new, k + 1

    init = (x0, r0, z0, z0, jnp.dot(r0, z0), jnp.array(0))
    xk, _, _, _, _, k = jax.lax.while_loop(cond, body, init)
    return xk, k
