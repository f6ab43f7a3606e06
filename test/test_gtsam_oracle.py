"""GTSAM as an oracle for the LM solver: same objective, same optimum.

Pose graphs: GTSAM's ``readG2o`` graph plus a ``PriorFactorPose3`` on key 0 against
our ``world_model_from_pose_graph`` model.  We check (1) the costs agree at the
initial values (residual, weighting and ½ convention), (2) both LM runs reach the
same error, (3) GTSAM's own ``graph.error`` at our solution is its optimum.

Poses + points: a small synthetic problem whose observation factor is a
``gtsam.CustomFactor`` implementing exactly our ``pose_voxel_point`` error, so both
libraries minimise the identical objective.

The three dense pose-graph solves share one compiled executable: one WorldModel
with common (padded) capacities is emptied and refilled per data set; unused slots
are masked out by the library.  (Separate WorldModels would each recompile: the
registered ``ResidualSpec`` objects are static pytree metadata compared by identity.)
"""

from __future__ import annotations

from pathlib import Path

import gtsam
import jax
import numpy as np
import pytest

from dsg_jit_ros.geometry import se3
from dsg_jit_ros.io.g2o import PoseGraph, read_g2o
from dsg_jit_ros.optimization.compile_count import compile_count
from dsg_jit_ros.optimization.solvers import LMConfig, solve
from dsg_jit_ros.slam.measurements import between_se3_residual, pose_voxel_point_residual, prior_residual
from dsg_jit_ros.geometry.poses import pose_values
from dsg_jit_ros.slam.pose_graph import ANCHOR_SIGMA, world_model_from_pose_graph
from dsg_jit_ros.world.model import WorldModel

DATA = Path("/work/shared/data/posegraph")
DATASETS = ("tinyGrid3D.g2o", "smallGrid3D.g2o", "gtsam_pose3example.txt")
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="pose-graph data set not available")

DENSE = LMConfig(linear_solver="dense")
INITIAL_RTOL = 1e-9
FINAL_RTOL = 1e-6

_vec_to_matrix = jax.jit(jax.vmap(se3.vec_to_matrix))


# ---------------------------------------------------------------- helpers
def gtsam_lm(graph: gtsam.NonlinearFactorGraph, initial: gtsam.Values) -> tuple[gtsam.Values, int]:
    """GTSAM LM with the oracle tolerances; returns (solution, iterations)."""
    params = gtsam.LevenbergMarquardtParams()
    params.setRelativeErrorTol(1e-10)
    params.setAbsoluteErrorTol(1e-14)
    params.setMaxIterations(100)
    optimizer = gtsam.LevenbergMarquardtOptimizer(graph, initial, params)
    return optimizer.optimize(), optimizer.iterations()


def gtsam_pose_graph(path: Path) -> tuple[gtsam.NonlinearFactorGraph, gtsam.Values]:
    """``readG2o(path, 3D)`` plus the anchor prior of ``world_model_from_pose_graph``."""
    graph, initial = gtsam.readG2o(str(path), True)
    noise = gtsam.noiseModel.Isotropic.Sigma(6, ANCHOR_SIGMA)
    graph.add(gtsam.PriorFactorPose3(0, initial.atPose3(0), noise))
    return graph, initial


def padded_pose_graph_model(pg: PoseGraph, n_cap: int, m_cap: int, wm: WorldModel | None = None):
    """``world_model_from_pose_graph(pg)`` with capacities (n_cap poses, m_cap edges).

    Given ``wm`` (a model made by this function), its variables and factors are
    removed and ``pg`` is loaded into it instead: the graph's static structure (and
    with it the compiled solver) is reused.  Returns (wm, var id per pose row).
    """
    if wm is None:
        wm = WorldModel(var_capacity={"pose_se3": n_cap}, factor_capacity={"between_se3": m_cap, "prior": 1})
        wm.register_residual("between_se3", between_se3_residual)
        wm.register_residual("prior", prior_residual)
    for fid in wm.factor_ids():
        wm.remove_factor(fid)
    for vid in wm.variable_ids:
        wm.remove_variable(vid)
    values = pose_values(pg.poses)
    ids = [wm.add_variable("pose_se3", v) for v in values]
    wm.add_factor("prior", (ids[0],), {"target": values[0], "sigma": ANCHOR_SIGMA})
    for i, j, z, info in zip(pg.edge_i, pg.edge_j, pg.measurements, pg.information):
        wm.add_factor("between_se3", (ids[i], ids[j]), {"T_ij": z, "information": info})
    return wm, ids


