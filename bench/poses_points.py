"""Benchmark our LM against GTSAM's on a synthetic poses + 3D points problem.

Usage::

    python bench/poses_points.py --poses 100 --points 1000 --obs 20000 [--seed 0]
                                 [--sigma 0.05] [--solver pcg|dense|auto] [--repeats 3] [...]

Synthesises a noisy circular trajectory, points in a box around it and body-frame
point observations ``R^T (p - t) + N(0, sigma^2 I)``; every point is seen at least
once and no closer than ``MIN_RANGE``.  Poses start dead-reckoned from the noisy
odometry, points from their first observation.

Ours: ``pose_voxel_point`` factors (sigma), ``between_se3`` odometry, a prior on
pose 0.  GTSAM: the same odometry / prior, observations as ``BearingRangeFactor3D``
(bearing sigma = sigma / range rad, range sigma = sigma m) — a close but not
identical model, so both solutions are scored in OUR objective (``final_error``;
GTSAM's own objective is ``native_final_error``).  One JSON line per solver.
"""

from __future__ import annotations

import argparse

import gtsam
import jax
import numpy as np

from _common import (
    apply_cache,
    add_lm_arguments,
    cfg_overrides,
    choose_linear_solver,
    emit,
    emit_pair,
    environment,
    lm_config,
    ours_record,
    pose_vals_from_values,
    run_gtsam,
    run_ours,
    state_rows,
    timed,
)
from dsg_jit_ros.geometry import se3
from dsg_jit_ros.slam.measurements import between_se3_residual, pose_voxel_point_residual, prior_residual
from dsg_jit_ros.slam.pose_graph import ANCHOR_SIGMA
from dsg_jit_ros.world.graph import graph_cost
from dsg_jit_ros.world.model import WorldModel

MIN_RANGE = 1.0  # m: closer observations are re-drawn (bearing undefined at 0)
ODOM_SIGMA = np.array([0.02, 0.02, 0.02, 0.005, 0.005, 0.005])  # [m]*3, [rad]*3, our order

_vec_to_matrix = jax.jit(jax.vmap(se3.vec_to_matrix))
_matrix_to_vec = jax.jit(jax.vmap(se3.matrix_to_vec))
_exp = jax.jit(jax.vmap(se3.exp))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--poses", type=int, default=100)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--obs", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sigma", type=float, default=0.05, help="observation noise (m)")
    parser.add_argument("--build", choices=("loop", "batch"), default="loop",
                        help="observations via add_factor one by one, or one WorldModel.add_factors call")
    add_lm_arguments(parser)
    parser.set_defaults(solver="pcg")
    return parser.parse_args(argv)


def truth_trajectory(rng: np.random.Generator, n: int, radius: float = 10.0) -> np.ndarray:
    """(n, 4, 4) poses on most of a circle, heading along it, with small roll/pitch."""
    theta = np.linspace(0.0, 1.8 * np.pi, n)
    vals = np.zeros((n, 6))
    vals[:, 0], vals[:, 1] = radius * np.cos(theta), radius * np.sin(theta)
    vals[:, 2] = 0.5 * np.sin(3.0 * theta)
    vals[:, 3:5] = rng.normal(scale=0.05, size=(n, 2))
    vals[:, 5] = theta + np.pi / 2
    return np.asarray(_vec_to_matrix(vals))


def draw_pairs(rng: np.random.Generator, poses: np.ndarray, points: np.ndarray, n_obs: int) -> tuple[np.ndarray, np.ndarray]:
    """(pose idx, point idx) of each observation: all points once, then random pairs."""
    n, m = len(poses), len(points)
    j = np.concatenate([np.arange(m), rng.integers(0, m, size=max(n_obs - m, 0))])[:n_obs]
    i = rng.integers(0, n, size=len(j))
    while True:
        close = np.linalg.norm(points[j] - poses[i, :3, 3], axis=1) < MIN_RANGE
        if not close.any():
            return i, j
        i[close] = rng.integers(0, n, size=int(close.sum()))


