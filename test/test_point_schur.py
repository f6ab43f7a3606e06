"""The point Schur path (poses + point observations) builds the same reduced system
as the general one where it is exact (isotropic factors; anisotropic factors
sharing one shape per point, body- or map-frame), reaches the dense solver's
optimum where it is not (shapes that differ), and isotropic batches refuse
anisotropic weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dsg_jit_ros.optimization import linear_solvers as ls
from dsg_jit_ros.optimization import linearize as lz
from dsg_jit_ros.optimization.solvers import LMConfig, solve
from dsg_jit_ros.slam.measurements import (odom_se3_residual, pose_voxel_point_residual, pose_voxel_surface_residual,
                                           prior_residual)
from dsg_jit_ros.geometry.poses import pose_matrices, pose_values
from dsg_jit_ros.world.model import WorldModel

RESIDUALS = (("prior", prior_residual), ("anchor", prior_residual), ("odom_se3", odom_se3_residual),
             ("pose_voxel_point", pose_voxel_point_residual), ("pose_voxel_surface", pose_voxel_surface_residual))


def _model(iso: bool, obs: str, n_pose: int, n_vox: int) -> WorldModel:
    wm = WorldModel(var_capacity={"pose_se3": n_pose + 1, "voxel_cell3d": n_vox + 10},
                    factor_capacity={obs: 500, "prior": n_vox + 10, "odom_se3": n_pose + 1, "anchor": 2})
    for f_type, fn in RESIDUALS:
        wm.register_residual(f_type, fn)
    wm.declare_factor_type("prior", ("voxel_cell3d",), {"target": np.zeros(3)}, isotropic=iso)
    wm.declare_factor_type(obs, ("pose_se3", "voxel_cell3d"), {"point_body": np.zeros(3)}, isotropic=iso)
    return wm


def _surface_sqrt(rng):
    """A random map-frame square-root information of a surface patch (one stiff axis)."""
    u = Rotation.random(random_state=rng).as_matrix()
    return np.diag(1.0 / np.array([0.02, 0.3, 0.5])) @ u.T


def _graph(robust: bool, shape: str):
    """Random poses + voxels with observations; ``shape``: "isotropic", "shared"
    (body-frame observations of a voxel whitened by ``w W_l R_p``, one W_l per
    voxel, at the current poses) or "surface" (map-frame observations whitened by
    ``w W_l``)."""
    rng = np.random.default_rng(4)
    iso = shape == "isotropic"
    obs = "pose_voxel_surface" if shape == "surface" else "pose_voxel_point"
    wm = _model(iso, obs, 5, 30)
    poses = [wm.add_variable("pose_se3", np.r_[rng.normal(0, 2, 3), rng.normal(0, 0.5, 3)]) for _ in range(5)]
    voxels = [wm.add_variable("voxel_cell3d", rng.uniform(-6, 6, 3)) for _ in range(30)]
    wm.remove_variable(voxels.pop(7))  # an unused point slot in the middle
    wm.add_factor("anchor", (poses[0],), {"target": np.zeros(6), "sigma": 1e-2})
    for a, b in zip(poses[:-1], poses[1:]):
        wm.add_factor("odom_se3", (a, b), {"measurement": rng.normal(0, 0.3, 6), "sigma": np.r_[[0.05] * 3, [0.02] * 3]})
    pairs = [(p, v) for p in poses for v in voxels if rng.uniform() < 0.6]
    w = rng.uniform(5.0, 50.0, len(pairs))
    shapes = {v: _surface_sqrt(rng) for v in voxels}
    mats = dict(zip(poses, pose_matrices(wm.get_variable_values(poses))))
    params = {"point_body": rng.normal(0, 3, (len(pairs), 3))}
    if iso:
        params["sigma"] = 1.0 / w
    elif shape == "shared":
        params["sqrt_info"] = np.stack([wi * shapes[v] @ mats[p][:3, :3] for wi, (p, v) in zip(w, pairs)])
    else:
        params["sqrt_info"] = np.stack([wi * shapes[v] for wi, (p, v) in zip(w, pairs)])
    if robust:
        params["robust"] = ("huber", 1.0)
    wm.add_factors(obs, pairs, params)
    for v in voxels[:5]:
        prior = {"target": rng.normal(0, 3, 3)}
        prior.update({"sigma": 0.05} if iso else {"sqrt_info": 3.0 * shapes[v]})
        wm.add_factor("prior", (v,), prior)
    return wm


@jax.jit
def _both_systems(g, x, lam):
    """(moment system, general system, Schur step, dense step) at ``x`` (compiled once
    per graph structure: eager linearisation is slow)."""
    lins, _ = lz.linearize(g, x)
    grad = lz.gradient(g, lins, x)
    s1, r1, back1 = ls.schur_system(g, lins, x, grad, lam, 1e-6)
    s2, r2, back2 = ls.general_schur_system(g, lins, x, grad, lam, 1e-6)
    d = jnp.linalg.solve(s2, r2)
    steps = (ls.schur_solve(g, lins, x, grad, lam, 1e-6), ls.dense_solve(g, lins, x, grad, lam, 1e-6))
    return (s1, r1, back1(d)), (s2, r2, back2(d)), steps


@pytest.mark.parametrize("robust", [False, True])
@pytest.mark.parametrize("shape", ["isotropic", "shared", "surface"])
def test_point_schur_matches_general_schur(robust, shape):
    wm = _graph(robust, shape)
    g = wm.fg
    x, _ = wm.pack_state()
    assert ls.point_schur_plan(g) is not None
    for lam in (0.0, 1e-4, 3.0):
        (s1, r1, d1), (s2, r2, d2), (step_schur, step_dense) = _both_systems(g, x, lam)
        np.testing.assert_allclose(s1, s2, rtol=1e-10, atol=1e-9 * float(jnp.abs(s2).max()))
        np.testing.assert_allclose(r1, r2, rtol=1e-10, atol=1e-10 * float(jnp.abs(r2).max()))
        np.testing.assert_allclose(d1, d2, rtol=1e-9, atol=1e-10 * float(jnp.abs(d2).max()))
        if lam > 0:  # and the full steps agree with the dense solve
            np.testing.assert_allclose(step_schur, step_dense, rtol=1e-7, atol=1e-10)


def _walls(shared: bool, seed: int = 0, n_pose: int = 6, n_vox: int = 60, slide: float = 0.2):
    """Keyframes seeing wall patches (map-frame observations): each keyframe's centroid
    slides along its patch by up to ``slide`` m (partial views), 1 cm across it; start
    0.1 m / 2 deg off.  ``shared``: one surface information per patch (as the window
    whitens), else each observation's own (the patch normal seen 3 degrees off)."""
    rng = np.random.default_rng(seed)
    wm = _model(False, "pose_voxel_surface", n_pose, n_vox)
    truth = np.stack([np.eye(4)] * n_pose)
    truth[:, :3, :3] = Rotation.from_rotvec(np.outer(0.1 * np.arange(n_pose), [0, 0, 1])).as_matrix()
    truth[:, :3, 3] = np.outer(np.arange(n_pose), [0.5, 0.1, 0.0])
    basis = Rotation.random(n_vox, random_state=rng).as_matrix()  # column 0: the patch normal
    centres = rng.uniform(-8, 8, (n_vox, 3))
    start = truth.copy()
    start[1:, :3, 3] += rng.normal(0, 0.1, (n_pose - 1, 3))
    start[1:, :3, :3] = start[1:, :3, :3] @ Rotation.from_rotvec(rng.normal(0, 0.03, (n_pose - 1, 3))).as_matrix()
    poses = wm.add_variables("pose_se3", pose_values(start))
    voxels = wm.add_variables("voxel_cell3d", centres + rng.normal(0, 0.1, centres.shape))
    wm.add_factor("anchor", (int(poses[0]),), {"target": pose_values(truth[:1])[0], "sigma": 1e-3})
    for i in range(n_pose - 1):
        inc = pose_values((np.linalg.inv(truth[i]) @ truth[i + 1])[None])[0]
        wm.add_factor("odom_se3", (int(poses[i]), int(poses[i + 1])), {
            "measurement": inc + rng.normal(0, [0.02] * 3 + [0.005] * 3), "sigma": np.r_[[0.05] * 3, [0.02] * 3]})
    pairs, points, sqrt = [], [], []
    for i in range(n_pose):
        for l in np.flatnonzero(rng.uniform(size=n_vox) < 0.7):
            u = basis[l]
            seen = centres[l] + u[:, 1:] @ rng.uniform(-slide, slide, 2) + u[:, 0] * rng.normal(0, 0.01)
            pairs.append((int(poses[i]), int(voxels[l])))
            points.append(truth[i, :3, :3].T @ (seen - truth[i, :3, 3]))
            if not shared:
                u = u @ Rotation.from_rotvec(rng.normal(0, 0.05, 3)).as_matrix()
            sqrt.append(rng.uniform(1, 3) * np.diag(1 / np.array([0.02, 0.5, 0.5])) @ u.T)
    wm.add_factors("pose_voxel_surface", pairs, {"point_body": np.array(points), "sqrt_info": np.array(sqrt),
                                                 "robust": ("cauchy", 1.0)})
    return wm


