"""The solve of a graph's used prefix (``optimization.prefix``, ``window.prefix_fraction``)
against the solve of the whole graph: the same state, cost and pose factor when every
used slot lies inside the cut, another problem when one lies past it (so the fit test
matters); a second executable, compiled once; the window and the pipeline's warm-up
that compile it after the first (deferred to a background thread for a node)."""

import dataclasses

import numpy as np
import pytest

from dsg_jit_ros.mapping.keyframes import KeyframeConfig
from dsg_jit_ros.mapping.pipeline import InputConfig, PipelineConfig, SlamPipeline
from dsg_jit_ros.mapping.voxelize import VoxelConfig
from dsg_jit_ros.mapping.window_config import WindowConfig
from dsg_jit_ros.optimization import prefix
from dsg_jit_ros.optimization.compile_count import compile_count
from dsg_jit_ros.optimization.solvers import LMConfig, solve
from dsg_jit_ros.slam.measurements import odom_se3_residual, pose_voxel_point_residual, prior_residual
from dsg_jit_ros.world.model import WorldModel
from test_window import simulate

N_POSE, VOXEL_CAP, OBS_CAP = 6, 512, 1024
FULL = LMConfig(linear_solver="schur", max_iters=5, keep_factor=True, keep_linearization=False)


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
def test_prefix_solve_equals_the_whole_solve_when_it_fits(first_voxel_slot, fits):
    wm = _model(first_voxel_slot)
    graph, x0 = wm.host_graph, wm.state_vector()
    plan = prefix.prefix_plan(graph, 0.5)
    assert plan.type_caps == (N_POSE + 1, VOXEL_CAP // 2) or plan.type_caps == (VOXEL_CAP // 2, N_POSE + 1)
    assert prefix.prefix_fits(graph, plan) is fits
    whole, cut = solve(graph, x0, cfg=FULL), prefix.solve_prefix(graph, np.asarray(x0), plan, cfg=FULL)
    assert float(whole.cost) < 0.5 * float(whole.initial_cost)  # a real solve, not a no-op
    assert isinstance(cut.x, np.ndarray) and cut.x.shape == (graph.state_size,)
    if not fits:  # the voxels past the cut are not in the cut graph: another problem
        assert float(cut.cost) > 1.5 * float(whole.cost)
        return
    np.testing.assert_allclose(cut.x, np.asarray(whole.x), rtol=0, atol=1e-10)
    np.testing.assert_allclose(float(cut.cost), float(whole.cost), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(cut.factor), np.asarray(whole.factor), rtol=0, atol=1e-8)
    assert int(cut.iterations) == int(whole.iterations)


def test_an_observation_row_past_the_cut_or_naming_a_slot_past_it_does_not_fit():
    wm = _model(0)
    graph = wm.host_graph
    plan = prefix.prefix_plan(graph, 0.5)
    assert prefix.prefix_fits(graph, plan)
    b = next(i for i, b in enumerate(graph.batches) if b.f_type == "pose_voxel_point")
    batch, n = graph.batches[b], plan.batch_caps[b]
    voxel_arg = batch.arg_types.index(next(t for t in batch.arg_types if t.name == "voxel_cell3d"))
    past_row = batch.mask.copy()
    past_row[n] = True  # a used row past the cut
    past_slot = batch.slots.copy()
    past_slot[0, voxel_arg] = VOXEL_CAP - 1  # a used row naming a voxel slot past the cut
    for mask, slots in ((past_row, batch.slots), (batch.mask, past_slot)):
        cut = dataclasses.replace(graph, batches=tuple(
            dataclasses.replace(x, mask=mask, slots=slots) if i == b else x for i, x in enumerate(graph.batches)))
        assert not prefix.prefix_fits(cut, plan)


def test_the_prefix_program_compiles_once_and_neither_recompiles():
    cfg = dataclasses.replace(FULL, min_diag=2e-6)  # a static field no other test uses: programs of its own
    fits, other = _model(0), _model(0)
    plan = prefix.prefix_plan(fits.host_graph, 0.5)
    solve(fits.host_graph, fits.state_vector(), cfg=cfg)
    before = compile_count("levenberg_marquardt")
    prefix.solve_prefix(fits.host_graph, np.asarray(fits.state_vector()), plan, cfg=cfg)
    assert compile_count("levenberg_marquardt") == before + 1  # the smaller shapes: a second executable
    prefix.solve_prefix(other.host_graph, np.asarray(other.state_vector()), plan, cfg=cfg, max_iters=2)
    solve(other.host_graph, other.state_vector(), cfg=cfg, max_iters=3)
    assert compile_count("levenberg_marquardt") == before + 1


def test_state_prefix_and_restore_round_trip():
    wm = _model(0)
    graph = wm.host_graph
    plan = prefix.prefix_plan(graph, 0.5)
    x = np.arange(graph.state_size, dtype=float)
    small = prefix.state_prefix(graph.layout, plan, x)
    assert small.shape == (prefix.graph_prefix(graph, plan).state_size,)
    other = prefix.state_restore(graph.layout, plan, -small, x)
    blocks, got = graph.layout.split(x), graph.layout.split(other)
    for b, g, n in zip(blocks, got, plan.type_caps):
        np.testing.assert_array_equal(g[:n], -b[:n])
        np.testing.assert_array_equal(g[n:], b[n:])


def test_no_plan_for_small_capacities_or_fraction_zero_and_the_fraction_checked():
    wm = WorldModel(var_capacity={"pose_se3": 4, "voxel_cell3d": 100}, factor_capacity={"odom_se3": 4})
    wm.register_residual("odom_se3", odom_se3_residual)
    wm.add_variable("pose_se3", np.zeros(6))
    assert prefix.prefix_plan(wm.host_graph, 0.5) is None  # below MIN_CUT: nothing to cut
    assert prefix.prefix_plan(_model(0).host_graph, 0.0) is None  # 0: off
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="prefix_fraction"):
            WindowConfig(prefix_fraction=bad)