def synthesize(n_poses: int, n_points: int, n_obs: int, sigma: float, seed: int) -> dict:
    """Truth, measurements and initial values (see module docstring)."""
    rng = np.random.default_rng(seed)
    truth = truth_trajectory(rng, n_poses)
    points = rng.uniform([-15.0, -15.0, -2.0], [15.0, 15.0, 4.0], size=(n_points, 3))
    obs_i, obs_j = draw_pairs(rng, truth, points, n_obs)
    rot, trans = truth[obs_i, :3, :3], truth[obs_i, :3, 3]
    z = np.einsum("kba,kb->ka", rot, points[obs_j] - trans) + rng.normal(scale=sigma, size=(len(obs_i), 3))
    noise = np.asarray(_exp(ODOM_SIGMA * rng.normal(size=(n_poses - 1, 6))))
    odom = np.linalg.inv(truth[:-1]) @ truth[1:] @ noise
    init = [truth[0]]
    for step in odom:
        init.append(init[-1] @ step)
    init = np.stack(init)
    first = np.unique(obs_j, return_index=True)[1]
    init_points = np.einsum("kab,kb->ka", init[obs_i[first], :3, :3], z[first]) + init[obs_i[first], :3, 3]
    return dict(truth=truth, points=points, obs_i=obs_i, obs_j=obs_j, z=z, odom=odom, sigma=sigma,
                init_poses=init, init_points=init_points)


def build_ours(data: dict, batch: bool = False) -> tuple[WorldModel, list[int], list[int]]:
    """Our WorldModel of the problem; returns (wm, pose var ids, point var ids).

    ``batch``: add the observation factors with one ``add_factors`` call instead
    of one ``add_factor`` call each.
    """
    n, m, k = len(data["init_poses"]), len(data["init_points"]), len(data["z"])
    wm = WorldModel(
        var_capacity={"pose_se3": n, "point3d": m},
        factor_capacity={"pose_voxel_point": k, "between_se3": n - 1, "prior": 1},
    )
    wm.register_residual("pose_voxel_point", pose_voxel_point_residual)
    wm.register_residual("between_se3", between_se3_residual)
    wm.register_residual("prior", prior_residual)
    pose_vals = np.asarray(_matrix_to_vec(data["init_poses"]))
    pids = [wm.add_variable("pose_se3", v) for v in pose_vals]
    lids = [wm.add_variable("point3d", p) for p in data["init_points"]]
    wm.add_factor("prior", (pids[0],), {"target": pose_vals[0], "sigma": ANCHOR_SIGMA})
    for a, step in enumerate(data["odom"]):
        wm.add_factor("between_se3", (pids[a], pids[a + 1]), {"T_ij": step, "sigma": ODOM_SIGMA})
    sigma = data["sigma"]
    if batch:
        pairs = np.stack([np.asarray(pids)[data["obs_i"]], np.asarray(lids)[data["obs_j"]]], axis=1)
        wm.add_factors("pose_voxel_point", pairs, {"point_body": data["z"], "sigma": sigma})
        return wm, pids, lids
    for a, b, zb in zip(data["obs_i"].tolist(), data["obs_j"].tolist(), data["z"]):
        wm.add_factor("pose_voxel_point", (pids[a], lids[b]), {"point_body": zb, "sigma": sigma})
    return wm, pids, lids


def build_gtsam(data: dict) -> tuple[gtsam.NonlinearFactorGraph, gtsam.Values]:
    """GTSAM graph (bearing-range observations) and initial values, keys X(i), L(j)."""
    X, L = gtsam.symbol_shorthand.X, gtsam.symbol_shorthand.L
    graph, values = gtsam.NonlinearFactorGraph(), gtsam.Values()
    for a, mat in enumerate(data["init_poses"]):
        values.insert(X(a), gtsam.Pose3(mat))
    for b, p in enumerate(data["init_points"]):
        values.insert(L(b), gtsam.Point3(p))
    graph.add(gtsam.PriorFactorPose3(X(0), values.atPose3(X(0)), gtsam.noiseModel.Isotropic.Sigma(6, ANCHOR_SIGMA)))
    odo_noise = gtsam.noiseModel.Diagonal.Sigmas(np.concatenate([ODOM_SIGMA[3:], ODOM_SIGMA[:3]]))
    for a, step in enumerate(data["odom"]):
        graph.add(gtsam.BetweenFactorPose3(X(a), X(a + 1), gtsam.Pose3(step), odo_noise))
    sigma = data["sigma"]
    for a, b, zb in zip(data["obs_i"].tolist(), data["obs_j"].tolist(), data["z"]):
        rng = float(np.linalg.norm(zb))
        noise = gtsam.noiseModel.Diagonal.Sigmas(np.array([sigma / rng, sigma / rng, sigma]))
        graph.add(gtsam.BearingRangeFactor3D(X(a), L(b), gtsam.Unit3(zb / rng), rng, noise))
    return graph, values


