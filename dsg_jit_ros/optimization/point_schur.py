"""The reduced pose system of poses + point observations, without (pose, point) blocks.

Graphs of SE(3) poses and 3-D points (the online window: keyframes and voxels)
where every factor on a point is an observation of it from a pose, in the body
frame ``e = R^T (v - t) - p`` (``schur_structure`` ``POINT_IN_BODY``, declared in
the residual's ``world.factor_type`` record) or in the map frame ``e = v - R p - t``
(``POINT_IN_MAP``), or a prior ``e = v - target`` (``PRIOR``), with any square-root
information per factor.

An observation f of point l from pose p with map-frame information
``Omega_f = J_v^T J_v`` (robust weight included) has ``J_pose^T J_v = D_p^T X(u_f) Omega_f``
with ``X(u) = [-I; -[u]x]``, ``D_p = diag(R_p, R_p)`` and the map-frame lever
``u_f = v_l - t_p`` (body-frame form) or ``u_f = R_p p_f`` (map-frame form).  This
path takes every point's factors to share one information *shape*:
``Omega_f = s_f Omega_hat_l`` with ``s_f = tr(Omega_f)`` and ``Omega_hat_l = H_l / tr(H_l)``
(``H_l`` the point's exact Hessian block).  Then ``Hpl`` between point l and pose p
is fixed by the scalar ``s_lp = sum s_f`` and the vector ``sum s_f u_f``, and the
Schur complement ``sum_l Hpl Hll^-1 Hlp`` is a few (L x P) x (L x P) contractions of
3x3 blocks: O(L P^2) work, no (pose, point) scatter.  They are summed ``CHUNK`` points
at a time up to the last used point slot (``_cross_sums``): a window's point capacity
is sized for its largest map and mostly unused (mit-csail: 400 of 2,048 slots at the
median), and even a full one runs 1.8x faster in chunks that stay in cache than as
whole (L, P*9) operands (4,096 voxels: the solve 37 -> 21 ms).  When every pose
moves in x, y and yaw only (z, roll and pitch fixed: planar mode; decided at run time,
both variants in one program) only the entries those components touch are summed
(``_planar_cross_sums``, about a fifth of the products): the fixed components' rows are
replaced by identity rows anyway.

Exactness: the exact Gauss-Newton system whenever each point's factors share one
shape (isotropic factors always do; the window whitens every observation of a
voxel with that voxel's surface information).  Otherwise it is the Gauss-Newton
system of the trace-matched informations: positive definite, with the exact
gradient, so LM still converges to the same optimum.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dsg_jit_ros.optimization import linearize as lin_mod
from dsg_jit_ros.world.factor_type import POINT_IN_BODY, POINT_IN_MAP, PRIOR
from dsg_jit_ros.world.graph import FactorGraph, lift_blocks


def point_schur_plan(graph: FactorGraph):
    """``(pose position, point position, observation batches, prior batches)`` when
    the moment path applies, else None (static: decided at trace time)."""
    layout = graph.layout
    elim = [i for i, t in enumerate(layout.types) if t.manifold == "euclidean"]
    keep = [i for i in range(len(layout.types)) if i not in elim]
    if len(elim) != 1 or len(keep) != 1:
        return None
    pl, pp = elim[0], keep[0]
    if layout.types[pl].dim != 3 or layout.types[pp].manifold != "se3":
        return None
    points, priors = [], []
    for i, b in enumerate(graph.batches):
        if pl not in b.arg_positions:
            continue
        kind = b.spec.schur_structure
        if kind in (POINT_IN_BODY, POINT_IN_MAP) and b.arg_positions == (pp, pl):
            points.append(i)
        elif kind == PRIOR and b.arg_positions == (pl,):
            priors.append(i)
        else:
            return None
    return (pp, pl, tuple(points), tuple(priors)) if points else None


def _hat(v):
    """(..., 3) -> (..., 3, 3) cross-product matrices."""
    z = jnp.zeros_like(v[..., 0])
    x, y, w = v[..., 0], v[..., 1], v[..., 2]
    return jnp.stack([jnp.stack([z, -w, y], -1), jnp.stack([w, z, -x], -1), jnp.stack([-y, x, z], -1)], -2)


def _inv3(m):
    """Inverses of (..., 3, 3) matrices by the adjugate (XLA:CPU's batched LU is ~30x slower here)."""
    a, b, c = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    d, e, f = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    g, h, i = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    co0, co1, co2 = e * i - f * h, f * g - d * i, d * h - e * g
    adj = jnp.stack([jnp.stack([co0, c * h - b * i, b * f - c * e], -1),
                     jnp.stack([co1, a * i - c * g, c * d - a * f], -1),
                     jnp.stack([co2, b * g - a * h, a * e - b * d], -1)], -2)
    return adj / (a * co0 + b * co1 + c * co2)[..., None, None]


def _mul3(a, b):
    """Products of (..., 3, 3) matrices as broadcast sums (XLA:CPU's batched dot is slow for 3x3)."""
    return jnp.sum(a[..., :, :, None] * b[..., None, :, :], axis=-2)


def _lever(b, lifted, pp: int, pl: int):
    """(cap, 3) map-frame lever ``u_f`` of each observation: ``J_pose = W [-I, [u]x] D``
    (``v - t`` for body-frame observations, ``R p`` for map-frame ones)."""
    pose = lifted[pp][b.slots[:, 0]]  # (cap, 4, 4)
    if b.spec.schur_structure == POINT_IN_MAP:
        return jnp.einsum("cij,cj->ci", pose[:, :3, :3], b.params["point_body"])
    return lifted[pl][b.slots[:, 1]] - pose[:, :3, 3]


CHUNK = 256  # points per step of ``_cross_sums``


def _in_chunks(step, zero, wm, wu, gmat, n_used):
    """``step(wm_c, wu_c, g_c, acc) -> acc`` over ``CHUNK`` points at a time up to
    ``n_used`` (runtime data), from ``zero``; the arrays padded to whole chunks."""
    pad = -wm.shape[0] % CHUNK
    if pad:
        wm, wu, gmat = (jnp.concatenate([v, jnp.zeros((pad,) + v.shape[1:], v.dtype)]) for v in (wm, wu, gmat))

    def chunk(c, acc):
        take = lambda v: jax.lax.dynamic_slice_in_dim(v, c * CHUNK, CHUNK, 0)  # noqa: E731
        return step(take(wm), take(wu), take(gmat), acc)

    return jax.lax.fori_loop(0, (n_used + CHUNK - 1) // CHUNK, chunk, zero)


def _cross_sums(wm, wu, gmat, n_used):
    """The three (pose, pose) 3x3-block sums of ``sum_l K_lp G_l K_lq^T`` (translation-translation,
    translation-rotation, rotation-rotation), each ``(P, P, 3, 3)``, over the points
    ``[0, n_used)`` only: the point slots past the last used one (a window sized for its
    largest map uses a fraction of them) have no observations and add nothing, so the
    products run over ``CHUNK`` points at a time up to ``n_used`` (runtime data: no
    recompile as the map grows), as three matrix products (GEMMs) per chunk, not per
    (point, pose, pose) triple.  ``wm`` (L, P): s_lp; ``wu`` (L, P, 3): sum s_f u_f;
    ``gmat`` (L, 3, 3): G_l."""
    n_pose = wm.shape[1]

    def step(wm_c, wu_c, g_c, acc):
        u0, u1, u2 = wu_c[..., 0], wu_c[..., 1], wu_c[..., 2]  # (B, P)
        # a[l, j, q, k] = (G_l [su_lq]x)[j, k], built in the layout of the products below
        g_ = [g_c[:, :, m, None] for m in range(3)]  # columns of G_l, (B, 3, 1)
        a = jnp.stack([g_[1] * u2[:, None] - g_[2] * u1[:, None], g_[2] * u0[:, None] - g_[0] * u2[:, None],
                       g_[0] * u1[:, None] - g_[1] * u0[:, None]], axis=-1)  # (B, 3, P, 3)
        wg = (wm_c[:, :, None, None] * g_c[:, None]).reshape(CHUNK, -1)  # s_lq G_l, (B, P*9)
        # sum_l [su_lp]x G_l [su_lq]x = sum_{l, j} [su_lp]x[i, j] a[l, j, q, k]: contract (l, j) at once
        z = jnp.zeros_like(u0.T)
        lhs = jnp.stack([jnp.stack([z, -u2.T, u1.T], -1), jnp.stack([u2.T, z, -u0.T], -1),
                         jnp.stack([-u1.T, u0.T, z], -1)], axis=1).reshape(3 * n_pose, 3 * CHUNK)  # (p i), (l j)
        tl, tr, br = acc
        return (tl + wm_c.T @ wg, tr - wm_c.T @ a.reshape(CHUNK, -1), br - lhs @ a.reshape(3 * CHUNK, 3 * n_pose))

    dtype = wm.dtype
    zero = (jnp.zeros((n_pose, 9 * n_pose), dtype), jnp.zeros((n_pose, 9 * n_pose), dtype),
            jnp.zeros((3 * n_pose, 3 * n_pose), dtype))
    tl, tr, br = _in_chunks(step, zero, wm, wu, gmat, n_used)
    return (tl.reshape(n_pose, n_pose, 3, 3), tr.reshape(n_pose, 3, n_pose, 3).transpose(0, 2, 1, 3),
            br.reshape(n_pose, 3, n_pose, 3).transpose(0, 2, 1, 3))


def _planar_cross_sums(wm, wu, gmat, n_used):
    """``_cross_sums`` of poses that move in x, y and yaw only: the entries those touch,
    (x, y) x (x, y) of the translation block, (x, y) x z of the translation-rotation
    block and z x z of the rotation block; the rest zero.  Each pose's rotation is then
    about z, so the fixed components' rows (replaced by identity rows afterwards) are the
    only ones the zeros reach.  About a fifth of the products of the full sums."""
    n_pose = wm.shape[1]

    def step(wm_c, wu_c, g_c, acc):
        u0, u1 = wu_c[..., 0], wu_c[..., 1]  # (B, P)
        # a[l, j, q] = (G_l [su_lq]x)[j, 2] = G_l[j, 0] su_lq,1 - G_l[j, 1] su_lq,0, j in (x, y)
        a = g_c[:, :2, 0, None] * u1[:, None] - g_c[:, :2, 1, None] * u0[:, None]  # (B, 2, P)
        wg = (wm_c[:, :, None, None] * g_c[:, None, :2, :2]).reshape(CHUNK, -1)  # s_lq G_l[xy, xy], (B, P*4)
        # row z of [su_lp]x is (-su_lp,1, su_lp,0, 0)
        lhs = jnp.stack([-u1.T, u0.T], axis=-1).reshape(n_pose, 2 * CHUNK)  # p, (l j)
        tl, tr, br = acc
        return (tl + wm_c.T @ wg, tr - wm_c.T @ a.reshape(CHUNK, -1), br - lhs @ a.reshape(2 * CHUNK, n_pose))

    dtype = wm.dtype
    zero = (jnp.zeros((n_pose, 4 * n_pose), dtype), jnp.zeros((n_pose, 2 * n_pose), dtype),
            jnp.zeros((n_pose, n_pose), dtype))
    tl, tr, br = _in_chunks(step, zero, wm, wu, gmat, n_used)
    tl_full = jnp.zeros((n_pose, n_pose, 3, 3), dtype).at[:, :, :2, :2].set(
        tl.reshape(n_pose, n_pose, 2, 2))
    tr_full = jnp.zeros((n_pose, n_pose, 3, 3), dtype).at[:, :, :2, 2].set(
        tr.reshape(n_pose, 2, n_pose).transpose(0, 2, 1))
    br_full = jnp.zeros((n_pose, n_pose, 3, 3), dtype).at[:, :, 2, 2].set(br)
    return tl_full, tr_full, br_full


PLANAR_FIXED_COMPONENTS = (2, 3, 4)  # z, roll, pitch in the tangent order [rho, phi]


def point_schur_system(graph: FactorGraph, lins, x, g, lam, min_diag: float, plan):
    """``(s, rhs, back)`` of the damped system (see ``linear_solvers.schur_system``),
    in O(L P^2) work.  Marquardt scaling: ``lam * max(diag, min_diag)`` on both the
    pose and the point blocks (as the general path)."""
    pp, pl, points, priors = plan
    layout = graph.layout
    dtype = x.dtype
    n_pose, n_pt = layout.capacities[pp], layout.capacities[pl]
    n_red = 6 * n_pose
    blocks = layout.split(x)
    lifted = lift_blocks(layout, blocks)
    rot = lifted[pp][:, :3, :3]  # R_p (map <- body)
    # pose-only factors (odometry, anchors): their 6k x 6k blocks, one flat scatter each
    hpp = jnp.zeros(n_red * n_red, dtype=dtype)
    for b, lin in zip(graph.batches, lins):
        if pl in b.arg_positions:
            continue
        idx = jnp.concatenate([b.slots[:, a, None] * 6 + jnp.arange(6) for a in range(len(b.arg_positions))], axis=1)
        jac = jnp.concatenate(lin.jacobians, axis=2)
        blk = jnp.einsum("cdk,cdl->ckl", jac, jac)
        hpp = hpp.at[(idx[:, :, None] * n_red + idx[:, None, :]).reshape(-1)].add(blk.reshape(-1))
    hpp = hpp.reshape(n_red, n_red)
    # exact point blocks H_l (observations and priors)
    omegas = {}
    hl = jnp.zeros((n_pt, 9), dtype=dtype)
    for i in points + priors:
        b, lin = graph.batches[i], lins[i]
        jv = lin.jacobians[-1]  # d e / d v, (cap, d, 3), whitened and robust-weighted
        omegas[i] = jnp.einsum("cdk,cdl->ckl", jv, jv)  # map-frame information
        hl = hl.at[b.slots[:, -1]].add(omegas[i].reshape(-1, 9))
    # unused slots (and fixed components): identity, their Jacobian columns being zero
    hl = hl.reshape(n_pt, 3, 3) + jax.vmap(jnp.diag)(1.0 - graph.dof_masks[pl].astype(dtype))
    shape = hl / jnp.maximum(jnp.trace(hl, axis1=1, axis2=2), 1e-300)[:, None, None]  # Omega_hat_l, trace 1
    hl_damped = hl + jax.vmap(jnp.diag)(lam * jnp.maximum(jnp.diagonal(hl, axis1=1, axis2=2), min_diag))
    hl_inv = _inv3(hl_damped)
    # per (point, pose): s_lp = sum of tr(Omega_f), and the weighted lever sum of s_f u_f;
    # per pose: the exact-shape diagonal blocks sum_f s_f X(u_f) Omega_hat_l X(u_f)^T
    wm = jnp.zeros((n_pt * n_pose,), dtype=dtype)
    wu = jnp.zeros((n_pt * n_pose, 3), dtype=dtype)
    diag = jnp.zeros((n_pose, 6, 6), dtype=dtype)
    for i in points:
        b = graph.batches[i]
        s_f = jnp.trace(omegas[i], axis1=1, axis2=2)
        u_f = _lever(b, lifted, pp, pl)
        pair = b.slots[:, 1] * n_pose + b.slots[:, 0]
        wm = wm.at[pair].add(s_f)
        wu = wu.at[pair].add(s_f[:, None] * u_f)
        om = shape[b.slots[:, 1]] * s_f[:, None, None]
        om_ux = om @ _hat(u_f)
        blk = jnp.concatenate([jnp.concatenate([om, -om_ux], -1),
                               jnp.concatenate([-jnp.swapaxes(om_ux, 1, 2), -_hat(u_f) @ om_ux], -1)], -2)
        diag = diag.at[b.slots[:, 0]].add(blk)
    wm = wm.reshape(n_pt, n_pose)
    wu = wu.reshape(n_pt, n_pose, 3)
    dt = jax.vmap(lambda r: jax.scipy.linalg.block_diag(r.T, r.T))(rot)  # D_p^T, (P, 6, 6)
    diag = jnp.einsum("pab,pbc,pdc->pad", dt, diag, dt)
    hpp = hpp + jnp.einsum("pq,pab->paqb", jnp.eye(n_pose, dtype=dtype), diag).reshape(n_red, n_red)
    dp = jnp.maximum(jnp.diag(hpp), min_diag)
    s = hpp + jnp.diag(lam * dp)
    # minus Hpl Hll^-1 Hlp = sum_l K_lp G_l K_lq^T, K_lp = [-s_lp I; -[su_lp]x], G_l = Omega_hat (H_l + lam D_l)^-1 Omega_hat
    gmat = _mul3(_mul3(shape, hl_inv), shape)
    used = jnp.any(graph.dof_masks[pl], axis=1)
    n_used = jnp.max(jnp.where(used, jnp.arange(1, n_pt + 1), 0))  # points past the last used slot add nothing
    free = 1.0 - lin_mod.fixed_dofs(graph, dtype, [pp])
    # every pose planar (z, roll, pitch fixed; unused slots are fixed entirely): the cheaper sums
    planar = jnp.all(free.reshape(n_pose, 6)[:, PLANAR_FIXED_COMPONENTS] == 0.0)
    tl, tr, br = jax.lax.cond(planar, _planar_cross_sums, _cross_sums, wm, wu, gmat, n_used)
    bl = jnp.swapaxes(jnp.swapaxes(tr, 0, 1), 2, 3)
    cross = jnp.concatenate([jnp.concatenate([tl, tr], -1), jnp.concatenate([bl, br], -1)], -2)
    s = s - jnp.einsum("pab,pqbc,qdc->paqd", dt, cross, dt).reshape(n_red, n_red)
    gb = layout.split(g)
    gl = gb[pl]
    y = jnp.einsum("lij,ljk,lk->li", shape, hl_inv, gl)  # Omega_hat (H_l + lam D_l)^-1 g_l
    top = jnp.einsum("pji,pj->pi", rot, -(wm.T @ y))
    bottom = jnp.einsum("pji,pj->pi", rot, -jnp.sum(jnp.cross(wu, y[:, None, :]), axis=0))
    rhs = -gb[pp].reshape(-1) + jnp.concatenate([top, bottom], axis=1).reshape(-1)
    # unused pose slots and fixed pose DOFs (planar mode): identity rows, zero right-hand side
    s = s * free[:, None] * free[None, :] + jnp.diag((1.0 - free) * (1.0 + lam))  # as damped identity rows
    rhs = rhs * free

    def back(d_red):
        d = d_red.reshape(n_pose, 6)
        alpha = jnp.einsum("pij,pj->pi", rot, d[:, :3])
        beta = jnp.einsum("pij,pj->pi", rot, d[:, 3:])
        u = -(wm @ alpha) + jnp.sum(jnp.cross(wu, beta[None, :, :]), axis=1)
        dl = jnp.einsum("lij,lj->li", hl_inv, -gl - jnp.einsum("lij,lj->li", shape, u))
        out = [None] * len(layout.types)
        out[pp], out[pl] = d, dl
        return layout.join(out)

    return s, rhs, back
