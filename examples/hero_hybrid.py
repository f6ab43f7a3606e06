"""HERO experiment (seeds 001/002): 6 SE(3) poses + 6 voxels, learnable odometry and
body-frame voxel observations, differentiable inner gradient descent (80 steps),
outer gradient descent on a supervised loss.  Prints a JSON summary."""

from __future__ import annotations

import json

from hybrid_experiment import build_hybrid_graph, make_learning_problem, report, train

from dsg_jit_ros.optimization.solvers import GDConfig

INNER = GDConfig(learning_rate=0.05, max_iters=80)


def run(steps: int = 60, lr: float = 0.05) -> dict:
    exp = build_hybrid_graph(6, obs_factor="pose_voxel_point", voxel_priors="first")
    inner_solve, loss, theta0 = make_learning_problem(exp, INNER)
    theta, losses = train(loss, theta0, steps, lr)
    return report(exp, inner_solve, theta0, theta, losses)


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