def state_from_gtsam(x0, index, pids, lids, values: gtsam.Values) -> np.ndarray:
    """Our flat state holding GTSAM's poses and points."""
    X, L = gtsam.symbol_shorthand.X, gtsam.symbol_shorthand.L
    x = np.array(x0)
    x[state_rows(index, pids)] = pose_vals_from_values(values, [X(a) for a in range(len(pids))])
    x[state_rows(index, lids)] = np.stack([values.atPoint3(L(b)) for b in range(len(lids))])
    return x


def accuracy(data: dict, pose_vals: np.ndarray, points: np.ndarray) -> dict:
    """RMS translation (m) and point (m) errors against the synthetic truth."""
    t_err = pose_vals[:, :3] - data["truth"][:, :3, 3]
    p_err = points - data["points"]
    return {"pose_rmse_m": float(np.sqrt(np.mean(np.sum(t_err**2, 1)))),
            "point_rmse_m": float(np.sqrt(np.mean(np.sum(p_err**2, 1))))}


def main(argv=None) -> None:
    args = parse_args(argv)
    apply_cache(args)
    data, synth_s = timed(lambda: synthesize(args.poses, args.points, args.obs, args.sigma, args.seed))
    base = {"dataset": f"synthetic_poses{args.poses}_points{args.points}_obs{len(data['z'])}_seed{args.seed}",
            "init": "odometry", "poses": args.poses, "points": args.points, "obs": int(len(data["z"])),
            "sigma": args.sigma, "build_mode": args.build, "synth_s": synth_s, **environment()}
    (wm, pids, lids), build_s = timed(lambda: build_ours(data, batch=args.build == "batch"))
    ((x0, index), fg), pack_s = timed(lambda: (wm.pack_state(), wm.fg))
    cfg = lm_config(args, choose_linear_solver(args.solver, x0.shape[0]))
    ours_run = run_ours(fg, x0, cfg, args.repeats)
    res = ours_run["result"]
    x = np.asarray(res.x)
    ours = {"solver": "dsg_jit_ros", **base, "linear_solver": cfg.linear_solver,
            "sparse_backend": ours_run["sparse_backend"], "lm_overrides": cfg_overrides(cfg),
            **ours_record(res), "solve_s": ours_run["solve_s"], "solve_runs_s": ours_run["solve_runs_s"],
            "compile_s": ours_run["compile_s"], "build_s": build_s + pack_s, "state_dim": int(x0.shape[0]),
            **accuracy(data, x[state_rows(index, pids)], x[state_rows(index, lids)])}
    if args.no_gtsam:
        emit(ours)
        return
    (graph, initial), gt_build_s = timed(lambda: build_gtsam(data))
    gt = run_gtsam(graph, initial, cfg, args.repeats)
    xg = state_from_gtsam(x0, index, pids, lids, gt["solution"])
    cost = jax.jit(graph_cost)
    theirs = {"solver": "gtsam", **base, "linear_solver": "multifrontal_cholesky", **gt["record"],
              "native_initial_error": gt["record"]["initial_error"], "native_final_error": gt["record"]["final_error"],
              "initial_error": float(cost(fg, x0)), "final_error": float(cost(fg, xg)), "build_s": gt_build_s,
              **accuracy(data, xg[state_rows(index, pids)], xg[state_rows(index, lids)])}
    emit_pair(ours, theirs)


if __name__ == "__main__":
    main()
