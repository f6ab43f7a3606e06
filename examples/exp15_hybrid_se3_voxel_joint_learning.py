"""exp15 (seed 003): 3 SE(3) poses + 3 voxels, priors on pose0 and voxels 0-2,
learnable odometry (2 factors) and world-frame voxel observations (3 factors),
inner gradient descent, outer gradient descent.  Prints a JSON summary."""

from __future__ import annotations

import json

import hybrid_experiment

from dsg_jit_ros.optimization.solvers import GDConfig


def run(steps: int = 60, lr: float = 0.1) -> dict:
    return hybrid_experiment.run(
        3, "voxel_point_obs", "all", GDConfig(learning_rate=0.1, max_iters=80), steps, lr
    )


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
