"""The pieces of a pipeline's warm-up (``SlamPipeline.warm_up``): what it compiles on,
and how it says so.

A node compiles before it subscribes: the window's solve and the covariance (on a
synthetic keyframe: capacities fix every shape, so no keyframe compiles later).  The
global graph's solve (loop closure) is needed only once a keyframe leaves the window,
so a node compiles it once active, in a thread of its own.  Start-up time on a warm
compile cache is mostly JAX tracing and lowering, redone in every process, not XLA
(``bench/startup_profile.py`` shows where it goes).
"""

from __future__ import annotations

import time

import numpy as np

from dsg_jit_ros.mapping.global_graph import GlobalGraph, LoopConfig
from dsg_jit_ros.mapping.voxelize import VoxelConfig


def synthetic_cloud(voxel: VoxelConfig, n: int = 500) -> np.ndarray:
    """(n, 3) body-frame points in every direction within the sensor's range (m)."""
    rng = np.random.default_rng(0)
    lo = max(voxel.min_range, 1e-3)
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    return direction * rng.uniform(lo, voxel.max_range, size=(n, 1)) * 0.99


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
