"""Benchmark our LM against GTSAM's on a 2D or 3D pose graph (g2o / GTSAM text format).

Usage::

    python bench/posegraph.py FILE.g2o [--init chordal|odometry] [--solver dense|pcg|sparse|schur|auto]
                              [--repeats 3] [--pcg-tol T] [--pcg-max-iters K] [--max-iters K]
                              [--lambda-init L] [--rel-tol R] [--damping identity|marquardt]
                              [--flat-rejection-stop on|off] [--sparse-backend auto|cholmod|cholespy]
                              [--no-gtsam]
                              [--missing-vertices error|compose] [--repair-information nearest_pd|isotropic]

Prints one JSON object per line: first GTSAM's run, then ours.  Errors are GTSAM's
``0.5 * sum r^T Omega r`` (ours uses the same convention); both solvers start from
the same poses (the file's, or our chordal initialisation) and anchor pose row 0
with an isotropic prior of sigma 1e-6.  ``gtsam_error_at_ours`` is GTSAM's
``graph.error`` evaluated at our solution (cross-check of our objective).
Both run GTSAM's LM strategy by default: damping ``lam * I`` (``--damping
identity``) and the stop on a rejected try that changes the error by less than
the relative tolerance (``--flat-rejection-stop on``); ``lm_overrides`` in our
JSON line lists the settings that differ from ``LMConfig``'s defaults;
``sparse_backend`` names the host sparse Cholesky that ran (``cholmod``: CHOLMOD
through CVXOPT, analysed once; ``cholespy``: from scratch per solve; null when the
solver is not ``sparse``).

2D files (``VERTEX_SE2``/``EDGE_SE2``) are solved by GTSAM as ``Pose2`` /
``BetweenFactorPose2`` (``readG2o(path, is3D=False)``) and by us as planar SE(3)
poses with z, roll and pitch fixed (``world_model_from_pose_graph``).  Vertices a
file does not declare (``manhattan.g2o`` has only EDGE lines) are composed from the
edges by default, as GTSAM's ``readG2o`` does (``composed_vertices`` in the JSON
counts them; ``--missing-vertices error`` rejects such files): both solvers then
start from the composed odometry (or from chordal with ``--init chordal``).
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
    pose2_matrices_to_values,
    pose3_matrices_to_values,
    run_gtsam,
    run_ours,
    state_rows,
    timed,
)
from dsg_jit_ros.io.g2o import PoseGraph, read_g2o
from dsg_jit_ros.optimization.initialization import chordal_initialization
from dsg_jit_ros.geometry.poses import pose_matrices
from dsg_jit_ros.slam.pose_graph import ANCHOR_SIGMA, world_model_from_pose_graph


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file", help="pose graph (.g2o, EDGE_SE3:QUAT or EDGE_SE2)")
    parser.add_argument("--missing-vertices", choices=("error", "compose"), default="compose",
                        help="read_g2o missing_vertices: compose (default) places vertices only edges mention, "
                             "error rejects them")
    parser.add_argument("--repair-information", choices=("nearest_pd", "isotropic"), default=None,
                        help="read_g2o repair_information for non positive definite information matrices")
    parser.add_argument("--init", choices=("odometry", "chordal"), default="odometry",
                        help="start from the file's poses or from chordal initialisation")
    add_lm_arguments(parser)
    parser.set_defaults(damping="identity", flat_rejection_stop="on")  # GTSAM's LM, as run beside it
    return parser.parse_args(argv)


def initial_poses(pg: PoseGraph, init: str) -> tuple[np.ndarray, float]:
    """((n, 4, 4) starting poses, seconds spent computing them)."""
    if init == "chordal":
        return timed(lambda: chordal_initialization(pg))
    return pg.poses, 0.0


def gtsam_values(pg: PoseGraph, poses: np.ndarray) -> gtsam.Values:
    """(n, 4, 4) poses as GTSAM values: ``Pose2`` for planar graphs, else ``Pose3``."""
    return (pose2_matrices_to_values if pg.planar else pose3_matrices_to_values)(pg.ids, poses)


def gtsam_problem(path: str, pg: PoseGraph, poses: np.ndarray) -> tuple[gtsam.NonlinearFactorGraph, gtsam.Values]:
    """GTSAM's ``readG2o`` graph + anchor prior on row 0, started at ``poses``."""
    graph, _ = gtsam.readG2o(path, not pg.planar)
    initial = gtsam_values(pg, poses)
    key = int(pg.ids[0])
    if pg.planar:
        noise = gtsam.noiseModel.Isotropic.Sigma(3, ANCHOR_SIGMA)
        graph.add(gtsam.PriorFactorPose2(key, initial.atPose2(key), noise))
    else:
        noise = gtsam.noiseModel.Isotropic.Sigma(6, ANCHOR_SIGMA)
        graph.add(gtsam.PriorFactorPose3(key, initial.atPose3(key), noise))
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
        "solver": "dsg_jit_ros", "linear_solver": cfg.linear_solver, "sparse_backend": run["sparse_backend"],
        "lm_overrides": cfg_overrides(cfg),
        **ours_record(run["result"]), "solve_s": run["solve_s"], "solve_runs_s": run["solve_runs_s"],
        "compile_s": run["compile_s"], "first_call_s": run["first_call_s"], "build_s": build_s + pack_s + fg_s, "state_dim": int(x0.shape[0]),
    }
    return record, {"cfg": cfg, "result": run["result"], "index": index, "ids": ids}


def main(argv=None) -> None:
    args = parse_args(argv)
    apply_cache(args)
    (pg, read_s) = timed(lambda: read_g2o(args.file, missing_vertices=args.missing_vertices,
                                          repair_information=args.repair_information))
    poses, init_s = initial_poses(pg, args.init)
    base = {"dataset": os.path.basename(args.file), "init": args.init, "init_s": init_s,
            "dim": pg.dim, "n_poses": pg.num_poses, "n_edges": pg.num_edges,
            "repaired_edges": int(pg.repaired_edges.size), "composed_vertices": pg.composed_vertices,
            **environment()}
    ours, details = bench_ours(args, pg, poses)
    ours = {**ours, **base, "read_s": read_s}
    if args.no_gtsam:
        emit(ours)
        return
    theirs, graph = bench_gtsam(args, pg, poses, details["cfg"], base)
    x = np.asarray(details["result"].x)
    solution = pose_matrices(x[state_rows(details["index"], details["ids"])])
    ours["gtsam_error_at_ours"] = float(graph.error(gtsam_values(pg, solution)))
    emit_pair(ours, theirs)


if __name__ == "__main__":
    main()