# a small window: ~270-430 voxels and ~270-1,760 observation rows in use (of 1,200 and 6,000)
WINDOW = PipelineConfig(
    window=WindowConfig(size=5, voxel=VoxelConfig(1.0, 0.3, 12.0), max_voxels=1200, max_observations=6000,
                        prefix_fraction=0.5),
    keyframe=KeyframeConfig(min_translation=0.5, min_rotation=0.25),
    inputs=InputConfig(max_pending_clouds=3, max_linear_speed=5.0, max_angular_speed=3.0),
)


def _replay(pipe: SlamPipeline, odom, clouds, start: int = 0, stop: int | None = None) -> None:
    for k in range(start, len(odom) if stop is None else stop):
        pipe.add_odometry(float(k), odom[k])
        updates, rejections = pipe.add_cloud(float(k), clouds[k])
        assert rejections == [] and len(updates) == 1


@pytest.fixture(scope="module")
def run():
    return simulate(16, np.random.default_rng(5))


def test_the_window_on_its_prefix_tracks_the_whole_window(run):
    """Half the capacities hold every keyframe's graph; 0.3 (360 voxels) only the first
    ones', then the window solves whole: the same trajectory either way."""
    _, odom, clouds = run
    poses, share = {}, {}
    for fraction in (0.0, 0.5, 0.3):
        cfg = dataclasses.replace(WINDOW, window=dataclasses.replace(WINDOW.window, prefix_fraction=fraction))
        pipe = SlamPipeline(cfg)
        pipe.warm_up()
        assert (pipe.prefix_ready is not None and pipe.prefix_ready.is_set()) is (fraction > 0)
        _replay(pipe, odom, clouds)
        assert pipe.compilations_after_warmup() == 0 and pipe.window.solves >= pipe.keyframes > 0
        share[fraction] = pipe.window.prefix_solves / pipe.window.solves
        poses[fraction] = np.stack([m for _, m in pipe.window.trajectory] + [m for _, m in pipe.window.keyframe_poses])
        pipe.close()
    assert share[0.0] == 0 and share[0.5] == 1 and 0 < share[0.3] < 0.5, share
    np.testing.assert_allclose(poses[0.5], poses[0.0], rtol=0, atol=1e-7)
    np.testing.assert_allclose(poses[0.3], poses[0.0], rtol=0, atol=1e-7)


def test_a_deferred_prefix_compiles_in_the_background_and_is_used_from_then_on(run):
    _, odom, clouds = run
    pipe = SlamPipeline(WINDOW)
    pipe.warm_up(defer=True)
    assert not pipe.prefix_ready.is_set() and pipe.warm.baseline is None  # a part still to come
    _replay(pipe, odom, clouds, stop=3)
    assert pipe.window.prefix_solves == 0  # not ready: the whole program
    assert pipe.warm_up_background() and not pipe.warm_up_background()  # started once
    assert pipe.warm.prefix_done.wait(300) and pipe.warm.prefix_error is None and pipe.prefix_ready.is_set()
    assert pipe.prefix_warmup_s > 0 and pipe.warm.baseline is not None
    _replay(pipe, odom, clouds, start=3)
    assert pipe.window.prefix_solves > 0 and pipe.compilations_after_warmup() == 0
    pipe.close()


def test_close_waits_for_the_background_compile():
    """A node stopped while the background compile runs must not exit under it (a thread
    stopped inside XLA's compiler at interpreter exit aborts the process): close() joins it."""
    pipe = SlamPipeline(WINDOW)
    pipe.warm_up(defer=True)
    assert pipe.warm_up_background()
    pipe.close()
    assert pipe.warm.prefix_done.is_set() and pipe.warm.prefix_error is None
    assert pipe.graph_ready is None or pipe.graph_ready.is_set()
