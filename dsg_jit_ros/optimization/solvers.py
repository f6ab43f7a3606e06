"""Manifold Gauss-Newton, Levenberg-Marquardt and gradient descent.

``gauss_newton_manifold`` and ``gradient_descent`` are the seed tutorials' API:
fixed iteration counts (``lax.fori_loop``), so ``jax.grad`` differentiates
through them (unrolled).  Given a ``GraphResidual`` (``wm.build_residual()``), GN
uses the graph's per-factor Jacobians; any other callable gets a dense
forward-mode Jacobian (fine for the small problems it is meant for).

``levenberg_marquardt`` is the production solver: adaptive damping, convergence
tests, dense or PCG linear solves, a ``lax.while_loop`` so it runs to
convergence in one compiled call.  ``solve`` is its jitted, compile-counted entry;
its iteration caps and tolerances (``RUNTIME_FIELDS``) are data of the compiled
program, so changing them never recompiles.
All costs follow GTSAM's convention ``0.5 * sum rho(|W e|^2)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from dsg_jit_ros.optimization import linear_solvers
from dsg_jit_ros.optimization.sparse_backend import CHOICES as SPARSE_BACKENDS
from dsg_jit_ros.optimization.compile_count import counted_jit
from dsg_jit_ros.optimization.linearize import gradient, linearize
from dsg_jit_ros.slam.manifold import retract_by_metadata, retract_state
from dsg_jit_ros.world.graph import FactorGraph, graph_cost
from dsg_jit_ros.world.model import GraphResidual


@dataclass(frozen=True)
class GNConfig:
    """Fixed-iteration damped Gauss-Newton: (H + damping I) d = -g, |d| <= max_step_norm."""

    max_iters: int = 10
    damping: float = 1e-3
    max_step_norm: float = 1.0


@dataclass(frozen=True)
class GDConfig:
    """Fixed-iteration gradient descent on an objective."""

    learning_rate: float = 1e-2
    max_iters: int = 100


@dataclass(frozen=True)
class LMConfig:
    """Levenberg-Marquardt settings (Marquardt scaling D = max(diag H, min_diag)).

    Stops when an accepted step lowers the cost by less than ``rel_tol * cost``,
    when the cost falls below ``abs_tol``, when the step is below ``step_tol``
    (relative to |x|), when damping exceeds ``lambda_max``, or at ``max_iters``
    linear solves (accepted or not).

    ``damping``: ``"marquardt"`` adds ``lam * max(diag H, min_diag)`` (scale
    invariant); ``"identity"`` adds ``lam * I``, GTSAM's default
    (``LevenbergMarquardtParams.diagonalDamping = false``; not for the Schur
    solver).  With well-weighted pose graphs ``lam * I`` is negligible once
    ``lam`` has shrunk, so LM turns into Gauss-Newton sooner: manhattan.g2o from
    its odometry takes 6 solves instead of 33.
    ``stop_on_flat_rejection``: a rejected step whose cost is within
    ``rel_tol * cost`` of the current one also ends the solve as converged
    (GTSAM checks the error change of every try, accepted or not).
    ``sparse_backend``: the host sparse Cholesky of the ``sparse`` solver,
    ``"auto"`` (the environment variable ``DSG_JIT_ROS_SPARSE_BACKEND``, else
    CHOLMOD through CVXOPT when it imports, else cholespy), ``"cholmod"`` or
    ``"cholespy"`` (an error at solve time when it does not import); see
    ``optimization.sparse_backend``.
    ``keep_linearization``: the loop carries the linearisation (Jacobians of every
    factor) so that a rejected step retries without linearising again; False
    linearises at the top of every iteration instead and carries only the state:
    for solves of one or two iterations (the online window) the carried Jacobians
    cost more in buffer copies than the rare second linearisation.  Same results.
    ``keep_factor`` (``schur`` solver only): the result's ``factor`` is the lower
    Cholesky factor of the last reduced pose system solved (at the last
    linearisation point, damped by that iteration's ``lam``), from which
    ``optimization.covariance.pose_covariance`` reads marginal covariances
    without linearising again.
    """

    max_iters: int = 100
    lambda_init: float = 1e-5
    lambda_factor: float = 10.0
    lambda_max: float = 1e12
    rel_tol: float = 1e-10
    abs_tol: float = 1e-14
    step_tol: float = 1e-12
    min_diag: float = 1e-6
    linear_solver: str = "dense"
    pcg_tol: float = 1e-10
    pcg_max_iters: int = 1000
    damping: str = "marquardt"
    stop_on_flat_rejection: bool = False
    sparse_backend: str = "auto"
    keep_linearization: bool = True
    keep_factor: bool = False

    def __post_init__(self) -> None:
        if self.linear_solver not in linear_solvers.LINEAR_SOLVERS:
            raise ValueError(f"linear_solver must be one of {linear_solvers.LINEAR_SOLVERS}")
        if self.damping not in linear_solvers.DAMPING_MODES:
            raise ValueError(f"damping must be one of {linear_solvers.DAMPING_MODES}")
        if self.sparse_backend not in SPARSE_BACKENDS:
            raise ValueError(f"sparse_backend must be one of {SPARSE_BACKENDS}")
        if self.damping == "identity" and self.linear_solver == "schur":
            raise ValueError("identity damping is not implemented for the schur solver")
        if self.keep_factor and self.linear_solver != "schur":
            raise ValueError("keep_factor needs the schur solver")
        if self.max_iters < 1 or self.lambda_factor <= 1.0 or self.lambda_init <= 0.0:
            raise ValueError("need max_iters >= 1, lambda_factor > 1, lambda_init > 0")


@dataclass(frozen=True)
class LMResult:
    """Outcome of one LM solve; ``iterations`` counts linear solves."""

    x: jnp.ndarray
    cost: jnp.ndarray
    initial_cost: jnp.ndarray
    iterations: jnp.ndarray
    accepted: jnp.ndarray
    converged: jnp.ndarray
    lam: jnp.ndarray
    linear_iterations: jnp.ndarray
    factor: jnp.ndarray | None = None  # LMConfig.keep_factor: Cholesky factor of the last reduced system


jax.tree_util.register_dataclass(
    LMResult,
    data_fields=["x", "cost", "initial_cost", "iterations", "accepted", "converged", "lam", "linear_iterations",
                 "factor"],
    meta_fields=[],
)


def _safe_norm(v: jnp.ndarray) -> jnp.ndarray:
    return jnp.sqrt(jnp.sum(v * v) + 1e-30)


def _clip(delta: jnp.ndarray, max_norm: float) -> jnp.ndarray:
    return delta * jnp.minimum(1.0, max_norm / _safe_norm(delta))


def _graph_gn_step(graph: FactorGraph, x, cfg: GNConfig):
    lins, _ = linearize(graph, x)
    g = gradient(graph, lins, x)
    delta = linear_solvers.dense_solve(graph, lins, x, g, cfg.damping, 0.0, scaled=False)
    return retract_state(graph.layout, x, _clip(delta, cfg.max_step_norm))


def _dense_gn_step(residual_fn, x, block_slices, manifold_types, cfg: GNConfig):
    def f(d):
        return residual_fn(retract_by_metadata(x, d, block_slices, manifold_types))

    zero = jnp.zeros_like(x)
    jac = jax.jacfwd(f)(zero)
    r = residual_fn(x)
    h = jac.T @ jac + cfg.damping * jnp.eye(x.shape[0], dtype=x.dtype)
    delta = jnp.linalg.solve(h, -(jac.T @ r))
    return retract_by_metadata(x, _clip(delta, cfg.max_step_norm), block_slices, manifold_types)


def gauss_newton_manifold(residual_fn: Callable, x0, block_slices, manifold_types, cfg: GNConfig):
    """``cfg.max_iters`` damped GN steps on the manifold; differentiable (unrolled)."""
    if isinstance(residual_fn, GraphResidual):
        def step(_, x):
            return _graph_gn_step(residual_fn.graph, x, cfg)
    else:
        def step(_, x):
            return _dense_gn_step(residual_fn, x, block_slices, manifold_types, cfg)
    return jax.lax.fori_loop(0, cfg.max_iters, step, x0)


def gradient_descent(objective: Callable, x0, cfg: GDConfig):
    """``cfg.max_iters`` steps ``x -= learning_rate * grad(objective)(x)``; differentiable."""
    grad_fn = jax.grad(objective)
    return jax.lax.fori_loop(0, cfg.max_iters, lambda _, x: x - cfg.learning_rate * grad_fn(x), x0)


def levenberg_marquardt(graph: FactorGraph, x0: jnp.ndarray, cfg: LMConfig = LMConfig(), max_iters=None) -> LMResult:
    """Run LM to convergence on ``graph`` from ``x0`` (jit-compatible; cfg static).

    ``max_iters`` (optional, traced): a lower iteration cap for this call than
    ``cfg.max_iters``; calls passing different values share one executable.  At
    least one iteration runs.
    """
    iter_cap = cfg.max_iters if max_iters is None else jnp.minimum(max_iters, cfg.max_iters)
    layout = graph.layout

    def lin_at(x):
        lins, cost = linearize(graph, x)
        return lins, cost, gradient(graph, lins, x)

    def solve_step(lins, x, g, lam):
        marquardt = cfg.damping == "marquardt"
        if cfg.linear_solver == "dense":
            return linear_solvers.dense_solve(graph, lins, x, g, lam, cfg.min_diag, scaled=marquardt), jnp.array(0)
        if cfg.linear_solver == "sparse":
            return (linear_solvers.sparse_solve(graph, lins, x, g, lam, cfg.min_diag, cfg.damping, cfg.sparse_backend),
                    jnp.array(0))
        if cfg.linear_solver == "schur":
            if cfg.keep_factor:
                delta, chol = linear_solvers.schur_solve_factor(graph, lins, x, g, lam, cfg.min_diag)
                return delta, jnp.array(0), chol
            return linear_solvers.schur_solve(graph, lins, x, g, lam, cfg.min_diag), jnp.array(0)
        return linear_solvers.pcg_solve(graph, lins, x, g, lam, cfg.min_diag, cfg.pcg_tol, cfg.pcg_max_iters,
                                        scaled=marquardt)

    # The loop linearises at the top of every iteration, or (keep_linearization) of the
    # first and of those after an accepted step, carrying the linearisation so that a
    # rejected step retries without linearising again; the first iteration's cost is the
    # initial cost (no separate cost pass).  The linearisation appears once in the
    # program (a copy before the loop made XLA's compile ~30 % longer): the carry starts
    # with zeros of its shape.  At least one iteration runs.
    dtype = x0.dtype
    keep = cfg.keep_linearization
    iter_cap = jnp.maximum(iter_cap, 1)
    # counters typed as the body returns them: a weakly typed jnp.array(0) made
    # while_loop trace the body twice (the trace, not XLA, is most of a warm start)
    count = jnp.zeros((), jnp.int32)
    unset = jnp.asarray(jnp.inf, dtype)  # costs: set by the first iteration
    init = dict(
        x=x0, fresh=jnp.array(False), cost=unset, cost0=unset,
        lam=jnp.asarray(cfg.lambda_init, dtype), it=count, acc=count,
        done=jnp.array(False), conv=jnp.array(False), lin_it=count,
    )
    if keep:
        init["lin"] = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), jax.eval_shape(lin_at, x0))
    if cfg.keep_factor:
        n_red = sum(t.dim * c for t, c in zip(layout.types, layout.capacities) if t.manifold != "euclidean")
        init["factor"] = jnp.eye(n_red, dtype=dtype)  # replaced by the first iteration

    def cond(s):
        return (~s["done"]) & (s["it"] < iter_cap)

    def body(s):
        x, lam = s["x"], s["lam"]
        if keep:
            lin = jax.lax.cond(s["fresh"], lambda: s["lin"], lambda: lin_at(x))
        else:
            lin = lin_at(x)
        first = s["it"] == 0
        cost = jnp.where(first, lin[1], s["cost"])
        cost0 = jnp.where(first, lin[1], s["cost0"])
        lins, _, g = lin
        delta, lin_it, *factor = solve_step(lins, x, g, lam)
        x_new = retract_state(layout, x, delta)
        cost_new = graph_cost(graph, x_new)
        accept = jnp.isfinite(cost_new) & (cost_new < cost) & jnp.all(jnp.isfinite(delta))
        x2 = jnp.where(accept, x_new, x)
        cost2 = jnp.where(accept, cost_new, cost)
        small_step = _safe_norm(delta) <= cfg.step_tol * (_safe_norm(x) + cfg.step_tol)
        rel = (cost - cost_new) <= cfg.rel_tol * cost
        conv = accept & (rel | (cost2 <= cfg.abs_tol) | small_step)
        lam2 = jnp.where(accept, jnp.maximum(lam / cfg.lambda_factor, 1e-20), lam * cfg.lambda_factor)
        # A rejected, vanishing step at the optimum is convergence too.
        conv = conv | (~accept & small_step)
        if cfg.stop_on_flat_rejection:
            conv = conv | (~accept & jnp.isfinite(cost_new) & (cost_new - cost <= cfg.rel_tol * cost))
        done = conv | (lam2 > cfg.lambda_max)
        out = dict(
            x=x2, fresh=~accept, cost=cost2, cost0=cost0, lam=lam2, it=s["it"] + 1,
            acc=s["acc"] + accept.astype(jnp.int32), done=done, conv=conv,
            lin_it=s["lin_it"] + lin_it.astype(jnp.int32),
        )
        if keep:
            out["lin"] = lin
        if cfg.keep_factor:
            out["factor"] = factor[0]
        return out

    s = jax.lax.while_loop(cond, body, init)
    return LMResult(
        x=s["x"], cost=s["cost"], initial_cost=s["cost0"], iterations=s["it"], accepted=s["acc"],
        converged=s["conv"], lam=s["lam"], linear_iterations=s["lin_it"], factor=s.get("factor"),
    )


# LMConfig fields that are data of the compiled solve, not part of the program: solves
# differing only in these share one executable (jaxls splits its config the same way).
# ``min_diag`` stays static: the host sparse solve takes it as a Python float.
RUNTIME_FIELDS = ("max_iters", "lambda_init", "lambda_factor", "lambda_max", "rel_tol", "abs_tol", "step_tol",
                  "pcg_tol", "pcg_max_iters")
_STATIC_DEFAULTS = {name: LMConfig.__dataclass_fields__[name].default for name in RUNTIME_FIELDS}


class _TracedConfig:
    """An LMConfig inside the jitted solve: ``RUNTIME_FIELDS`` are traced scalars, the
    other fields (which choose the program: linear solver, damping, ...) static."""

    def __init__(self, static: LMConfig, runtime: dict):
        self._static, self._runtime = static, runtime

    def __getattr__(self, name):
        runtime = self.__dict__["_runtime"]
        return runtime[name] if name in runtime else getattr(self.__dict__["_static"], name)


def _levenberg_marquardt_split(graph: FactorGraph, x0: jnp.ndarray, cfg: LMConfig, runtime: dict) -> LMResult:
    return levenberg_marquardt(graph, x0, _TracedConfig(cfg, runtime))


_solve = counted_jit(_levenberg_marquardt_split, name="levenberg_marquardt", static_argnames=("cfg",))


def split_config(cfg: LMConfig, max_iters=None) -> tuple[LMConfig, dict]:
    """(static part, runtime part) of ``cfg``: the static part has ``RUNTIME_FIELDS`` at
    their defaults (it keys the compiled program), the runtime part holds their values
    as numpy scalars (float64; int32 for iteration caps), ``max_iters`` lowered to the
    call's cap when given."""
    cap = cfg.max_iters if max_iters is None else np.minimum(max_iters, cfg.max_iters)
    runtime = {name: np.float64(getattr(cfg, name)) for name in RUNTIME_FIELDS}
    runtime["max_iters"], runtime["pcg_max_iters"] = np.int32(cap), np.int32(cfg.pcg_max_iters)
    return dataclasses.replace(cfg, **_STATIC_DEFAULTS), runtime


def solve(graph: FactorGraph, x0: jnp.ndarray, cfg: LMConfig = LMConfig(), max_iters=None) -> LMResult:
    """``levenberg_marquardt`` compiled (and counted as ``levenberg_marquardt``): one
    executable per graph structure and static part of ``cfg``.  Iteration caps and
    tolerances (``RUNTIME_FIELDS``) and ``max_iters`` (a lower cap for this call) are
    passed as data, so changing them never recompiles (``optimization.prefix`` solves
    a graph's used part at a smaller compiled capacity)."""
    static, runtime = split_config(cfg, max_iters)
    return _solve(graph, x0, cfg=static, runtime=runtime)


def gauss_newton(graph: FactorGraph, x0: jnp.ndarray, cfg: GNConfig = GNConfig()) -> jnp.ndarray:
    """Fixed-iteration GN on a graph (differentiable; for the implicit/unrolled paths)."""
    return jax.lax.fori_loop(0, cfg.max_iters, lambda _, x: _graph_gn_step(graph, x, cfg), x0)


def optimize(wm, cfg: LMConfig = LMConfig()) -> LMResult:
    """Solve a WorldModel with the jitted LM and write the solution back into it."""
    x0, _ = wm.pack_state()
    result = solve(wm.fg, x0, cfg=cfg)
    wm.update_from_state(result.x)
    return result