@pytest.mark.parametrize("shared", [True, False])
def test_point_schur_on_walls(shared):
    """Partial views (centroids sliding along their patches, non-zero residuals): with
    one shape per patch the system is exact; with shapes that differ it is the
    Hessian of trace-matched informations, and LM with it ends at the dense optimum."""
    wm = _walls(shared)
    g, x0 = wm.fg, wm.state_vector()
    (s1, r1, _), (s2, r2, _), _ = _both_systems(g, x0, 0.0)
    if shared:
        np.testing.assert_allclose(s1, s2, rtol=1e-10, atol=1e-10 * float(jnp.abs(s2).max()))
        np.testing.assert_allclose(r1, r2, rtol=1e-10, atol=1e-10 * float(jnp.abs(r2).max()))
    else:
        assert float(jnp.abs(s1 - s2).max()) > 1e-6 * float(jnp.abs(s2).max())
    base = dict(max_iters=150, rel_tol=1e-12, step_tol=1e-12)
    dense = solve(g, x0, cfg=LMConfig(linear_solver="dense", **base))
    schur = solve(g, x0, cfg=LMConfig(linear_solver="schur", **base))
    assert bool(dense.converged) and bool(schur.converged)
    assert float(dense.cost) < 0.2 * float(dense.initial_cost)
    np.testing.assert_allclose(float(schur.cost), float(dense.cost), rtol=1e-9)
    np.testing.assert_allclose(schur.x, dense.x, atol=1e-5)  # voxels along their walls: flat cost


