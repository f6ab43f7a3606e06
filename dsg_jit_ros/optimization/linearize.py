"""Linearisation of a FactorGraph: per-factor residuals and tangent Jacobians.

Each batch of factors (one type, one argument signature) is linearised with one
``vmap`` of a forward-mode Jacobian with respect to the arguments' tangent steps,
``d r(retract(x_a, d_a)) / d d_a`` at ``d = 0`` — the same retraction the solvers
apply, so Jacobians and steps agree.  It is computed by the chain rule as the
Jacobian in value coordinates times the retraction's analytic Jacobian, which
keeps the traced program (and compile time) small.  Robust kernels enter by iteratively
reweighting: residual and Jacobian are scaled by ``sqrt(rho'(s))``.
Nothing here forms a dense Jacobian of the whole state.

Per-factor products of small matrices (whitening, ``J^T J`` blocks) are written as
sums of broadcast products over the inner dimension (``world.graph.batched_matmul``).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from dsg_jit_ros.geometry import so3
from dsg_jit_ros.world import robust
from dsg_jit_ros.world.graph import FactorBatch, FactorGraph, batched_matmul, gather_args, lift_blocks


@dataclass(frozen=True)
class BatchLinearization:
    """Residuals (cap, d) and per-argument Jacobians [(cap, d, dim_a)] of one batch."""

    r: jnp.ndarray
    jacobians: tuple[jnp.ndarray, ...]


jax.tree_util.register_dataclass(BatchLinearization, data_fields=["r", "jacobians"], meta_fields=[])


def _retraction_jacobian(manifold: str, v: jnp.ndarray) -> jnp.ndarray | None:
    """d retract(v, d) / d d at d = 0 (None for Euclidean: the identity).

    SE(3) value [t, w] under T exp([rho, phi]): dt/drho = R(w), dw/dphi = J_r(w)^-1.
    """
    if manifold == "euclidean":
        return None
    w = v[3:]
    zero = jnp.zeros((3, 3), dtype=v.dtype)
    top = jnp.concatenate([so3.exp(w), zero], axis=1)
    bottom = jnp.concatenate([zero, so3.left_jacobian_inverse(-w)], axis=1)
    return jnp.concatenate([top, bottom], axis=0)


def _batch_linearize(b: FactorBatch, blocks, lifted, dof_masks) -> tuple[BatchLinearization, jnp.ndarray]:
    closed_form = b.spec.tangent_jacobians
    args = gather_args(b, lifted if closed_form is not None else blocks)
    dims = [t.dim for t in b.arg_types]
    splits = list(np.cumsum(dims)[:-1])

    if closed_form is not None:
        def unweighted(xs, p):
            e, jacs = closed_form(xs, p)
            return e, jnp.concatenate(jacs, axis=1)

        e, jac = jax.vmap(unweighted)(args, b.params)
        if b.isotropic:  # sqrt_info = w I: a scalar multiply, not a (d, d) product per factor
            w = b.sqrt_info[:, 0, 0]
            r, jac = w[:, None] * e, w[:, None, None] * jac
        else:
            r, jac = batched_matmul(b.sqrt_info, e), batched_matmul(b.sqrt_info, jac)
    else:
        r, jac = jax.vmap(lambda xs, p, w: _autodiff_linearize(b, splits, xs, p, w))(args, b.params, b.sqrt_info)
    return _finish_batch(b, dof_masks, splits, r, jac)


def _autodiff_linearize(b: FactorBatch, splits, xs, p, w):
    """(W e, [W J_a]) of one factor without closed-form Jacobians: forward mode in
    value coordinates times the retraction's Jacobian."""
    def f(x_stacked):
        r = w @ b.spec(x_stacked, p, b.arg_types)
        return r, r

    jac_v, r = jax.jacfwd(f, has_aux=True)(jnp.concatenate(xs))
    cols = []
    for t, x, jv in zip(b.arg_types, xs, jnp.split(jac_v, splits, axis=1)):
        m = _retraction_jacobian(t.manifold, x)
        cols.append(jv if m is None else jv @ m)
    return r, jnp.concatenate(cols, axis=1)


def _finish_batch(b: FactorBatch, dof_masks, splits, r, jac) -> tuple[BatchLinearization, jnp.ndarray]:
    """Masks (unused slots, fixed components), cost and the robust reweighting."""
    mask = b.mask
    r = jnp.where(mask[:, None], r, 0.0)
    # columns of fixed components (graph.dof_masks) and of unused slots are zero
    free = jnp.concatenate([dof_masks[p][b.slots[:, a]] for a, p in enumerate(b.arg_positions)], axis=1)
    jac = jnp.where(mask[:, None, None] & free[:, None, :], jac, 0.0)
    s = jnp.sum(r * r, axis=-1)
    cost = 0.5 * jnp.sum(jnp.where(mask, robust.rho(s, b.robust_kind, b.robust_scale), 0.0))
    sw = jnp.sqrt(robust.weight(s, b.robust_kind, b.robust_scale))
    r = r * sw[:, None]
    jac = jac * sw[:, None, None]
    jacs = tuple(jnp.split(jac, splits, axis=2))
    return BatchLinearization(r, jacs), cost


