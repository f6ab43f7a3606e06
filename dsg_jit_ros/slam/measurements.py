"""Residual functions ``e = fn(x_stacked, params[, ctx])`` of the built-in factors.

``x_stacked`` concatenates the factor's variable values (poses as
``[t (m), rotation vector (rad)]``, see ``geometry.se3``); residuals are
*unweighted*: the factor graph applies the factor's whitening and kernel, so
``weight`` means the same thing for every factor (see ``world.graph``).

The pose factors also come with versions on *lifted* arguments (poses as 4x4
``T_world_body``, computed once per variable rather than once per factor):
``lifted_residual(args, params) -> e`` and ``tangent_jacobians(args, params) ->
(e, [J_a])``, closed-form Jacobians with respect to each argument's tangent step
(right perturbation for poses), which the linearisation uses instead of
forward-mode autodiff (smaller programs, faster compiles).  Each function declares
them once in its ``world.factor_type.FactorType`` record (``describe`` below), with
the structure the point Schur solver may rely on.  Residuals without a record (the
seeds' own, any user function) are differentiated automatically; the tests check
both against finite differences.
"""

from __future__ import annotations

import jax.numpy as jnp

from dsg_jit_ros.geometry import se3, so3
from dsg_jit_ros.world.factor_type import POINT_IN_BODY, POINT_IN_MAP, PRIOR, describe


def prior_residual(x: jnp.ndarray, params: dict, ctx=None) -> jnp.ndarray:
    """Unary prior toward ``params["target"]`` (same layout as the variable).

    Euclidean variables: ``x - target``.  Poses: ``local(target, x)`` in
    [rho (m), phi (rad)], the right difference on SE(3).
    """
    target = params["target"]
    if ctx is not None and ctx.arg_types[0].manifold == "se3":
        return se3.local(target, x)
    return x - target


# on a Euclidean variable its Jacobian is the identity (the point Schur solver's prior)
describe(prior_residual, schur_structure=PRIOR)


def odom_se3_residual(x: jnp.ndarray, params: dict) -> jnp.ndarray:
    """Relative pose between ``x = [pose_i, pose_j]`` vs ``params["measurement"]``.

    The measurement is the pose of j in i's frame as a 6-vector ``[t, rotvec]``;
    the error is ``log(Z^-1 T_i^-1 T_j)`` in [rho, phi].
    """
    t_i = se3.vec_to_matrix(x[:6])
    t_j = se3.vec_to_matrix(x[6:12])
    return se3.between_error(t_i, t_j, se3.vec_to_matrix(params["measurement"]))


def _between_jacobians(t_i, t_j, z):
    """(e, [J_i, J_j]) of ``e = log(Z^-1 T_i^-1 T_j)`` w.r.t. right perturbations, in
    closed form (``se3.inverse_jacobians``).

    With ``E = Z^-1 T_i^-1 T_j``: ``T_j exp(d)`` gives ``E exp(d)``, so
    ``J_j = J_r^-1(e)``; ``T_i exp(d)`` gives ``Z^-1 exp(-d) Z E = exp(-Ad(Z^-1) d) E``,
    so ``J_i = -J_l^-1(e) Ad(Z^-1)``, by blocks (``J_l^-1 = [[A, B], [0, A]]``,
    ``Z^-1 = (R, t)``): ``-[[A R, (A t^ + B) R], [0, A R]]``.
    """
    mul = so3.small_matmul
    e = se3.log(se3.between_matrix(t_i, t_j, z))
    jl_inv, jr_inv = se3.inverse_jacobians(e)
    r = z[:3, :3].T
    t = -mul(r, z[:3, 3])
    a, b = jl_inv[:3, :3], jl_inv[:3, 3:]
    a_r = mul(a, r)
    top = jnp.concatenate([a_r, mul(mul(a, so3.hat(t)) + b, r)], axis=1)
    bottom = jnp.concatenate([jnp.zeros_like(a_r), a_r], axis=1)
    return e, [-jnp.concatenate([top, bottom], axis=0), jr_inv]


