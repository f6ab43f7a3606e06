"""Shared pieces of the hybrid SE(3) + voxel learning experiments (seeds 001-003).

A chain of poses ``pose_i`` (ground truth x = i m) and voxels ``voxel_i`` (ground
truth [i, 0, 0] m) with learnable, initially biased odometry measurements
``theta["odom"]`` (n-1, 6) and observation points ``theta["obs"]`` (n, 3).  The
inner problem (state given theta) is solved by differentiable gradient descent;
the outer loop descends a supervised loss through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from dsg_jit_ros.learning import build_param_residual, theta_from_model
from dsg_jit_ros.optimization.solvers import GDConfig, gradient_descent
from dsg_jit_ros.slam.measurements import (
    odom_se3_residual,
    pose_voxel_point_residual,
    prior_residual,
    voxel_point_observation_residual,
)
from dsg_jit_ros.world.model import WorldModel


@dataclass(frozen=True)
class Experiment:
    """A built hybrid graph: model, variable ids, packed initial state."""

    wm: WorldModel
    pose_ids: list[int]
    voxel_ids: list[int]
    x0: jnp.ndarray
    index: dict


def build_hybrid_graph(n: int, obs_factor: str, voxel_priors: str) -> Experiment:
    """n poses + n voxels, priors, biased odometry and biased observations.

    ``obs_factor``: "pose_voxel_point" (voxel i seen from pose i, body-frame point;
    HERO) or "voxel_point_obs" (unary, world point; exp15).
    ``voxel_priors``: "first" (weak prior on voxel 0) or "all" (weak priors on all).
    """
    wm = WorldModel()
    wm.register_residual("prior", prior_residual)
    wm.register_residual("odom_se3", odom_se3_residual)
    wm.register_residual("voxel_point_obs", voxel_point_observation_residual)
    wm.register_residual("pose_voxel_point", pose_voxel_point_residual)

    pose_ids = [
        wm.add_variable("pose_se3", jnp.array([i + 0.1 * (-1) ** i, 0.05 * i, 0.0, 0.0, 0.0, 0.02 * i]))
        for i in range(n)
    ]
    voxel_ids = [
        wm.add_variable("voxel_cell3d", jnp.array([i + 0.3 * (-1) ** i, 0.25 - 0.1 * i, 0.0]))
        for i in range(n)
    ]
    wm.add_factor("prior", (pose_ids[0],), {"target": jnp.zeros(6), "weight": 3.0})
    for v in voxel_ids if voxel_priors == "all" else voxel_ids[:1]:
        target = jnp.zeros(3) if v == voxel_ids[0] else jnp.array([float(voxel_ids.index(v)), 0.0, 0.0])
        wm.add_factor("prior", (v,), {"target": target, "weight": 0.1})
    for i in range(n - 1):
        biased = jnp.array([0.8, 0.1, 0.0, 0.0, 0.0, 0.05])  # truth: [1, 0, 0, 0, 0, 0]
        wm.add_factor("odom_se3", (pose_ids[i], pose_ids[i + 1]), {"measurement": biased, "weight": 1.0})
    for i in range(n):
        if obs_factor == "pose_voxel_point":
            # truth: the voxel sits at the pose's origin, body point [0, 0, 0]
            wm.add_factor("pose_voxel_point", (pose_ids[i], voxel_ids[i]),
                          {"point_body": jnp.array([0.3, -0.2, 0.0]), "weight": 1.0})
        else:
            # truth: world point [i, 0, 0]
            wm.add_factor("voxel_point_obs", (voxel_ids[i],),
                          {"point_world": jnp.array([i - 0.4, 0.3, 0.0]), "weight": 1.0})
    x0, index = wm.pack_state()
    return Experiment(wm, pose_ids, voxel_ids, x0, index)


def make_learning_problem(exp: Experiment, gd: GDConfig):
    """(inner_solve(theta) -> x, supervised_loss(theta) -> scalar, theta0)."""
    residual = build_param_residual(exp.wm)
    last_pose = slice(*exp.index[exp.pose_ids[-1]])
    voxel_slices = [slice(*exp.index[v]) for v in exp.voxel_ids]
    n = len(exp.pose_ids)

    def inner_solve(theta):
        def objective(x):
            r = residual(x, theta)
            return 0.5 * jnp.sum(r * r)

        return gradient_descent(objective, exp.x0, gd)

    def supervised_loss(theta):
        x = inner_solve(theta)
        loss = (x[last_pose][0] - (n - 1.0)) ** 2
        for i, s in enumerate(voxel_slices):
            loss = loss + (x[s][0] - i) ** 2 + x[s][1] ** 2
        return loss

    return inner_solve, supervised_loss, theta_from_model(exp.wm)


def train(supervised_loss, theta, steps: int, lr: float):
    """Outer loop: plain gradient descent on theta; returns (theta, losses)."""
    value_and_grad = jax.jit(jax.value_and_grad(supervised_loss))
    losses = []
    for _ in range(steps):
        loss, g = value_and_grad(theta)
        losses.append(float(loss))
        theta = {
            "odom": theta["odom"] - lr * g["odom"],
            "obs": theta["obs"] - lr * g["obs"],
        }
    losses.append(float(value_and_grad(theta)[0]))
    return theta, losses


def report(exp: Experiment, inner_solve, theta0, theta, losses) -> dict:
    """Numbers the experiment prints: losses, pose tx and voxel positions before/after."""
    solve = jax.jit(inner_solve)
    x_before, x_after = solve(theta0), solve(theta)

    def summary(x):
        return {
            "last_pose_tx": float(x[slice(*exp.index[exp.pose_ids[-1]])][0]),
            "voxels": [[round(float(c), 4) for c in x[slice(*exp.index[v])]] for v in exp.voxel_ids],
        }

    return {
        "loss_initial": losses[0],
        "loss_final": losses[-1],
        "before": summary(x_before),
        "after": summary(x_after),
        "theta_odom_mean": [round(float(c), 4) for c in jnp.mean(theta["odom"], axis=0)],
        "theta_obs_mean": [round(float(c), 4) for c in jnp.mean(theta["obs"], axis=0)],
    }


def run(n: int, obs_factor: str, voxel_priors: str, inner: GDConfig, steps: int, lr: float) -> dict:
    """Build, train and summarise one experiment."""
    exp = build_hybrid_graph(n, obs_factor=obs_factor, voxel_priors=voxel_priors)
    inner_solve, loss, theta0 = make_learning_problem(exp, inner)
    theta, losses = train(loss, theta0, steps, lr)
    return report(exp, inner_solve, theta0, theta, losses)