def test_isotropic_batch_rejects_anisotropic_weights():
    wm = _graph(False, "isotropic")
    p, v = wm.variable_ids[0], wm.variable_ids[6]
    with pytest.raises(ValueError, match="isotropic"):
        wm.add_factor("pose_voxel_point", (p, v), {"point_body": np.zeros(3), "sigma": np.array([0.1, 0.1, 0.2])})
    fid = wm.add_factor("pose_voxel_point", (p, v), {"point_body": np.zeros(3), "sigma": 0.3})
    with pytest.raises(ValueError, match="isotropic"):
        wm.set_factor_params(fid, information=np.diag([1.0, 2.0, 3.0]))


@pytest.mark.parametrize("chunk", [4, 7, 64])
def test_point_schur_in_chunks_up_to_the_last_used_point(monkeypatch, chunk):
    """The cross terms are summed ``point_schur.CHUNK`` points at a time up to the last
    used point slot (runtime data): with chunks of 4 / 7 points the 29 voxels of the
    random graph (a freed slot in the middle, the 10 spare slots after the last one
    skipped) span several chunks and one partial one; the system must equal the general
    path's as in one chunk (64).  The counter-example, a bound one chunk short, drops
    the voxels of the last chunk."""
    from dsg_jit_ros.optimization import point_schur

    monkeypatch.setattr(point_schur, "CHUNK", chunk)
    wm = _graph(True, "surface")
    g = wm.fg
    x, _ = wm.pack_state()
    fresh = lambda: jax.jit(lambda *a: _both_systems.__wrapped__(*a))  # noqa: E731  (a new trace: CHUNK is static)
    (s1, r1, _), (s2, r2, _), _ = fresh()(g, x, 1e-4)
    np.testing.assert_allclose(s1, s2, rtol=1e-10, atol=1e-9 * float(jnp.abs(s2).max()))
    np.testing.assert_allclose(r1, r2, rtol=1e-10, atol=1e-10 * float(jnp.abs(r2).max()))
    if chunk < 30:  # counter-example: stop one chunk early
        real = point_schur._cross_sums
        monkeypatch.setattr(point_schur, "_cross_sums", lambda wm_, wu, gm, n: real(wm_, wu, gm, n - chunk))
        (s3, _, _), _, _ = fresh()(g, x, 1e-4)
        assert float(jnp.abs(s3 - s2).max()) > 1e-3 * float(jnp.abs(s2).max())


