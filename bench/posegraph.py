"""Benchmark our LM against GTSAM's on a 3D pose graph (g2o / GTSAM text format).

Usage::

    python bench/posegraph.py FILE.g2o [--init chordal|odometry] [--solver dense|pcg|sparse|schur|auto]
                              [--repeats 3] [--pcg-tol T] [--pcg-max-iters K] [--max-iters K]
                              [--lambda-init L] [--rel-tol R] [--no-gtsam]

Prints one JSON object per line: first GTSAM's run, then ours.  Errors are GTSAM's
``0.5 * sum r^T Omega r`` (ours uses the same convention); both solvers start from
the same poses (the file's, or our chordal initialisation) and anchor pose row 0
with an isotropic prior of sigma 1e-6.  ``gtsam_error_at_ours`` is GTSAM's
``graph.error`` evaluated at our solution (cross-check of our objective).
"""

from __future__ import annotations

import argparse
import os

import gtsam
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
    pose3_matrices_to_values,
    pose3_values,
    run_gtsam,
    run_ours,
    state_rows,
    timed,
)
from dsg_jit_ros.io.g2o import PoseGraph, read_g2o
from dsg_jit_ros.optimization.initialization import chordal_initialization
from dsg_jit_ros.slam.pose_graph import ANCHOR_SIGMA, world_model_from_pose_graph


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file", help="3D pose graph (.g2o, EDGE_SE3:QUAT)")
    parser.add_argument("--init", choices=("odometry", "chordal"), default="odometry",
                        help="start from the file's poses or from chordal initialisation")
    add_lm_arguments(parser)
    return parser.parse_args(argv)


def initial_poses(pg: PoseGraph, init: str) -> tuple[np.ndarray, float]:
    """((n, 4, 4) starting poses, seconds spent computing them)."""
    if init == "chordal":
        return timed(lambda: chordal_initialization(pg))
    return pg.poses, 0.0


def gtsam_problem(path: str, pg: PoseGraph, poses: np.ndarray) -> tuple[gtsam.NonlinearFactorGraph, gtsam.Values]:
    """GTSAM's ``readG2o`` graph + anchor prior on row 0, started at ``poses``."""
    graph, _ = gtsam.readG2o(path, True)
    initial = pose3_matrices_to_values(pg.ids, poses)
    noise = gtsam.noiseModel.Isotropic.Sigma(6, ANCHOR_SIGMA)
    graph.add(gtsam.PriorFactorPose3(int(pg.ids[0]), initial.atPose3(int(pg.ids[0])), noise))
    return graph, initial


def bench_gtsam(args, pg: PoseGraph, poses: np.ndarray, cfg, base: dict) -> dict:
    """Build + run GTSAM; returns its JSON record (plus the graph under ``_graph``)."""
    (graph, initial), build_s = timed(lambda: gtsam_problem(args.file, pg, poses))
    run = run_gtsam(graph, initial, cfg, args.repeats)
    record = {"solver": "gtsam", **base, "linear_solver": "multifrontal_cholesky", **run["record"], "build_s": build_s}
    return record, graph


def bench_ours(args, pg: PoseGraph, poses: np.ndarray) -> tuple[dict, dict]:
    """Build + compile + run our LM; returns (JSON record, run details)."""
    (wm, ids), build_s = timed(lambda: world_model_from_pose_graph(pg, initial_poses=poses))
    (x0, index), pack_s = timed(wm.pack_state)
    fg, fg_s = timed(lambda: wm.fg)
    cfg = lm_config(args, choose_linear_solver(args.solver, x0.shape[0]))
    run = run_ours(fg, x0, cfg, args.repeats)
    record = {
        "solver": "dsg_jit_ros", "linear_solver": cfg.linear_solver, "lm_overrides": cfg_overrides(cfg),
        **ours_record(run["result"]), "solve_s": run["solve_s"], "solve_runs_s": run["solve_runs_s"],
        "compile_s": run["compile_s"], "build_s": build_s + pack_s + fg_s, "state_dim": int(x0.shape[0]),
    }
    return record, {"cfg": cfg, "result": run["result"], "index": index, "ids": ids}


def main(argv=None) -> None:
    args = parse_args(argv)
    apply_cache(args)
    (pg, read_s) = timed(lambda: read_g2o(args.file))
    poses, init_s = initial_poses(pg, args.init)
    base = {"dataset": os.path.basename(args.file), "init": args.init, "init_s": init_s,
            "n_poses": pg.num_poses, "n_edges": pg.num_edges, **environment()}
    ours, details = bench_ours(args, pg, poses)
    ours = {**ours, **base, "read_s": read_s}
    if args.no_gtsam:
        emit(ours)
        return
    theirs, graph = bench_gtsam(args, pg, poses, details["cfg"], base)
    x = np.asarray(details["result"].x)
    ours["gtsam_error_at_ours"] = float(graph.error(pose3_values(pg.ids, x[state_rows(details["index"], details["ids"])])))
    emit_pair(ours, theirs)


if __name__ == "__main__":
    main()
