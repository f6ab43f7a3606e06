"""exp15 (seed 003): 3 SE(3) poses + 3 voxels, priors on pose0 and voxels 0-2,
learnable odometry (2 factors) and world-frame voxel observations (3 factors),
inner gradient descent, outer gradient descent.  Prints a JSON summary."""

from __future__ import annotations

import json

from hybrid_experiment import build_hybrid_graph, make_learning_problem, report, train

from dsg_jit_ros.optimization.solvers import GDConfig

INNER = GDConfig(learning_rate=0.1, max_iters=80)


def run(steps: int = 60, lr: float = 0.1) -> dict:
    exp = build_hybrid_graph(3, obs_factor="voxel_point_obs", voxel_priors="all")
    inner_solve, loss, theta0 = make_learning_problem(exp, INNER)
    theta, losses = train(loss, theta0, steps, lr)
    return report(exp, inner_solve, theta0, theta, losses)


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