def test_point_schur_of_planar_poses_takes_the_planar_sums_and_matches_general_schur(monkeypatch):
    """Poses with z, roll and pitch fixed (the window's planar mode; the spare pose slot is
    fixed entirely) take ``_planar_cross_sums``, about a fifth of the products: the system
    must equal the general path's.  That the planar sums ran is shown by full sums that
    would put NaN everywhere; a pose with a free z takes the full sums again (the
    counter-example: the NaN shows)."""
    from dsg_jit_ros.mapping.planar import PLANAR_FIXED
    from dsg_jit_ros.optimization import point_schur

    rng = np.random.default_rng(9)
    wm = _model(False, "pose_voxel_surface", 5, 30)
    poses = [wm.add_variable("pose_se3", np.r_[rng.normal(0, 2, 2), 0.0, 0.0, 0.0, rng.normal(0, 1.0)])
             for _ in range(5)]
    voxels = [wm.add_variable("voxel_cell3d", rng.uniform(-6, 6, 3)) for _ in range(30)]
    wm.set_fixed_dofs(poses, PLANAR_FIXED)
    wm.add_factor("anchor", (poses[0],), {"target": np.zeros(6), "sigma": 1e-2})
    for a, b in zip(poses[:-1], poses[1:]):
        wm.add_factor("odom_se3", (a, b), {"measurement": rng.normal(0, 0.3, 6), "sigma": np.r_[[0.05] * 3, [0.02] * 3]})
    pairs = [(p, v) for p in poses for v in voxels if rng.uniform() < 0.6]
    shapes = {v: _surface_sqrt(rng) for v in voxels}
    wm.add_factors("pose_voxel_surface", pairs, {
        "point_body": rng.normal(0, 3, (len(pairs), 3)),
        "sqrt_info": np.stack([rng.uniform(5.0, 50.0) * shapes[v] for _, v in pairs]), "robust": ("huber", 1.0)})
    full = point_schur._cross_sums
    monkeypatch.setattr(point_schur, "_cross_sums", lambda *a: tuple(t * jnp.nan for t in full(*a)))
    fresh = lambda: jax.jit(lambda *a: _both_systems.__wrapped__(*a))  # noqa: E731  (a new trace)
    x, _ = wm.pack_state()
    for lam in (1e-4, 3.0):  # (lam 0: a voxel no pose sees has a singular block, on either path)
        (s1, r1, d1), (s2, r2, d2), _ = fresh()(wm.fg, x, lam)
        assert np.all(np.isfinite(np.asarray(s1)))
        np.testing.assert_allclose(s1, s2, rtol=1e-10, atol=1e-9 * float(jnp.abs(s2).max()))
        np.testing.assert_allclose(r1, r2, rtol=1e-10, atol=1e-10 * float(jnp.abs(r2).max()))
        np.testing.assert_allclose(d1, d2, rtol=1e-9, atol=1e-10 * float(jnp.abs(d2).max()))
    wm.set_fixed_dofs(poses[2:3], np.array([False, False, False, True, True, False]))  # z free on one pose: the full sums
    x, _ = wm.pack_state()
    (s1, _, _), _, _ = fresh()(wm.fg, x, 1e-4)
    assert np.isnan(np.asarray(s1)).any()
