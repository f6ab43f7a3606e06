"""Gradients through a converged solve by the implicit function theorem.

At a solution ``x*`` of ``min_x c(x, theta)``, write nearby solutions as
``retract(x*, d(theta))``; optimality ``G(d, theta) = grad_d c(retract(x*, d), theta)
= 0`` gives ``dd/dtheta = -H^-1 dG/dtheta`` with ``H = dG/dd`` at ``d = 0``.  The
backward pass therefore costs one linear solve with ``H`` instead of
differentiating every solver iteration; the forward pass is any solver run to
convergence (LM here), whose iterations are never traced for differentiation.

``hessian="exact"`` uses the full Hessian of the cost (dense, small problems;
matches finite differences); ``"gauss_newton"`` uses ``J^T J`` (exact only for
zero-residual problems, cheaper).  The problem must be anchored (H invertible on
used variables); unused capacity slots are given identity rows.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

from dsg_jit_ros.learning.param_residual import Bindings, inject_params
from dsg_jit_ros.optimization.linearize import dense_hessian, linearize
from dsg_jit_ros.optimization.solvers import LMConfig, levenberg_marquardt
from dsg_jit_ros.slam.manifold import retract_state
from dsg_jit_ros.world.graph import FactorGraph, graph_residual


def _regularize_unused(h: jnp.ndarray) -> jnp.ndarray:
    return h + jnp.diag(jnp.where(jnp.abs(jnp.diag(h)) == 0.0, 1.0, 0.0))


def implicit_solver(
    graph: FactorGraph,
    x0: jnp.ndarray,
    bindings: Bindings,
    cfg: LMConfig = LMConfig(),
    hessian: str = "exact",
):
    """``solve(theta) -> x*`` (LM from ``x0``) with implicit-function gradients."""
    if hessian not in ("exact", "gauss_newton"):
        raise ValueError("hessian must be 'exact' or 'gauss_newton'")
    layout = graph.layout

    def graph_for(theta: Mapping[str, jnp.ndarray]) -> FactorGraph:
        return inject_params(graph, theta, bindings)

    def cost_at(delta, xs, theta):
        r = graph_residual(graph_for(theta), retract_state(layout, xs, delta))
        return 0.5 * jnp.dot(r, r)

    def forward(theta):
        return levenberg_marquardt(graph_for(theta), x0, cfg).x

    @jax.custom_vjp
    def solve(theta):
        return forward(theta)

    def fwd(theta):
        xs = forward(theta)
        return xs, (xs, theta)

    def bwd(res, v):
        xs, theta = res
        zero = jnp.zeros_like(xs)
        _, retract_vjp = jax.vjp(lambda d: retract_state(layout, xs, d), zero)
        (u,) = retract_vjp(v)
        if hessian == "exact":
            # forward-over-forward: compiles far smaller than jax.hessian's fwd-over-rev
            h = jax.jacfwd(jax.jacfwd(cost_at))(zero, xs, theta)
        else:
            g = graph_for(theta)
            h = dense_hessian(g, linearize(g, xs)[0], xs)
        lam = jnp.linalg.solve(_regularize_unused(h), u)

        # lam^T G(theta) is the directional derivative of the cost along lam
        def directional(th):
            return jax.jvp(lambda d: cost_at(d, xs, th), (zero,), (lam,))[1]

        g_theta = jax.grad(directional)(theta)
        return (jax.tree_util.tree_map(jnp.negative, g_theta),)

    solve.defvjp(fwd, bwd)
    return solve