def pose_values_in_state(x: np.ndarray, index: dict, var_ids: list[int]) -> np.ndarray:
    """(n, 6) pose values of ``var_ids`` read from the flat state ``x``."""
    x = np.asarray(x)
    return np.stack([x[index[v][0]:index[v][1]] for v in var_ids])


def poses_to_values(keys, pose_vals: np.ndarray, values: gtsam.Values | None = None) -> gtsam.Values:
    """gtsam.Values with ``Pose3`` of each pose value ``[t, rotvec]`` under ``keys``."""
    values = gtsam.Values() if values is None else values
    for key, mat in zip(keys, np.asarray(_vec_to_matrix(pose_vals))):
        values.insert(int(key), gtsam.Pose3(mat))
    return values


def rel_err(a: float, b: float) -> float:
    return abs(float(a) - float(b)) / max(abs(float(b)), 1e-300)


def run_ours(wm: WorldModel, cfg: LMConfig):
    """Solve from the model's stored values; returns (result, index)."""
    x0, index = wm.pack_state()
    return solve(wm.fg, x0, cfg=cfg), index


# ---------------------------------------------------------------- pose graphs
@pytest.fixture(scope="module")
def graphs() -> dict[str, PoseGraph]:
    return {name: read_g2o(DATA / name) for name in DATASETS}


@pytest.fixture(scope="module")
def dense_runs(graphs):
    """Per dataset: our dense LM result, state index, var ids, GTSAM graph/initial/result.

    Also returns how many LM executables were compiled for the three solves.
    """
    n_cap = max(g.num_poses for g in graphs.values())
    m_cap = max(g.num_edges for g in graphs.values())
    before = compile_count("levenberg_marquardt")
    runs, wm = {}, None
    for name, pg in graphs.items():
        wm, ids = padded_pose_graph_model(pg, n_cap, m_cap, wm)
        res, index = run_ours(wm, DENSE)
        graph, initial = gtsam_pose_graph(DATA / name)
        solution, iters = gtsam_lm(graph, initial)
        runs[name] = dict(res=res, index=index, ids=ids, graph=graph, initial=initial, gtsam=solution, iters=iters)
    return runs, compile_count("levenberg_marquardt") - before


def test_padded_model_is_the_library_model(graphs):
    pg = graphs["tinyGrid3D.g2o"]
    ours, _ = world_model_from_pose_graph(pg)
    padded, _ = padded_pose_graph_model(pg, pg.num_poses + 7, pg.num_edges + 5)
    for a, b in zip(ours.fg.batches, padded.fg.batches):
        n = a.capacity
        assert a.f_type == b.f_type and not np.any(np.asarray(b.mask)[n:])
        np.testing.assert_array_equal(np.asarray(a.slots), np.asarray(b.slots)[:n])
        np.testing.assert_array_equal(np.asarray(a.sqrt_info), np.asarray(b.sqrt_info)[:n])
        for key in a.params:
            np.testing.assert_array_equal(np.asarray(a.params[key]), np.asarray(b.params[key])[:n])
    np.testing.assert_array_equal(np.asarray(ours.pack_state()[0]), np.asarray(padded.pack_state()[0])[: 6 * pg.num_poses])


def test_dense_pose_graphs_share_one_executable(dense_runs):
    _, compiled = dense_runs
    assert compiled <= 1


@pytest.mark.parametrize("name", DATASETS)
def test_initial_cost_matches_gtsam(dense_runs, name):
    run = dense_runs[0][name]
    assert rel_err(run["res"].initial_cost, run["graph"].error(run["initial"])) < INITIAL_RTOL


@pytest.mark.parametrize("name", DATASETS)
def test_dense_lm_reaches_gtsam_optimum(dense_runs, graphs, name):
    run = dense_runs[0][name]
    res, graph = run["res"], run["graph"]
    optimum = graph.error(run["gtsam"])
    assert bool(res.converged)
    assert rel_err(res.cost, optimum) < FINAL_RTOL
    ours = poses_to_values(graphs[name].ids, pose_values_in_state(res.x, run["index"], run["ids"]))
    assert rel_err(graph.error(ours), optimum) < FINAL_RTOL


