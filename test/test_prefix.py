"""The solve of a graph's used prefix (``optimization.prefix``, ``LMConfig.prefix_fraction``)
against the solve of the whole graph: the same state, cost and pose factor when every
used slot lies inside the cut (the small program ran), the whole program when one
lies past it, one executable for both."""

import dataclasses

import numpy as np
import pytest

from dsg_jit_ros.optimization import prefix
from dsg_jit_ros.optimization.compile_count import compile_count
from dsg_jit_ros.optimization.solvers import LMConfig, solve
from dsg_jit_ros.slam.measurements import odom_se3_residual, pose_voxel_point_residual, prior_residual
from dsg_jit_ros.world.model import WorldModel

N_POSE, VOXEL_CAP, OBS_CAP = 6, 512, 1024
FULL = LMConfig(linear_solver="schur", max_iters=5, keep_factor=True, keep_linearization=False)
CUT = dataclasses.replace(FULL, prefix_fraction=0.5)


def _model(first_voxel_slot: int) -> WorldModel:
    """Poses in a row seeing 40 voxels, every observation noisy; the voxels occupy
    slots ``first_voxel_slot`` onwards (the slots below were taken and released)."""
    rng = np.random.default_rng(3)
    wm = WorldModel(var_capacity={"pose_se3": N_POSE + 1, "voxel_cell3d": VOXEL_CAP},
                    factor_capacity={"pose_voxel_point": OBS_CAP, "prior": VOXEL_CAP, "odom_se3": N_POSE, "anchor": 2})
    for f_type, fn in (("prior", prior_residual), ("anchor", prior_residual), ("odom_se3", odom_se3_residual),
                       ("pose_voxel_point", pose_voxel_point_residual)):
        wm.register_residual(f_type, fn)
    wm.declare_factor_type("prior", ("voxel_cell3d",), {"target": np.zeros(3)}, isotropic=True)
    wm.declare_factor_type("pose_voxel_point", ("pose_se3", "voxel_cell3d"), {"point_body": np.zeros(3)},
                           isotropic=True)
    filler = [wm.add_variable("voxel_cell3d", np.zeros(3)) for _ in range(first_voxel_slot)]
    truth = rng.uniform(-5, 5, (40, 3))
    voxels = [wm.add_variable("voxel_cell3d", v + rng.normal(0, 0.3, 3)) for v in truth]
    for v in filler:
        wm.remove_variable(v)
    poses = [wm.add_variable("pose_se3", np.r_[0.5 * i + rng.normal(0, 0.1), rng.normal(0, 0.1, 2),
                                               rng.normal(0, 0.03, 3)]) for i in range(N_POSE)]
    wm.add_factor("anchor", (poses[0],), {"target": np.zeros(6), "sigma": 1e-2})
    for i, (a, b) in enumerate(zip(poses[:-1], poses[1:])):
        wm.add_factor("odom_se3", (a, b), {"measurement": np.r_[0.5, 0, 0, 0, 0, 0] + rng.normal(0, 0.02, 6),
                                           "sigma": np.r_[[0.05] * 3, [0.02] * 3]})
    pairs = [(p, v) for p in poses for v in voxels]
    body = np.stack([truth[j] - np.r_[0.5 * i, 0, 0] for i in range(N_POSE) for j in range(len(voxels))])
    wm.add_factors("pose_voxel_point", pairs, {"point_body": body + rng.normal(0, 0.02, body.shape),
                                               "sigma": np.full(len(pairs), 0.05)})
    for v, t in zip(voxels[:3], truth[:3]):
        wm.add_factor("prior", (v,), {"target": t, "sigma": 0.1})
    return wm


@pytest.mark.parametrize("first_voxel_slot, fits", [(0, True), (300, False)])
def test_prefix_solve_equals_the_whole_solve(first_voxel_slot, fits):
    wm = _model(first_voxel_slot)
    graph, x0 = wm.host_graph, wm.state_vector()
    plan = prefix.prefix_plan(graph, CUT.prefix_fraction)
    assert plan.type_caps == (N_POSE + 1, VOXEL_CAP // 2) or plan.type_caps == (VOXEL_CAP // 2, N_POSE + 1)
    assert bool(prefix.prefix_fits(graph, plan)) is fits
    whole, cut = solve(graph, x0, cfg=FULL), solve(graph, x0, cfg=CUT)
    assert float(whole.cost) < 0.5 * float(whole.initial_cost)  # a real solve, not a no-op
    np.testing.assert_allclose(np.asarray(cut.x), np.asarray(whole.x), rtol=0, atol=1e-10)
    np.testing.assert_allclose(float(cut.cost), float(whole.cost), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(cut.factor), np.asarray(whole.factor), rtol=0, atol=1e-8)
    assert int(cut.iterations) == int(whole.iterations)


def test_one_executable_for_both_programs_and_the_full_capacity_flag():
    fits, past = _model(0), _model(300)
    solve(fits.host_graph, fits.state_vector(), cfg=CUT)
    before = compile_count("levenberg_marquardt")
    solve(past.host_graph, past.state_vector(), cfg=CUT)
    forced = solve(fits.host_graph, fits.state_vector(), cfg=CUT, full_capacity=True)
    assert compile_count("levenberg_marquardt") == before
    whole = solve(fits.host_graph, fits.state_vector(), cfg=FULL)
    np.testing.assert_allclose(np.asarray(forced.x), np.asarray(whole.x), rtol=0, atol=1e-10)


def test_state_prefix_and_restore_round_trip():
    wm = _model(0)
    graph = wm.host_graph
    plan = prefix.prefix_plan(graph, 0.5)
    x = np.arange(graph.state_size, dtype=float)
    small = prefix.state_prefix(graph.layout, plan, x)
    assert small.shape == (prefix.graph_prefix(graph, plan).state_size,)
    other = np.asarray(prefix.state_restore(graph.layout, plan, -small, x))
    blocks, got = graph.layout.split(x), graph.layout.split(other)
    for b, g, n in zip(blocks, got, plan.type_caps):
        np.testing.assert_array_equal(np.asarray(g[:n]), -np.asarray(b[:n]))
        np.testing.assert_array_equal(np.asarray(g[n:]), np.asarray(b[n:]))


def test_no_plan_for_small_capacities_and_fraction_checked():
    wm = WorldModel(var_capacity={"pose_se3": 4, "voxel_cell3d": 100}, factor_capacity={"odom_se3": 4})
    wm.register_residual("odom_se3", odom_se3_residual)
    wm.add_variable("pose_se3", np.zeros(6))
    assert prefix.prefix_plan(wm.host_graph, 0.5) is None  # below MIN_CUT: nothing to cut
    with pytest.raises(ValueError, match="prefix_fraction"):
        LMConfig(prefix_fraction=1.0)
