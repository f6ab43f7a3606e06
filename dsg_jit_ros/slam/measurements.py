"""Residual functions ``e = fn(x_stacked, params[, ctx])`` of the built-in factors.

``x_stacked`` concatenates the factor's variable values (poses as
``[t (m), rotation vector (rad)]``, see ``geometry.se3``); residuals are
*unweighted*: the factor graph applies the factor's whitening and kernel, so
``weight`` means the same thing for every factor (see ``world.graph``).
"""

from __future__ import annotations

import jax.numpy as jnp

from dsg_jit_ros.geometry import se3


def prior_residual(x: jnp.ndarray, params: dict, ctx=None) -> jnp.ndarray:
    """Unary prior toward ``params["target"]`` (same layout as the variable).

    Euclidean variables: ``x - target``.  Poses: ``local(target, x)`` in
    [rho (m), phi (rad)], the right difference on SE(3).
    """
    target = params["target"]
    if ctx is not None and ctx.arg_types[0].manifold == "se3":
        return se3.local(target, x)
    return x - target


def odom_se3_residual(x: jnp.ndarray, params: dict) -> jnp.ndarray:
    """Relative pose between ``x = [pose_i, pose_j]`` vs ``params["measurement"]``.

    The measurement is the pose of j in i's frame as a 6-vector ``[t, rotvec]``;
    the error is ``log(Z^-1 T_i^-1 T_j)`` in [rho, phi].
    """
    t_i = se3.vec_to_matrix(x[:6])
    t_j = se3.vec_to_matrix(x[6:12])
    return se3.between_error(t_i, t_j, se3.vec_to_matrix(params["measurement"]))


def between_se3_residual(x: jnp.ndarray, params: dict) -> jnp.ndarray:
    """As ``odom_se3_residual`` with the measurement given as a 4x4 ``params["T_ij"]``.

    Used for g2o/GTSAM pose graphs, where measurements are matrices and the
    weight is the edge's 6x6 information in [t, rot] order.
    """
    t_i = se3.vec_to_matrix(x[:6])
    t_j = se3.vec_to_matrix(x[6:12])
    return se3.between_error(t_i, t_j, params["T_ij"])


def voxel_point_observation_residual(x: jnp.ndarray, params: dict) -> jnp.ndarray:
    """Unary voxel observation: voxel centre ``x`` (m, world) minus ``params["point_world"]``."""
    return x - params["point_world"]


def pose_voxel_point_residual(x: jnp.ndarray, params: dict) -> jnp.ndarray:
    """A voxel seen from a pose: ``x = [T_world_body (6), voxel_world (3)]``.

    Error in the body frame (m): ``R^T (voxel - t) - params["point_body"]``, the
    voxel predicted in the sensor frame minus the measured body-frame point.
    """
    t_wb = se3.vec_to_matrix(x[:6])
    v = x[6:9]
    return t_wb[:3, :3].T @ (v - t_wb[:3, 3]) - params["point_body"]


BUILTIN_RESIDUALS = {
    "prior": prior_residual,
    "odom_se3": odom_se3_residual,
    "between_se3": between_se3_residual,
    "voxel_point_obs": voxel_point_observation_residual,
    "pose_voxel_point": pose_voxel_point_residual,
}
