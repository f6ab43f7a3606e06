"""The pieces of a pipeline's warm-up (``SlamPipeline.warm_up``): what it compiles, how
it says so, and the threads it compiles in.

A node compiles before it subscribes: the window's solve and the covariance (on a
synthetic keyframe: capacities fix every shape, so no keyframe compiles later).  The
global graph's solve (loop closure) is needed only once a keyframe leaves the window,
so a node compiles it once active, in a thread of its own.  Start-up time on a warm
compile cache is mostly JAX tracing and lowering, redone in every process, not XLA
(``bench/startup_profile.py`` shows where it goes).
"""

from __future__ import annotations

import threading
import time
from typing import Callable

import jax
import numpy as np

from dsg_jit_ros.mapping.global_graph import GlobalGraph, LoopConfig
from dsg_jit_ros.mapping.voxelize import VoxelConfig
from dsg_jit_ros.optimization.covariance import marginal_covariance


def synthetic_cloud(voxel: VoxelConfig, n: int = 500) -> np.ndarray:
    """(n, 3) body-frame points in every direction within the sensor's range (m)."""
    rng = np.random.default_rng(0)
    lo = max(voxel.min_range, 1e-3)
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    return direction * rng.uniform(lo, voxel.max_range, size=(n, 1)) * 0.99


class Background(threading.Thread):
    """Run ``fn()`` in a daemon thread (started at once); ``join`` re-raises what it raised."""

    def __init__(self, fn: Callable[[], object], name: str = "dsg_jit_warmup") -> None:
        super().__init__(name=name, daemon=True)
        self._fn, self._error = fn, None
        self.start()

    def run(self) -> None:
        try:
            self._fn()
        except BaseException as err:  # noqa: BLE001 (handed to the joining thread)
            self._error = err

    def join(self, timeout=None) -> None:
        super().join(timeout)
        if self._error is not None:
            raise self._error


def covariance_compiler(wm) -> Callable[[], object]:
    """A function compiling ``marginal_covariance`` for the window's WorldModel ``wm``.

    Graph and state are taken now (before the window's first keyframe), so that the
    function reads nothing the window then changes: any state of the graph's shapes
    will do.  The slot is a Python int, as in the real call, so that call finds the
    program."""
    graph = wm.fg
    x, _ = wm.pack_state()
    pos = graph.layout.position("pose_se3")
    return lambda: jax.block_until_ready(marginal_covariance(graph, x, pos, 0))


def compile_global_graph(cfg: LoopConfig) -> float:
    """Compile the global graph's solve (``GlobalGraph`` has fixed capacities, so any
    graph gives the same shapes) and import what loop verification needs
    (``mapping.correlative``: scipy.signal, ~0.4 s); returns the seconds it took."""
    start = time.perf_counter()
    import scipy.ndimage  # noqa: F401
    import scipy.signal  # noqa: F401

    graph = GlobalGraph(cfg)
    graph.add(0.0, np.eye(4), np.eye(4), None)
    graph.add(1.0, np.eye(4), np.eye(4), None)
    graph.add_loop(0, 1, np.eye(4))
    graph.optimize()
    return time.perf_counter() - start


def warmup_message(programs: dict[str, int], seconds: float) -> str:
    """The warm-up's log line: how many programs it built (compiled, or loaded from the
    persistent compile cache; each one traced and lowered in this process), which, and
    the seconds: ``warm-up: N programs built (name, ...) in S s; ...``."""
    names = ", ".join(f"{k} x{n}" if n > 1 else k for k, n in sorted(programs.items()))
    return f"warm-up: {sum(programs.values())} programs built ({names}) in {seconds:.1f} s; no compile after this"
