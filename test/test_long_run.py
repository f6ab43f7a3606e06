"""Bounded memory on a long run (issue 8): the second lap of a ring corridor must not grow
the pipeline's state the way the first lap did.

Every keyframe that leaves the window becomes a global-graph node that keeps its voxel
observations (tens of KB) until the graph is full; then the oldest nodes retire and their
submaps are folded into one voxel map bounded by the mapped area.  Measured as the bytes
of every Python object and numpy buffer reachable from the pipeline (its own classes and
containers; the fixed-capacity device buffers of the compiled solver do not grow and are
left out), at the end of the first lap and of the second: with a small graph capacity
the state grows by the trajectory only (a pose per keyframe); the counter-example, a
capacity larger than the run, grows by every keyframe's observations.
"""

import dataclasses
import sys
from collections import deque

import numpy as np

from conftest import REPO
from dsg_jit_ros.config import load_pipeline_config
from dsg_jit_ros.mapping.pipeline import SlamPipeline
from dsg_jit_ros.tools.ring_world import RingConfig, simulate_ring

LAP_S = (2 * (24.0 + 10.0) - (8 - 2 * np.pi) * 1.0) / 1.0


def deep_bytes(root) -> int:
    """Bytes of the objects reachable from ``root``: numpy buffers (each once), builtin
    containers and scalars, and instances of this package's classes."""
    seen, stack, total = set(), [root], 0
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        if isinstance(o, np.ndarray):
            if o.base is None:
                total += o.nbytes
            else:
                stack.append(o.base)
        elif isinstance(o, (str, bytes, int, float, bool, complex, type(None), np.generic)):
            total += sys.getsizeof(o)
        elif isinstance(o, (list, tuple, set, frozenset, deque)):
            total += sys.getsizeof(o)
            stack.extend(o)
        elif isinstance(o, dict):
            total += sys.getsizeof(o)
            stack.extend(o.keys())
            stack.extend(o.values())
        elif type(o).__module__.startswith("dsg_jit_ros") and hasattr(o, "__dict__"):
            total += sys.getsizeof(o)
            stack.extend(vars(o).values())
    return total


def _lap_growth(data, capacity: int) -> tuple[float, float, int, SlamPipeline]:
    """(bytes per keyframe over lap 1, over lap 2, lap 2 keyframes, the pipeline)."""
    stamps, odom, scans = data
    cfg = load_pipeline_config(REPO / "config" / "planar_laser.yaml")
    cfg = dataclasses.replace(cfg, loop=dataclasses.replace(cfg.loop, capacity=capacity))
    pipe = SlamPipeline(cfg)
    pipe.warm_up()
    empty = deep_bytes(pipe)
    lap = int(np.searchsorted(stamps, LAP_S))
    for k, (t, o, c) in enumerate(zip(stamps, odom, scans)):
        if k == lap:
            first, kf1 = deep_bytes(pipe), pipe.keyframes
        pipe.add_odometry(t, o)
        pipe.add_cloud(t, c)
    kf2 = pipe.keyframes - kf1
    return (first - empty) / kf1, (deep_bytes(pipe) - first) / kf2, kf2, pipe


def test_memory_stays_bounded_over_laps():
    stamps, _, odom, scans = simulate_ring(RingConfig(laps=2.05))
    data = (stamps, odom, scans)
    lap1, lap2, keyframes, pipe = _lap_growth(data, capacity=32)
    ref1, ref2, _, ref = _lap_growth(data, capacity=4096)
    print(f"bytes per keyframe, lap 1 / lap 2 ({keyframes} keyframes): capacity 32: {lap1:.0f} / {lap2:.0f}; "
          f"capacity 4096: {ref1:.0f} / {ref2:.0f}")
    g = pipe.graph
    assert keyframes > 200 and g.first > 0 and len(g) - g.first <= 32
    assert all(n.cells is None for n in g.nodes[:g.first])
    assert ref.graph.first == 0 and ref2 > 10_000  # the counter-example keeps every node's observations
    assert lap2 < 3_000  # a pose, a stamp and bookkeeping per keyframe: the map itself does not grow