@pytest.mark.parametrize("linear_solver", ["pcg", "sparse"])
def test_large_graph_solvers_reach_gtsam_optimum_small_grid(dense_runs, graphs, linear_solver):
    name = "smallGrid3D.g2o"
    pg = graphs[name]
    wm, ids = world_model_from_pose_graph(pg)
    res, index = run_ours(wm, LMConfig(linear_solver=linear_solver))
    run = dense_runs[0][name]
    graph, optimum = run["graph"], run["graph"].error(run["gtsam"])
    assert bool(res.converged)
    assert rel_err(res.initial_cost, graph.error(run["initial"])) < INITIAL_RTOL
    assert rel_err(res.cost, optimum) < FINAL_RTOL
    ours = poses_to_values(pg.ids, pose_values_in_state(res.x, index, ids))
    assert rel_err(graph.error(ours), optimum) < FINAL_RTOL


# ---------------------------------------------------------------- poses + points
def skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def voxel_point_error(point_body: np.ndarray):
    """CustomFactor error ``R^T (p - t) - point_body`` with analytic Jacobians.

    With GTSAM's right perturbation ``T exp([omega, v])``: ``q = R^T (p - t)`` moves
    by ``[q]x omega - v``, so ``H_pose = [[q]x, -I]``; ``H_point = R^T``.
    """
    def error(factor: gtsam.CustomFactor, values: gtsam.Values, jacobians) -> np.ndarray:
        pose = values.atPose3(factor.keys()[0])
        point = values.atPoint3(factor.keys()[1])
        rot = pose.rotation().matrix()
        q = rot.T @ (point - pose.translation())
        if jacobians is not None:
            jacobians[0] = np.hstack([skew(q), -np.eye(3)])
            jacobians[1] = rot.T
        return q - point_body

    return error


def synthetic_poses_points(rng: np.random.Generator, n_poses=5, n_points=30, n_obs=100, sigma=0.05):
    """Truth, noisy measurements and perturbed initial values of a small SLAM problem."""
    yaw = np.linspace(0.0, 0.8, n_poses)
    truth = np.zeros((n_poses, 6))
    truth[:, 0] = np.linspace(0.0, 4.0, n_poses)
    truth[:, 1] = 0.3 * np.sin(yaw)
    truth[:, 5] = yaw
    truth[:, 3:5] = rng.normal(scale=0.05, size=(n_poses, 2))
    points = rng.uniform([-2.0, -4.0, -1.0], [8.0, 4.0, 2.0], size=(n_points, 3))
    mats = np.asarray(_vec_to_matrix(truth))
    pairs = [(k % n_poses, k % n_points) for k in range(n_obs)]
    obs = [(i, j, mats[i, :3, :3].T @ (points[j] - mats[i, :3, 3]) + rng.normal(scale=sigma, size=3)) for i, j in pairs]
    odo_sigma = np.array([0.02] * 3 + [0.01] * 3)
    odom = []
    for i in range(n_poses - 1):
        noise = gtsam.Pose3.Expmap(np.concatenate([odo_sigma[3:], odo_sigma[:3]]) * rng.normal(size=6)).matrix()
        odom.append((i, i + 1, np.linalg.inv(mats[i]) @ mats[i + 1] @ noise))
    init_poses = truth + rng.normal(scale=0.05, size=truth.shape)
    init_poses[0] = truth[0]
    init_points = points + rng.normal(scale=0.2, size=points.shape)
    return dict(obs=obs, odom=odom, odo_sigma=odo_sigma, sigma=sigma, init_poses=init_poses, init_points=init_points)


def ours_poses_points(data) -> tuple[WorldModel, list[int], list[int]]:
    n, m = len(data["init_poses"]), len(data["init_points"])
    wm = WorldModel(
        var_capacity={"pose_se3": n, "point3d": m},
        factor_capacity={"pose_voxel_point": len(data["obs"]), "between_se3": len(data["odom"]), "prior": 1},
    )
    wm.register_residual("pose_voxel_point", pose_voxel_point_residual)
    wm.register_residual("between_se3", between_se3_residual)
    wm.register_residual("prior", prior_residual)
    pids = [wm.add_variable("pose_se3", v) for v in data["init_poses"]]
    lids = [wm.add_variable("point3d", p) for p in data["init_points"]]
    wm.add_factor("prior", (pids[0],), {"target": data["init_poses"][0], "sigma": ANCHOR_SIGMA})
    for i, j, z in data["odom"]:
        wm.add_factor("between_se3", (pids[i], pids[j]), {"T_ij": z, "sigma": data["odo_sigma"]})
    for i, j, z in data["obs"]:
        wm.add_factor("pose_voxel_point", (pids[i], lids[j]), {"point_body": z, "sigma": data["sigma"]})
    return wm, pids, lids