def between_se3_residual(x: jnp.ndarray, params: dict) -> jnp.ndarray:
    """As ``odom_se3_residual`` with the measurement given as a 4x4 ``params["T_ij"]``.

    Used for g2o/GTSAM pose graphs, where measurements are matrices and the
    weight is the edge's 6x6 information in [t, rot] order.
    """
    t_i = se3.vec_to_matrix(x[:6])
    t_j = se3.vec_to_matrix(x[6:12])
    return se3.between_error(t_i, t_j, params["T_ij"])


describe(
    odom_se3_residual,
    lifted_residual=lambda a, p: se3.between_error(a[0], a[1], se3.vec_to_matrix(p["measurement"])),
    tangent_jacobians=lambda a, p: _between_jacobians(a[0], a[1], se3.vec_to_matrix(p["measurement"])))
describe(
    between_se3_residual,
    lifted_residual=lambda a, p: se3.between_error(a[0], a[1], p["T_ij"]),
    tangent_jacobians=lambda a, p: _between_jacobians(a[0], a[1], p["T_ij"]))


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


def _pose_voxel_point_lifted(args, params):
    t_wb, v = args
    return t_wb[:3, :3].T @ (v - t_wb[:3, 3]) - params["point_body"]


def _pose_voxel_point_jacobians(args, params):
    """e = R^T (v - t) - p: de/drho = -I, de/dphi = [q]x with q = R^T (v - t), de/dv = R^T."""
    t_wb, v = args
    r_t = t_wb[:3, :3].T
    q = r_t @ (v - t_wb[:3, 3])
    jac_pose = jnp.concatenate([-jnp.eye(3, dtype=v.dtype), so3.hat(q)], axis=1)
    return q - params["point_body"], [jac_pose, r_t]


describe(pose_voxel_point_residual, lifted_residual=_pose_voxel_point_lifted,
         tangent_jacobians=_pose_voxel_point_jacobians, schur_structure=POINT_IN_BODY)


def pose_voxel_surface_residual(x: jnp.ndarray, params: dict) -> jnp.ndarray:
    """A keyframe's points in a voxel vs the voxel: ``x = [T_world_body (6), voxel_world (3)]``.

    Error in the world (map) frame (m): ``voxel - (R p + t)`` with ``p =
    params["point_body"]`` the centroid of the keyframe's points in the cell.  The
    error is in the map frame so that the factor's whitening can be the voxel's
    surface information (stiff along the surface normal, soft along the surface,
    where the centroid of a partial view slides), one matrix for every keyframe
    that sees the voxel (``mapping.voxel_map``).
    """
    t_wb = se3.vec_to_matrix(x[:6])
    return x[6:9] - t_wb[:3, :3] @ params["point_body"] - t_wb[:3, 3]


def _pose_voxel_surface_lifted(args, params):
    t_wb, v = args
    return v - t_wb[:3, :3] @ params["point_body"] - t_wb[:3, 3]


def _pose_voxel_surface_jacobians(args, params):
    """e = v - R p - t: de/drho = -R, de/dphi = R [p]x (right perturbation), de/dv = I."""
    t_wb, v = args
    r = t_wb[:3, :3]
    p = params["point_body"]
    jac_pose = jnp.concatenate([-r, r @ so3.hat(p)], axis=1)
    return v - r @ p - t_wb[:3, 3], [jac_pose, jnp.eye(3, dtype=v.dtype)]


describe(pose_voxel_surface_residual, lifted_residual=_pose_voxel_surface_lifted,
         tangent_jacobians=_pose_voxel_surface_jacobians, schur_structure=POINT_IN_MAP)


BUILTIN_RESIDUALS = {
    "prior": prior_residual,
    "odom_se3": odom_se3_residual,
    "between_se3": between_se3_residual,
    "voxel_point_obs": voxel_point_observation_residual,
    "pose_voxel_point": pose_voxel_point_residual,
    "pose_voxel_surface": pose_voxel_surface_residual,
}

