"""Fixed tangent components (``WorldModel.set_fixed_dofs``, planar mode): every
linear solver leaves them exactly where they are and reaches the optimum over the
free ones (gradient of the cost along the free directions ~ 0, by finite
differences of the cost along retractions)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dsg_jit_ros.geometry import se3
from dsg_jit_ros.optimization.solvers import LMConfig, solve
from dsg_jit_ros.slam.measurements import odom_se3_residual, pose_voxel_surface_residual, prior_residual
from dsg_jit_ros.geometry.poses import pose_matrices, pose_values
from dsg_jit_ros.world.graph import graph_cost
from dsg_jit_ros.world.model import WorldModel

PLANAR_FIXED = np.array([False, False, True, True, True, False])  # rho_z, phi_x, phi_y


def _planar_problem(with_voxels: bool):
    """A planar chain of 6 poses (yaw up to ~pi) whose measurements are NOT planar
    (noise in z, roll, pitch too), optionally with voxels seen from the poses."""
    rng = np.random.default_rng(7)
    wm = WorldModel(var_capacity={"pose_se3": 7, "voxel_cell3d": 12},
                    factor_capacity={"odom_se3": 7, "prior": 2, "pose_voxel_surface": 80})
    for f_type, fn in (("prior", prior_residual), ("odom_se3", odom_se3_residual),
                       ("pose_voxel_surface", pose_voxel_surface_residual)):
        wm.register_residual(f_type, fn)
    yaw = np.linspace(0.0, 3.1, 6)
    start = np.zeros((6, 6))
    start[:, 0], start[:, 1], start[:, 5] = np.cos(yaw) * 3, np.sin(yaw) * 3, yaw
    start[-1, 5] = np.pi - 1e-9  # a pose right at the rotation-vector branch point
    poses = wm.add_variables("pose_se3", start)
    wm.set_fixed_dofs(poses, PLANAR_FIXED)
    wm.add_factor("prior", (int(poses[0]),), {"target": start[0], "sigma": 1e-2})
    for a, b in zip(poses[:-1], poses[1:]):
        wm.add_factor("odom_se3", (int(a), int(b)), {"measurement": np.r_[1.0, 0.3, 0.0, 0.0, 0.0, 0.5]
                                                     + rng.normal(0, 0.05, 6), "sigma": 0.05})
    if with_voxels:
        centres = rng.uniform(-4, 4, (10, 3))
        voxels = wm.add_variables("voxel_cell3d", centres)
        mats = pose_matrices(start)
        pairs = [(int(p), int(v)) for p in poses for v in voxels]
        seen = np.stack([m[:3, :3].T @ (c - m[:3, 3]) for m in mats for c in centres])
        wm.add_factors("pose_voxel_surface", pairs, {"point_body": seen + rng.normal(0, 0.1, seen.shape),
                                                     "sqrt_info": np.diag([50.0, 5.0, 2.0])})
    return wm, poses, start


@pytest.mark.parametrize("solver,with_voxels", [("dense", False), ("pcg", False), ("sparse", False),
                                                ("dense", True), ("schur", True)])
def test_fixed_components_stay_and_free_ones_are_optimal(solver, with_voxels):
    wm, poses, start = _planar_problem(with_voxels)
    graph, x0 = wm.fg, wm.state_vector()
    result = solve(graph, x0, cfg=LMConfig(linear_solver=solver, max_iters=100, rel_tol=1e-14, step_tol=1e-14))
    assert bool(result.converged) and float(result.cost) < 0.8 * float(result.initial_cost)
    wm.update_from_state(result.x)
    vals = wm.get_variable_values(poses)
    # z, roll, pitch exactly as they were (zero)
    np.testing.assert_array_equal(vals[:, 2], 0.0)
    np.testing.assert_allclose(vals[:, 3:5], 0.0, atol=1e-12)
    # first-order optimality along the free tangent directions of every pose
    x = jnp.asarray(result.x)
    cost = jax.jit(lambda xx: graph_cost(graph, xx))
    offsets = graph.layout.offsets[graph.layout.position("pose_se3")]
    eps = 1e-6
    for p in poses:
        slot = wm.variable_slot(int(p))
        sl = slice(offsets + 6 * slot, offsets + 6 * slot + 6)
        for k in np.flatnonzero(~PLANAR_FIXED):
            d = np.zeros(6)
            d[k] = eps
            plus = x.at[sl].set(se3.retract(x[sl], jnp.asarray(d)))
            minus = x.at[sl].set(se3.retract(x[sl], jnp.asarray(-d)))
            grad = (float(cost(plus)) - float(cost(minus))) / (2 * eps)
            assert abs(grad) < 1e-4 * max(1.0, float(result.cost)), (p, k, grad)


def test_fixed_dofs_shape_is_checked_and_reused_slots_start_free():
    wm, poses, _ = _planar_problem(False)
    with pytest.raises(ValueError, match="shape"):
        wm.set_fixed_dofs(poses[:2], np.ones(5, dtype=bool))
    factors = wm.variable_factor_ids(int(poses[-1]))
    wm.remove_factors(factors)
    wm.remove_variable(int(poses[-1]))
    new = wm.add_variable("pose_se3", pose_values(np.eye(4)[None])[0])
    assert np.all(np.asarray(wm.fg.dof_masks[wm.fg.layout.position("pose_se3")])[wm.variable_slot(new)])