def _linearize(graph: FactorGraph, x: jnp.ndarray):
    """(list of BatchLinearization, total cost) of ``graph`` at flat state ``x``."""
    blocks = graph.layout.split(x)
    lifted = lift_blocks(graph.layout, blocks)
    lins, cost = [], jnp.zeros((), dtype=x.dtype)
    for b in graph.batches:
        lin, c = _batch_linearize(b, blocks, lifted, graph.dof_masks)
        lins.append(lin)
        cost = cost + c
    return lins, cost


# A jit of its own, so that it is traced once per graph structure and shared: the LM
# solve linearises in two places and the covariance in a third; each call inside
# another jitted function reuses the cached trace and lowers to a call of one
# function (XLA inlines it, so the compiled code is the same).  Tracing, redone in
# every process, is most of a warm start-up.
linearize = jax.jit(_linearize)
linearize.__doc__ = _linearize.__doc__


def _zeros_blocks(graph: FactorGraph, x: jnp.ndarray):
    return [jnp.zeros((c, t.dim), dtype=x.dtype) for t, c in zip(graph.layout.types, graph.layout.capacities)]


def gradient(graph: FactorGraph, lins, x: jnp.ndarray) -> jnp.ndarray:
    """Flat ``J^T r`` (the cost's gradient in tangent coordinates)."""
    g = _zeros_blocks(graph, x)
    for b, lin in zip(graph.batches, lins):
        for a, (p, ja) in enumerate(zip(b.arg_positions, lin.jacobians)):
            g[p] = g[p].at[b.slots[:, a]].add(jnp.einsum("cdk,cd->ck", ja, lin.r))
    return graph.layout.join(g)


def hessian_diagonal_blocks(graph: FactorGraph, lins, x: jnp.ndarray):
    """Per type (cap, dim, dim) diagonal blocks of ``J^T J``; entries that do not
    move (unused slots, fixed components) get identity rows."""
    h = [jnp.zeros((c, t.dim, t.dim), dtype=x.dtype) for t, c in zip(graph.layout.types, graph.layout.capacities)]
    for b, lin in zip(graph.batches, lins):
        for a, (p, ja) in enumerate(zip(b.arg_positions, lin.jacobians)):
            h[p] = h[p].at[b.slots[:, a]].add(jnp.einsum("cdk,cdl->ckl", ja, ja))
    out = []
    for t, hb, m in zip(graph.layout.types, h, graph.dof_masks):
        out.append(hb + jax.vmap(jnp.diag)(1.0 - m.astype(x.dtype)))  # their rows are zero
    return out


def hessian_matvec(graph: FactorGraph, lins, v: jnp.ndarray) -> jnp.ndarray:
    """``J^T J v`` through the per-factor Jacobians (entries that do not move act as I)."""
    vb = graph.layout.split(v)
    out = [jnp.zeros_like(b) for b in vb]
    for b, lin in zip(graph.batches, lins):
        jv = sum(jnp.einsum("cdk,ck->cd", ja, vb[p][b.slots[:, a]]) for a, (p, ja) in enumerate(zip(b.arg_positions, lin.jacobians)))
        for a, (p, ja) in enumerate(zip(b.arg_positions, lin.jacobians)):
            out[p] = out[p].at[b.slots[:, a]].add(jnp.einsum("cdk,cd->ck", ja, jv))
    out = [jnp.where(m, o, vv) for o, vv, m in zip(out, vb, graph.dof_masks)]
    return graph.layout.join(out)


def fixed_dofs(graph: FactorGraph, dtype, positions=None) -> jnp.ndarray:
    """1.0 on every state entry that does not move (unused slots, fixed components;
    of the layout types at ``positions``, default all), else 0.0.  Their Jacobian
    columns are zero, so added to a Hessian's diagonal it turns them into identity
    rows and the solve leaves them at zero."""
    positions = range(len(graph.layout.types)) if positions is None else positions
    masks = [graph.dof_masks[p].reshape(-1).astype(dtype) for p in positions]
    return 1.0 - jnp.concatenate(masks) if masks else jnp.zeros(0, dtype)


def factor_columns(graph: FactorGraph, b: FactorBatch) -> jnp.ndarray:
    """(cap, D) flat-state indices of every factor's arguments, concatenated."""
    offsets = graph.layout.offsets
    cols = [
        offsets[p] + b.slots[:, a, None] * t.dim + jnp.arange(t.dim)
        for a, (p, t) in enumerate(zip(b.arg_positions, b.arg_types))
    ]
    return jnp.concatenate(cols, axis=1)


def hessian_blocks(graph: FactorGraph, lins):
    """Per batch: ((cap, D) state indices, (cap, D, D) ``J^T J`` blocks)."""
    out = []
    for b, lin in zip(graph.batches, lins):
        jac = jnp.concatenate(lin.jacobians, axis=2)
        out.append((factor_columns(graph, b), batched_matmul(jnp.swapaxes(jac, 1, 2), jac)))
    return out


def dense_hessian(graph: FactorGraph, lins, x: jnp.ndarray) -> jnp.ndarray:
    """Dense (N, N) ``J^T J`` assembled by one scatter-add per batch; I on unused slots."""
    n = graph.state_size
    h = jnp.zeros((n, n), dtype=x.dtype).reshape(-1)
    for idx, blocks in hessian_blocks(graph, lins):
        # one flat scalar scatter: XLA:CPU runs 2-D fancy-index scatters far slower
        flat = (idx[:, :, None] * n + idx[:, None, :]).reshape(-1)
        h = h.at[flat].add(blocks.reshape(-1))
    return h.reshape(n, n) + jnp.diag(fixed_dofs(graph, x.dtype))
