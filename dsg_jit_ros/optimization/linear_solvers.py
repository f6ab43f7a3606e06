"""Solving the damped normal equations ``(J^T J + lam D) d = -J^T r``.

``dense``: assemble the dense Hessian, Cholesky (small systems, differentiable).
``schur``: eliminate Euclidean variables (points / voxels), dense Cholesky on the
           reduced pose system (poses + many points: the online window).
``pcg``:   preconditioned conjugate gradients with block-Jacobi preconditioner,
           Hessian-vector products through the per-factor Jacobians (large pose
           graphs; memory linear in the number of factors).
``sparse``: host sparse Cholesky via ``pure_callback``: the direct path for large
           pose graphs (not differentiable).  Backend (``sparse_backend``):
           CHOLMOD through CVXOPT when installed (symbolic analysis once per
           sparsity pattern, numeric factorisation per solve), else cholespy
           (factorised from scratch per solve).
``D`` is Marquardt's scaling, the Hessian's diagonal floored at ``min_diag``
(``LMConfig.damping = "marquardt"``), or the identity (``"identity"``, GTSAM's).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from dsg_jit_ros.optimization import linearize as lin_mod
from dsg_jit_ros.optimization import sparse_backend, sparse_cholesky
from dsg_jit_ros.optimization.point_schur import point_schur_plan, point_schur_system
from dsg_jit_ros.world.graph import FactorGraph

LINEAR_SOLVERS = ("dense", "pcg", "schur", "sparse")
DAMPING_MODES = sparse_cholesky.DAMPING_MODES  # "marquardt": lam max(diag H, min_diag); "identity": lam I


def dense_solve(graph: FactorGraph, lins, x, g, lam, min_diag: float, scaled: bool = True):
    """Damped Newton step by dense Cholesky (differentiable)."""
    h = lin_mod.dense_hessian(graph, lins, x)
    d = jnp.maximum(jnp.diag(h), min_diag) if scaled else jnp.ones_like(g)
    chol = jnp.linalg.cholesky(h + jnp.diag(lam * d))
    step = jax.scipy.linalg.cho_solve((chol, True), -g)
    return step


def pcg_solve(graph: FactorGraph, lins, x, g, lam, min_diag: float, tol: float, max_iters: int,
              scaled: bool = True):
    """Damped Newton step by block-Jacobi PCG; returns (step, iterations).
    ``scaled``: Marquardt damping ``lam max(diag H, min_diag)``, else ``lam I``."""
    layout = graph.layout
    diag_blocks = lin_mod.hessian_diagonal_blocks(graph, lins, x)
    dvec = layout.join([jnp.maximum(jnp.diagonal(hb, axis1=1, axis2=2), min_diag) for hb in diag_blocks])
    if not scaled:
        dvec = jnp.ones_like(dvec)
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

    init = (x0, r0, z0, z0, jnp.dot(r0, z0), jnp.zeros((), jnp.int32))  # not weakly typed: one trace of body
    xk, _, _, _, _, k = jax.lax.while_loop(cond, body, init)
    return xk, k


def _reduced_columns(graph: FactorGraph, keep: list[int]):
    """Offsets of the kept (non-eliminated) types in the reduced pose system."""
    offsets, acc = {}, 0
    for p in keep:
        offsets[p] = acc
        acc += graph.layout.types[p].dim * graph.layout.capacities[p]
    return offsets, acc


def schur_system(graph: FactorGraph, lins, x, g, lam, min_diag: float):
    """The reduced pose system of the damped normal equations.

    Returns ``(s, rhs, back)``: ``s = Hpp + lam Dp - Hpl (Hll + lam Dl)^-1 Hlp``
    over the kept (pose) variables, its right-hand side, and ``back(d_red)``
    recovering the full step.  Shared by the Schur solver and the marginal
    covariance (``optimization.covariance``).  Graphs of poses and point
    observations (``point_schur_plan``) take the moment-based path
    (``optimization.point_schur``).
    """
    plan = point_schur_plan(graph)
    if plan is not None:
        return point_schur_system(graph, lins, x, g, lam, min_diag, plan)
    return general_schur_system(graph, lins, x, g, lam, min_diag)


def general_schur_system(graph: FactorGraph, lins, x, g, lam, min_diag: float):
    """``schur_system`` by explicit (pose, point) blocks: any factor structure."""
    layout = graph.layout
    elim = [i for i, t in enumerate(layout.types) if t.manifold == "euclidean"]
    keep = [i for i in range(len(layout.types)) if i not in elim]
    red_off, n_red = _reduced_columns(graph, keep)
    dtype = x.dtype
    hpp = jnp.zeros((n_red, n_red), dtype=dtype)
    hll = {p: jnp.zeros((layout.capacities[p], layout.types[p].dim, layout.types[p].dim), dtype) for p in elim}
    hlp = {p: jnp.zeros((layout.capacities[p], n_red, layout.types[p].dim), dtype) for p in elim}
    for b, lin in zip(graph.batches, lins):
        lm_args = [a for a, p in enumerate(b.arg_positions) if p in elim]
        if len(lm_args) > 1:
            raise ValueError(f"schur solver: factor {b.f_type!r} joins two eliminated variables")
        pose_args = [a for a in range(len(b.arg_positions)) if a not in lm_args]
        cols = {
            a: red_off[b.arg_positions[a]] + b.slots[:, a, None] * b.arg_types[a].dim + jnp.arange(b.arg_types[a].dim)
            for a in pose_args
        }
        for a in pose_args:
            for c in pose_args:
                blk = jnp.einsum("cdk,cdl->ckl", lin.jacobians[a], lin.jacobians[c])
                hpp = hpp.at[cols[a][:, :, None], cols[c][:, None, :]].add(blk)
        for l in lm_args:
            p, slot, jl = b.arg_positions[l], b.slots[:, l], lin.jacobians[l]
            hll[p] = hll[p].at[slot].add(jnp.einsum("cdk,cdl->ckl", jl, jl))
            for a in pose_args:
                blk = jnp.einsum("cdk,cdl->ckl", lin.jacobians[a], jl)  # (cap, dim_pose, dim_l)
                hlp[p] = hlp[p].at[slot[:, None], cols[a], :].add(blk)
    gb = layout.split(g)
    g_red = jnp.concatenate([gb[p].reshape(-1) for p in keep])
    hpp = hpp + jnp.diag(lin_mod.fixed_dofs(graph, dtype, keep))  # unused slots, fixed DOFs: identity rows
    dp = jnp.maximum(jnp.diag(hpp), min_diag)
    s = hpp + jnp.diag(lam * dp)
    rhs = -g_red
    hll_inv = {}
    for p in elim:
        h = hll[p] + jax.vmap(jnp.diag)(1.0 - graph.dof_masks[p].astype(dtype))  # unused/fixed: identity
        dl = jnp.maximum(jnp.diagonal(h, axis1=1, axis2=2), min_diag)
        h = h + jax.vmap(jnp.diag)(lam * dl)
        hll_inv[p] = jnp.linalg.inv(h)
        c = jnp.einsum("lia,lab->lib", hlp[p], hll_inv[p])  # Hpl Hll^-1, (L, n_red, d)
        s = s - jnp.einsum("lia,lja->ij", c, hlp[p])
        rhs = rhs + jnp.einsum("lia,la->i", c, gb[p])

    def back(d_red):
        out = []
        for i in range(len(layout.types)):
            if i in keep:
                n = layout.types[i].dim * layout.capacities[i]
                out.append(jax.lax.dynamic_slice_in_dim(d_red, red_off[i], n).reshape(-1, layout.types[i].dim))
            else:
                back_rhs = -gb[i] - jnp.einsum("lia,i->la", hlp[i], d_red)
                out.append(jnp.einsum("lab,lb->la", hll_inv[i], back_rhs))
        return layout.join(out)

    return s, rhs, back


def reduced_offset(graph: FactorGraph, position: int) -> int:
    """Offset of variable type ``position`` in the reduced (Schur) pose system."""
    keep = [i for i, t in enumerate(graph.layout.types) if t.manifold != "euclidean"]
    return _reduced_columns(graph, keep)[0][position]


def has_schur_structure(graph: FactorGraph) -> bool:
    """True when the graph has both Euclidean (eliminable) and other variables."""
    kinds = {t.manifold == "euclidean" for t in graph.layout.types}
    return kinds == {True, False}


def schur_solve(graph: FactorGraph, lins, x, g, lam, min_diag: float):
    """Damped Newton step eliminating the Euclidean variables (points, voxels).

    Their Hessian is block-diagonal as long as no factor joins two of them, so
    ``S = Hpp - Hpl Hll^-1 Hlp`` is formed densely over the pose variables only
    (memory ~ n_points x pose_dims), solved by Cholesky, and the points are
    recovered by back-substitution.  Falls back to ``dense_solve`` when the graph
    has no Euclidean or no pose variables.
    """
    if not has_schur_structure(graph):
        return dense_solve(graph, lins, x, g, lam, min_diag)
    return schur_solve_factor(graph, lins, x, g, lam, min_diag)[0]


def schur_solve_factor(graph: FactorGraph, lins, x, g, lam, min_diag: float):
    """``schur_solve`` (graphs with Schur structure) that also returns the lower
    Cholesky factor of the damped reduced pose system it solved: ``(step, L)``.
    ``L L^T = S`` over the kept (pose) variables in ``reduced_offset`` order; its
    inverse's blocks are the poses' marginal covariances at ``x`` (damped by ``lam``)."""
    s, rhs, back = schur_system(graph, lins, x, g, lam, min_diag)
    chol = jnp.linalg.cholesky(s)
    return back(jax.scipy.linalg.cho_solve((chol, True), rhs)), chol


def _host_sparse_solve(n: int, n_batches: int, damping: str, min_diag: float, backend: str,
                       free, lam, rhs, *arrays) -> np.ndarray:
    """Host side of ``sparse_solve``: the cached ``BlockSystem`` of this pattern and
    backend (analysed on first sight), numeric factorisation, solve."""
    columns = arrays[:n_batches]
    live = arrays[n_batches:2 * n_batches]
    blocks = arrays[2 * n_batches:]
    system = sparse_cholesky.system_for(n, free, columns, live, backend)
    out = system.solve(blocks, float(lam), rhs, damping, min_diag)
    return out.astype(rhs.dtype)


def sparse_solve(graph: FactorGraph, lins, x, g, lam, min_diag: float, damping: str = "marquardt",
                 backend: str = "auto"):
    """Damped Newton step by a host sparse Cholesky through a callback.

    The direct path for large pose graphs where block-Jacobi PCG converges too
    slowly (parking-garage); not differentiable (use it inside LM only).  The
    sparsity pattern is worked out once and reused by every later solve with that
    pattern (``optimization.sparse_cholesky``); with the ``cholmod`` backend so is
    the symbolic analysis, and each iteration pays only the numeric factorisation.
    ``backend`` (``auto``/``cholmod``/``cholespy``) is resolved here, at trace
    time (``sparse_backend.resolve``: an unavailable named backend raises).
    """
    backend = sparse_backend.resolve(backend)
    pairs = lin_mod.hessian_blocks(graph, lins)
    columns = [p[0] for p in pairs]
    blocks = [p[1] for p in pairs]
    live = [b.mask for b in graph.batches]
    free = jnp.concatenate([m.reshape(-1) for m in graph.dof_masks])
    callback = functools.partial(_host_sparse_solve, graph.state_size, len(pairs), damping, float(min_diag), backend)
    return jax.pure_callback(callback, jax.ShapeDtypeStruct(g.shape, g.dtype),
                             free, jnp.asarray(lam, g.dtype), -g, *columns, *live, *blocks)
