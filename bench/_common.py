"""Helpers shared by the benchmark scripts in ``bench/`` (timing, LM settings, GTSAM glue).

Timing convention: ``compile_s`` is JAX tracing + XLA compilation of the jitted
LM (ahead of time, the jitted solve lowered and compiled with the static part of
the config, its runtime fields passed as data); ``solve_s`` is the median
wall time of calls of that compiled executable, results blocked on, so compile
time is excluded.  The sparse solver's symbolic analysis is not: its cache is
cleared before every timed call.  GTSAM times are medians of ``optimize()`` on a new optimizer.
Each solver gets one untimed call first (``first_call_s`` in its record): XLA:CPU
materialises a compiled program's kernels on its first execution, and the first
host callbacks pay Python's and SciPy's lazy imports, ~0.1-0.3 s on the first call
only; GTSAM's first call is warmed the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any, Callable

import gtsam
import jax
import numpy as np

from dsg_jit_ros.geometry.poses import pose_matrices, pose_values
from dsg_jit_ros.optimization import sparse_cholesky
from dsg_jit_ros.optimization.sparse_backend import CHOICES as SPARSE_BACKENDS, ENV_VAR as SPARSE_BACKEND_ENV
from dsg_jit_ros.optimization import solvers
from dsg_jit_ros.optimization.solvers import LMConfig

#: ``--solver auto`` picks dense Cholesky up to this many state dimensions, else the
#: host sparse Cholesky (PCG with block-Jacobi does not converge on parking-garage).
AUTO_DENSE_MAX_DIM = 3000



def add_lm_arguments(parser: argparse.ArgumentParser) -> None:
    """CLI options for the solver choice, repeats and LMConfig overrides."""
    parser.add_argument("--solver", choices=("dense", "pcg", "sparse", "schur", "auto"), default="auto",
                        help=f"linear solver of our LM; auto = dense up to {AUTO_DENSE_MAX_DIM} dims")
    parser.add_argument("--repeats", type=int, default=3, help="timed solves per solver (median reported)")
    parser.add_argument("--max-iters", type=int, default=None, help="LMConfig.max_iters")
    parser.add_argument("--pcg-tol", type=float, default=None, help="LMConfig.pcg_tol")
    parser.add_argument("--pcg-max-iters", type=int, default=None, help="LMConfig.pcg_max_iters")
    parser.add_argument("--lambda-init", type=float, default=None, help="LMConfig.lambda_init")
    parser.add_argument("--rel-tol", type=float, default=None, help="LMConfig.rel_tol (GTSAM uses it too)")
    parser.add_argument("--abs-tol", type=float, default=None, help="LMConfig.abs_tol (GTSAM uses it too)")
    parser.add_argument("--damping", choices=("marquardt", "identity"), default=None,
                        help="LMConfig.damping: lam max(diag H, min_diag) or lam I (GTSAM's default)")
    parser.add_argument("--flat-rejection-stop", choices=("on", "off"), default=None,
                        help="LMConfig.stop_on_flat_rejection: a rejected try within rel_tol of the cost "
                             "ends the solve (GTSAM's rule)")
    parser.add_argument("--sparse-backend", choices=SPARSE_BACKENDS, default=None,
                        help="LMConfig.sparse_backend: host sparse Cholesky of --solver sparse (auto: "
                             "DSG_JIT_ROS_SPARSE_BACKEND, else cholmod when cvxopt imports, else cholespy)")
    parser.add_argument("--no-gtsam", action="store_true", help="skip the GTSAM run")
    parser.add_argument("--cache", default=None,
                        help="persistent compilation cache directory (compile_s then measures a warm start)")


def apply_cache(args: argparse.Namespace) -> None:
    """Enable the persistent compilation cache when ``--cache`` was given."""
    if args.cache:
        from dsg_jit_ros.optimization.compile_cache import enable_persistent_cache

        enable_persistent_cache(args.cache)


def choose_linear_solver(name: str, state_dim: int) -> str:
    """Resolve ``auto`` to ``dense`` (<= AUTO_DENSE_MAX_DIM dims) or ``sparse``."""
    if name != "auto":
        return name
    return "dense" if state_dim <= AUTO_DENSE_MAX_DIM else "sparse"


def lm_config(args: argparse.Namespace, linear_solver: str) -> LMConfig:
    """LMConfig with the CLI overrides that were given (others at their defaults)."""
    overrides = {
        "max_iters": args.max_iters, "pcg_tol": args.pcg_tol, "pcg_max_iters": args.pcg_max_iters,
        "lambda_init": args.lambda_init, "rel_tol": args.rel_tol, "abs_tol": args.abs_tol,
        "damping": args.damping, "sparse_backend": args.sparse_backend,
        "stop_on_flat_rejection": None if args.flat_rejection_stop is None else args.flat_rejection_stop == "on",
    }
    return LMConfig(linear_solver=linear_solver, **{k: v for k, v in overrides.items() if v is not None})


def cfg_overrides(cfg: LMConfig) -> dict[str, Any]:
    """The LMConfig fields that differ from the defaults (for the JSON record)."""
    default = LMConfig(linear_solver=cfg.linear_solver)
    return {k: getattr(cfg, k) for k in cfg.__dataclass_fields__ if getattr(cfg, k) != getattr(default, k)}


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """(fn(), wall seconds)."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def median_timed(fn: Callable[[], Any], repeats: int) -> tuple[Any, float, list[float]]:
    """(last result, median seconds, all seconds) of ``repeats`` calls of ``fn``."""
    times, out = [], None
    for _ in range(max(1, repeats)):
        out, dt = timed(fn)
        times.append(dt)
    return out, statistics.median(times), times


