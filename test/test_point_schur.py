"""The moment-based Schur path (poses + isotropic point observations) builds the
same reduced system as the general one, and isotropic batches refuse
anisotropic weights."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from dsg_jit_ros.optimization import linear_solvers as ls
from dsg_jit_ros.optimization import linearize as lz
from dsg_jit_ros.slam.measurements import odom_se3_residual, pose_voxel_point_residual, prior_residual
from dsg_jit_ros.world.model import WorldModel


def _graph(robust: bool):
    rng = np.random.default_rng(4)
    wm = WorldModel(var_capacity={"pose_se3": 6, "voxel_cell3d": 40},
                    factor_capacity={"pose_voxel_point": 200, "prior": 45, "odom_se3": 6})
    for f_type, fn in (("prior", prior_residual), ("odom_se3", odom_se3_residual),
                       ("pose_voxel_point", pose_voxel_point_residual)):
        wm.register_residual(f_type, fn)
    wm.declare_factor_type("prior", ("voxel_cell3d",), {"target": np.zeros(3)}, isotropic=True)
    wm.declare_factor_type("pose_voxel_point", ("pose_se3", "voxel_cell3d"), {"point_body": np.zeros(3)}, isotropic=True)
    poses = [wm.add_variable("pose_se3", np.r_[rng.normal(0, 2, 3), rng.normal(0, 0.5, 3)]) for _ in range(5)]
    voxels = [wm.add_variable("voxel_cell3d", rng.uniform(-6, 6, 3)) for _ in range(30)]
    wm.remove_variable(voxels.pop(7))  # an unused point slot in the middle
    wm.add_factor("prior", (poses[0],), {"target": np.zeros(6), "sigma": 1e-2})
    for a, b in zip(poses[:-1], poses[1:]):
        wm.add_factor("odom_se3", (a, b), {"measurement": rng.normal(0, 0.3, 6), "sigma": np.r_[[0.05] * 3, [0.02] * 3]})
    pairs = [(p, v) for p in poses for v in voxels if rng.uniform() < 0.6]
    params = {"point_body": rng.normal(0, 3, (len(pairs), 3)), "sigma": rng.uniform(0.02, 0.2, len(pairs))}
    if robust:
        params["robust"] = ("huber", 1.0)
    wm.add_factors("pose_voxel_point", pairs, params)
    for v in voxels[:5]:
        wm.add_factor("prior", (v,), {"target": rng.normal(0, 3, 3), "sigma": 0.05})
    return wm


@pytest.mark.parametrize("robust", [False, True])
def test_point_schur_matches_general_schur(robust):
    wm = _graph(robust)
    g = wm.fg
    x, _ = wm.pack_state()
    lins, _ = lz.linearize(g, x)
    grad = lz.gradient(g, lins, x)
    assert ls.point_schur_plan(g) is not None
    general = dataclasses.replace(g, batches=tuple(dataclasses.replace(b, isotropic=False) for b in g.batches))
    assert ls.point_schur_plan(general) is None
    for lam in (0.0, 1e-4, 3.0):
        s1, r1, back1 = ls.schur_system(g, lins, x, grad, lam, 1e-6)
        s2, r2, back2 = ls.schur_system(general, lins, x, grad, lam, 1e-6)
        np.testing.assert_allclose(s1, s2, rtol=1e-10, atol=1e-9 * float(jnp.abs(s2).max()))
        np.testing.assert_allclose(r1, r2, rtol=1e-10, atol=1e-10 * float(jnp.abs(r2).max()))
        d = jnp.linalg.solve(s2, r2)
        np.testing.assert_allclose(back1(d), back2(d), rtol=1e-9, atol=1e-10 * float(jnp.abs(back2(d)).max()))
    # and the full steps agree with the dense solve
    step = ls.schur_solve(g, lins, x, grad, 1e-3, 1e-6)
    np.testing.assert_allclose(step, ls.dense_solve(g, lins, x, grad, 1e-3, 1e-6), rtol=1e-7, atol=1e-10)


def test_isotropic_batch_rejects_anisotropic_weights():
    wm = _graph(False)
    p, v = wm.variable_ids[0], wm.variable_ids[6]
    with pytest.raises(ValueError, match="isotropic"):
        wm.add_factor("pose_voxel_point", (p, v), {"point_body": np.zeros(3), "sigma": np.array([0.1, 0.1, 0.2])})
    fid = wm.add_factor("pose_voxel_point", (p, v), {"point_body": np.zeros(3), "sigma": 0.3})
    with pytest.raises(ValueError, match="isotropic"):
        wm.set_factor_params(fid, information=np.diag([1.0, 2.0, 3.0]))
