"""Solvers: manifold GN converges on rotated chains (steps agree with Jacobians),
LM dense == PCG == generic dense path, and gradients through the solve (unrolled
and implicit) against finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dsg_jit_ros.geometry import se3
from dsg_jit_ros.learning import build_param_residual, inject_params, theta_from_model
from dsg_jit_ros.optimization.implicit import implicit_solver
from dsg_jit_ros.optimization.solvers import (
    GNConfig,
    LMConfig,
    gauss_newton,
    gauss_newton_manifold,
    solve,
)
from dsg_jit_ros.slam.manifold import build_manifold_metadata
from dsg_jit_ros.slam.measurements import (
    odom_se3_residual,
    pose_voxel_point_residual,
    prior_residual,
)
from dsg_jit_ros.world.model import WorldModel

RNG = np.random.default_rng(3)
POSE = jax.jit(jax.vmap(se3.vec_to_matrix))
VEC = jax.jit(jax.vmap(se3.matrix_to_vec))


def chain_truth(n):
    """A 3D helix-like chain with large rotations (T_world_body as values)."""
    steps = np.array([[1.0, 0.2, 0.1, 0.3, -0.2, 0.6]] * (n - 1))
    mats = [np.eye(4)]
    for s in steps:
        mats.append(mats[-1] @ np.asarray(se3.vec_to_matrix(jnp.asarray(s))))
    return np.asarray(VEC(jnp.asarray(np.stack(mats)))), steps


def chain_model(n, noise):
    truth, steps = chain_truth(n)
    wm = WorldModel()
    wm.register_residual("prior", prior_residual)
    wm.register_residual("odom_se3", odom_se3_residual)
    init = truth + noise * RNG.normal(size=truth.shape)
    ids = [wm.add_variable("pose_se3", v) for v in init]
    wm.add_factor("prior", (ids[0],), {"target": truth[0], "sigma": 1e-3})
    for i, s in enumerate(steps):
        wm.add_factor("odom_se3", (ids[i], ids[i + 1]), {"measurement": s, "sigma": 0.05})
    return wm, ids, truth


def rms_translation_error(x, index, ids, truth):
    est = np.stack([np.asarray(x[slice(*index[i])][:3]) for i in ids])
    return float(np.sqrt(np.mean(np.sum((est - truth[:, :3]) ** 2, axis=1))))


def test_manifold_gn_converges_on_rotated_chain():
    # DSG-JIT 0.7.1's GN moved away here (RMS 0.05 -> 2.77): its step and Jacobian disagreed.
    wm, ids, truth = chain_model(20, noise=0.05)
    x0, index = wm.pack_state()
    bs, mt = build_manifold_metadata((x0, index), wm.fg)
    x = jax.jit(lambda x: gauss_newton_manifold(wm.build_residual(), x, bs, mt, GNConfig(max_iters=8, damping=1e-6)))(x0)
    before, after = rms_translation_error(x0, index, ids, truth), rms_translation_error(x, index, ids, truth)
    assert before > 0.05 and after < 1e-6, (before, after)


def test_generic_dense_path_matches_graph_path():
    wm, ids, _ = chain_model(5, noise=0.1)
    x0, index = wm.pack_state()
    bs, mt = build_manifold_metadata((x0, index), wm.fg)
    cfg = GNConfig(max_iters=6, damping=1e-6)
    graph_residual_fn = wm.build_residual()
    plain = lambda x: graph_residual_fn(x)  # a plain callable: dense forward-mode Jacobian path
    a = jax.jit(lambda x: gauss_newton_manifold(graph_residual_fn, x, bs, mt, cfg))(x0)
    b = jax.jit(lambda x: gauss_newton_manifold(plain, x, bs, mt, cfg))(x0)
    np.testing.assert_allclose(a, b, atol=1e-9)


def poses_points_model(n_poses=8, n_points=40, n_obs=200, seed=0):
    """Poses with noisy odometry + points seen in the body frame, noisy start."""
    rng = np.random.default_rng(seed)
    wm = WorldModel()
    wm.register_residual("prior", prior_residual)
    wm.register_residual("odom_se3", odom_se3_residual)
    wm.register_residual("pose_voxel_point", pose_voxel_point_residual)
    truth = np.array([[0.5 * i, np.sin(0.3 * i), 0.1 * i, 0.05 * i, 0.0, 0.2 * i] for i in range(n_poses)])
    mats = np.asarray(POSE(jnp.asarray(truth)))
    points = rng.uniform(-3.0, 6.0, size=(n_points, 3))
    pid = [wm.add_variable("pose_se3", v + rng.normal(size=6) * 0.05) for v in truth]
    lid = [wm.add_variable("point3d", q + rng.normal(size=3) * 0.2) for q in points]
    wm.add_factor("prior", (pid[0],), {"target": truth[0], "sigma": 1e-3})
    for i in range(n_poses - 1):
        z = np.asarray(se3.matrix_to_vec(jnp.asarray(np.linalg.inv(mats[i]) @ mats[i + 1])))
        wm.add_factor("odom_se3", (pid[i], pid[i + 1]), {"measurement": z + rng.normal(size=6) * 0.01, "sigma": 0.05})
    for _ in range(n_obs):
        i, j = int(rng.integers(n_poses)), int(rng.integers(n_points))
        inv = np.linalg.inv(mats[i])
        p_body = inv[:3, :3] @ points[j] + inv[:3, 3] + rng.normal(size=3) * 0.02
        wm.add_factor("pose_voxel_point", (pid[i], lid[j]), {"point_body": p_body, "sigma": 0.05})
    return wm


def test_lm_dense_schur_and_pcg_reach_the_same_optimum():
    wm = poses_points_model()
    x0, index = wm.pack_state()
    results = {s: solve(wm.fg, x0, cfg=LMConfig(linear_solver=s)) for s in ("dense", "schur", "pcg")}
    dense = results["dense"]
    assert bool(dense.converged) and float(dense.cost) < 1e-2 * float(dense.initial_cost)
    assert float(dense.cost) > 1.0  # noisy measurements: a non-trivial optimum
    for name in ("schur", "pcg"):
        r = results[name]
        assert bool(r.converged), name
        assert float(r.cost) == pytest.approx(float(dense.cost), rel=1e-9), name
        np.testing.assert_allclose(r.x, dense.x, atol=1e-6, err_msg=name)


def test_identity_damping_reaches_the_same_optimum_with_every_solver():
    """GTSAM's ``lam * I`` damping (and its stop on a flat rejected try) with the dense,
    PCG and sparse solvers: the Marquardt-damped dense optimum, no more iterations."""
    wm, _, _ = chain_model(30, 0.3)
    x0, _ = wm.pack_state()
    ref = solve(wm.fg, x0, cfg=LMConfig(linear_solver="dense"))
    assert bool(ref.converged)
    for name in ("dense", "pcg", "sparse"):
        cfg = LMConfig(linear_solver=name, damping="identity", stop_on_flat_rejection=True)
        r = solve(wm.fg, x0, cfg=cfg)
        assert bool(r.converged), name
        assert float(r.cost) == pytest.approx(float(ref.cost), rel=1e-9), name
        np.testing.assert_allclose(r.x, ref.x, atol=1e-6, err_msg=name)
        assert int(r.iterations) <= int(ref.iterations), name
    with pytest.raises(ValueError, match="damping"):
        LMConfig(damping="levenberg")
    with pytest.raises(ValueError, match="schur"):
        LMConfig(linear_solver="schur", damping="identity")


@pytest.mark.parametrize("backend", ["cholmod", "cholespy"])
def test_sparse_solver_reaches_the_dense_optimum_with_each_backend(backend):
    """LM with the host sparse Cholesky forced to each backend (both are installed
    where the tests run) equals the dense LM, and the backend asked for is the one
    that ran."""
    from dsg_jit_ros.optimization import sparse_cholesky

    wm, _, _ = chain_model(30, 0.3)
    x0, _ = wm.pack_state()
    ref = solve(wm.fg, x0, cfg=LMConfig(linear_solver="dense"))
    runs = dict(sparse_cholesky.runs)
    r = solve(wm.fg, x0, cfg=LMConfig(linear_solver="sparse", sparse_backend=backend))
    jax.block_until_ready(r)
    assert bool(r.converged)
    assert float(r.cost) == pytest.approx(float(ref.cost), rel=1e-9)
    np.testing.assert_allclose(r.x, ref.x, atol=1e-6)
    assert int(r.iterations) == int(ref.iterations)
    ran = {b for b in sparse_cholesky.runs if sparse_cholesky.runs[b] != runs.get(b, 0)}
    assert ran == {backend}


def test_lm_with_an_unavailable_sparse_backend_is_a_clear_error(monkeypatch):
    import sys

    from dsg_jit_ros.optimization.sparse_backend import SparseBackendUnavailable

    monkeypatch.setitem(sys.modules, "cvxopt", None)  # as if cvxopt were not installed
    monkeypatch.setitem(sys.modules, "cvxopt.cholmod", None)
    wm, _, _ = chain_model(5, 0.1)
    x0, _ = wm.pack_state()
    cfg = LMConfig(linear_solver="sparse", sparse_backend="cholmod")  # 5 poses: a graph of its own, so a trace
    with pytest.raises(SparseBackendUnavailable, match=r"'cholmod' is not available.*pip install cvxopt==1\.3\.3"):
        solve(wm.fg, x0, cfg=cfg)
    with pytest.raises(ValueError, match="sparse_backend"):
        LMConfig(sparse_backend="superlu")


def learnable_model():
    """2 poses + 2 points, learnable odometry and body-frame observations."""
    wm = WorldModel()
    wm.register_residual("prior", prior_residual)
    wm.register_residual("odom_se3", odom_se3_residual)
    wm.register_residual("pose_voxel_point", pose_voxel_point_residual)
    p0 = wm.add_variable("pose_se3", [0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    p1 = wm.add_variable("pose_se3", [1.1, 0.1, 0.0, 0.0, 0.0, 0.3])
    v0 = wm.add_variable("point3d", [1.0, 1.0, 0.0])
    v1 = wm.add_variable("point3d", [2.0, -1.0, 0.5])
    wm.add_factor("prior", (p0,), {"target": np.zeros(6), "sigma": 0.01})
    wm.add_factor("odom_se3", (p0, p1), {"measurement": [1.0, 0.0, 0.0, 0.0, 0.0, 0.2], "sigma": 0.1})
    for p, v, z in [(p0, v0, [1.0, 1.0, 0.0]), (p1, v0, [0.1, 1.0, 0.0]), (p1, v1, [1.0, -1.0, 0.4]),
                    (p0, v1, [2.1, -1.0, 0.5])]:
        wm.add_factor("pose_voxel_point", (p, v), {"point_body": z, "sigma": 0.2})
    x0, index = wm.pack_state()
    target = jnp.array([1.2, 1.1, -0.1])
    v0s = slice(*index[v0])

    def loss_of(x):
        return jnp.sum((x[v0s] - target) ** 2) + x[slice(*index[p1])][5] ** 2

    return wm, x0, loss_of


def fd_grad(f, theta, eps=1e-6):
    out = {}
    for k, v in theta.items():
        g = np.zeros(v.shape)
        for idx in np.ndindex(v.shape):
            d = jnp.zeros_like(v).at[idx].set(eps)
            g[idx] = (float(f({**theta, k: v + d})) - float(f({**theta, k: v - d}))) / (2 * eps)
        out[k] = g
    return out


def test_unrolled_and_implicit_gradients_match_finite_differences():
    wm, x0, loss_of = learnable_model()
    theta = theta_from_model(wm)
    graph, bindings = wm.fg, build_param_residual(wm).bindings
    tight = LMConfig(rel_tol=1e-15, step_tol=1e-15, max_iters=50)

    @jax.jit
    def loss_unrolled(th):
        return loss_of(gauss_newton(inject_params(graph, th, bindings), x0, GNConfig(max_iters=15, damping=0.0)))

    implicit = implicit_solver(graph, x0, bindings, cfg=tight)
    loss_implicit = jax.jit(lambda th: loss_of(implicit(th)))
    implicit_gn = implicit_solver(graph, x0, bindings, cfg=tight, hessian="gauss_newton")
    loss_implicit_gn = jax.jit(lambda th: loss_of(implicit_gn(th)))

    # reference: central differences of the loss at the converged solution (15 GN
    # steps from a close start reach machine precision; LM's adaptive stopping
    # would add solver noise to the differences)
    reference = fd_grad(loss_unrolled, theta)
    g_unrolled = jax.jit(jax.grad(loss_unrolled))(theta)
    g_implicit = jax.jit(jax.grad(loss_implicit))(theta)
    g_gn = jax.jit(jax.grad(loss_implicit_gn))(theta)
    for k in theta:
        scale = np.abs(reference[k]).max()
        assert scale > 1e-2, k  # the gradient is not trivially zero
        np.testing.assert_allclose(g_unrolled[k], reference[k], atol=1e-5 * scale + 1e-8)
        np.testing.assert_allclose(g_implicit[k], reference[k], atol=1e-5 * scale + 1e-8)
        # Gauss-Newton Hessian: approximate on a non-zero-residual problem, still close
        np.testing.assert_allclose(g_gn[k], reference[k], atol=0.1 * scale)