def run_ours(fg, x0, cfg: LMConfig, repeats: int) -> dict[str, Any]:
    """Compile our LM ahead of time, then time ``repeats`` solves; returns result + timings
    and ``sparse_backend``, the host sparse Cholesky that ran (None: none did)."""
    static, runtime = solvers.split_config(cfg)
    compiled, compile_s = timed(lambda: solvers._solve.lower(fg, x0, cfg=static, runtime=runtime).compile())
    runs_before = dict(sparse_cholesky.runs)

    def once():
        sparse_cholesky.clear_cache()  # each run analyses its sparsity anew, as GTSAM's optimizer orders anew
        res = compiled(fg, x0, runtime=runtime)
        jax.block_until_ready(res)
        return res

    _, first_s = timed(once)
    res, solve_s, times = median_timed(once, repeats)
    ran = sorted(b for b, k in sparse_cholesky.runs.items() if k != runs_before.get(b, 0))
    return {"result": res, "compile_s": compile_s, "first_call_s": first_s, "solve_s": solve_s,
            "solve_runs_s": times, "sparse_backend": ",".join(ran) or None}


def ours_record(res) -> dict[str, Any]:
    """JSON-ready fields of an LMResult."""
    return {
        "initial_error": float(res.initial_cost),
        "final_error": float(res.cost),
        "iterations": int(res.iterations),
        "accepted": int(res.accepted),
        "converged": bool(res.converged),
        "linear_iterations": int(res.linear_iterations),
        "final_lambda": float(res.lam),
    }


def gtsam_lm_params(cfg: LMConfig) -> gtsam.LevenbergMarquardtParams:
    """GTSAM's default LM parameters with our relative / absolute error tolerances."""
    params = gtsam.LevenbergMarquardtParams()
    params.setRelativeErrorTol(cfg.rel_tol)
    params.setAbsoluteErrorTol(cfg.abs_tol)
    return params


def run_gtsam(graph: gtsam.NonlinearFactorGraph, initial: gtsam.Values, cfg: LMConfig, repeats: int) -> dict[str, Any]:
    """Median time of ``optimize()`` over ``repeats`` fresh optimizers; result + record."""
    params = gtsam_lm_params(cfg)

    def once():
        optimizer = gtsam.LevenbergMarquardtOptimizer(graph, initial, params)
        return optimizer.optimize(), optimizer.iterations()

    _, first_s = timed(once)
    (solution, iterations), solve_s, times = median_timed(once, repeats)
    return {
        "solution": solution,
        "record": {
            "initial_error": float(graph.error(initial)),
            "final_error": float(graph.error(solution)),
            "iterations": int(iterations),
            "solve_s": solve_s,
            "solve_runs_s": times,
            "first_call_s": first_s,
            "compile_s": 0.0,
        },
    }


def pose3_values(keys, pose_vals: np.ndarray, values: gtsam.Values | None = None) -> gtsam.Values:
    """Insert ``Pose3`` of each pose value ``[t, rotvec]`` (n, 6) under ``keys``."""
    values = gtsam.Values() if values is None else values
    for key, mat in zip(keys, pose_matrices(pose_vals)):
        values.insert(int(key), gtsam.Pose3(mat))
    return values


def pose3_matrices_to_values(keys, matrices: np.ndarray, values: gtsam.Values | None = None) -> gtsam.Values:
    """Insert ``Pose3(T)`` of each (4, 4) matrix under ``keys``."""
    values = gtsam.Values() if values is None else values
    for key, mat in zip(keys, matrices):
        values.insert(int(key), gtsam.Pose3(np.asarray(mat, dtype=np.float64)))
    return values


def pose2_matrices_to_values(keys, matrices: np.ndarray, values: gtsam.Values | None = None) -> gtsam.Values:
    """Insert ``Pose2(x, y, yaw)`` of each planar (4, 4) matrix under ``keys`` (yaw = atan2(R10, R00))."""
    values = gtsam.Values() if values is None else values
    for key, mat in zip(keys, np.asarray(matrices, dtype=np.float64)):
        values.insert(int(key), gtsam.Pose2(mat[0, 3], mat[1, 3], np.arctan2(mat[1, 0], mat[0, 0])))
    return values


def pose_vals_from_values(values: gtsam.Values, keys) -> np.ndarray:
    """(n, 6) pose values ``[t, rotvec]`` of the ``Pose3`` under ``keys``."""
    mats = np.stack([values.atPose3(int(k)).matrix() for k in keys])
    return pose_values(mats)


def state_rows(index: dict[int, tuple[int, int]], var_ids) -> np.ndarray:
    """(k, dim) integer positions in the flat state of each variable in ``var_ids``."""
    return np.stack([np.arange(*index[v]) for v in var_ids])


def environment() -> dict[str, Any]:
    """Settings that change timings a lot on small machines (recorded in every line).

    On a 2-core machine JAX's CPU LAPACK calls (dense Cholesky) run ~100x slower
    when OpenBLAS may start its own threads next to XLA's; run with
    ``OPENBLAS_NUM_THREADS=1`` to avoid the oversubscription.
    """
    return {"openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"), "cpus": os.cpu_count(),
            "sparse_backend_env": os.environ.get(SPARSE_BACKEND_ENV)}


def emit(record: dict[str, Any]) -> None:
    """Print one JSON object on one line (flushed)."""
    print(json.dumps(record, default=float), flush=True)


def emit_pair(ours: dict, theirs: dict) -> None:
    """Add our time ratio and error gap against GTSAM's run; print GTSAM's line, then ours."""
    ours["ratio_vs_gtsam"] = ours["solve_s"] / max(theirs["solve_s"], 1e-12)
    ours["rel_gap_vs_gtsam"] = (ours["final_error"] - theirs["final_error"]) / abs(theirs["final_error"])
    emit(theirs)
    emit(ours)