def gtsam_poses_points(data) -> tuple[gtsam.NonlinearFactorGraph, gtsam.Values]:
    X, L = gtsam.symbol_shorthand.X, gtsam.symbol_shorthand.L
    graph, values = gtsam.NonlinearFactorGraph(), gtsam.Values()
    n = len(data["init_poses"])
    poses_to_values([X(i) for i in range(n)], data["init_poses"], values)
    for j, p in enumerate(data["init_points"]):
        values.insert(L(j), gtsam.Point3(p))
    graph.add(gtsam.PriorFactorPose3(X(0), values.atPose3(X(0)), gtsam.noiseModel.Isotropic.Sigma(6, ANCHOR_SIGMA)))
    odo_noise = gtsam.noiseModel.Diagonal.Sigmas(np.concatenate([data["odo_sigma"][3:], data["odo_sigma"][:3]]))
    for i, j, z in data["odom"]:
        graph.add(gtsam.BetweenFactorPose3(X(i), X(j), gtsam.Pose3(z), odo_noise))
    obs_noise = gtsam.noiseModel.Isotropic.Sigma(3, data["sigma"])
    for i, j, z in data["obs"]:
        graph.add(gtsam.CustomFactor(obs_noise, [X(i), L(j)], voxel_point_error(z)))
    return graph, values


def test_custom_factor_jacobians_match_finite_differences():
    rng = np.random.default_rng(3)
    pose = gtsam.Pose3.Expmap(rng.normal(size=6))
    point, z = rng.normal(size=3) * 3, rng.normal(size=3)
    factor = gtsam.CustomFactor(gtsam.noiseModel.Unit.Create(3), [0, 1], voxel_point_error(z))
    values = gtsam.Values()
    values.insert(0, pose)
    values.insert(1, point)
    lin = factor.linearize(values)  # unit noise: A = [H_pose, H_point], b = -e
    a, _ = lin.jacobian()
    e0 = factor.unwhitenedError(values)
    eps, numeric = 1e-6, np.zeros((3, 9))
    for k in range(9):
        d = np.zeros(9)
        d[k] = eps
        moved = gtsam.Values()
        moved.insert(0, pose.retract(d[:6]))
        moved.insert(1, point + d[6:])
        numeric[:, k] = (factor.unwhitenedError(moved) - e0) / eps
    np.testing.assert_allclose(a, numeric, atol=1e-5)
    # and the error is ours
    x = np.concatenate([np.asarray(se3.matrix_to_vec(pose.matrix())), point])
    np.testing.assert_allclose(e0, np.asarray(pose_voxel_point_residual(x, {"point_body": z})), atol=1e-12)


def test_poses_points_match_gtsam_custom_factor():
    data = synthetic_poses_points(np.random.default_rng(0))
    wm, pids, lids = ours_poses_points(data)
    res, index = run_ours(wm, DENSE)
    graph, initial = gtsam_poses_points(data)
    assert rel_err(res.initial_cost, graph.error(initial)) < INITIAL_RTOL
    solution, _ = gtsam_lm(graph, initial)
    optimum = graph.error(solution)
    assert bool(res.converged)
    assert rel_err(res.cost, optimum) < FINAL_RTOL
    X, L = gtsam.symbol_shorthand.X, gtsam.symbol_shorthand.L
    ours_poses = np.asarray(_vec_to_matrix(pose_values_in_state(res.x, index, pids)))
    gt_poses = np.stack([solution.atPose3(X(i)).matrix() for i in range(len(pids))])
    np.testing.assert_allclose(ours_poses, gt_poses, atol=1e-5)
    ours_points = pose_values_in_state(res.x, index, lids)
    gt_points = np.stack([solution.atPoint3(L(j)) for j in range(len(lids))])
    np.testing.assert_allclose(ours_points, gt_points, atol=1e-5)
