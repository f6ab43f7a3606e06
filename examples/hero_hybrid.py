"""HERO experiment (seeds 001/002): 6 SE(3) poses + 6 voxels, learnable odometry and
body-frame voxel observations, differentiable inner gradient descent (80 steps),
outer gradient descent on a supervised loss.  Prints a JSON summary."""

from __future__ import annotations

import json

import hybrid_experiment

from dsg_jit_ros.optimization.solvers import GDConfig


def run(steps: int = 60, lr: float = 0.05) -> dict:
    return hybrid_experiment.run(
        6, "pose_voxel_point", "first", GDConfig(learning_rate=0.05, max_iters=80), steps, lr
    )


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
