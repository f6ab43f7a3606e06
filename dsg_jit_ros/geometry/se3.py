"""SE(3) on JAX: the one pose convention of the whole package.

Value layout of a ``pose_se3`` variable (what ``WorldModel`` stores and packs):
``v = [tx, ty, tz, rx, ry, rz]`` = the translation of ``T_world_body`` in metres
followed by the rotation vector of ``R_world_body`` in radians.  It is *not* the
se(3) exponential coordinate: ``v = [1, 0, 0, 0, 0, 1]`` is a pose at x = 1 m.

Tangent (what solvers step in): ``delta = [rho, phi]`` (translation first, then
rotation), applied on the right, in the body frame:
``T <- T @ exp(delta)``; ``log`` is its inverse.  Jacobians of residuals are taken
with respect to this ``delta`` and ``retract`` applies it, so they agree.

Poses as matrices are 4x4 homogeneous ``T_a_b`` (maps points in b to a).
All functions act on one element; ``jax.vmap`` them for batches.
"""

from __future__ import annotations

import jax.numpy as jnp

from dsg_jit_ros.geometry import so3


def from_rt(r: jnp.ndarray, t: jnp.ndarray) -> jnp.ndarray:
    """4x4 matrix from rotation ``r`` (3x3) and translation ``t`` (3,)."""
    top = jnp.concatenate([r, t[:, None]], axis=1)
    bottom = jnp.array([[0.0, 0.0, 0.0, 1.0]], dtype=top.dtype)
    return jnp.concatenate([top, bottom], axis=0)


def vec_to_matrix(v: jnp.ndarray) -> jnp.ndarray:
    """4x4 ``T`` of a pose value ``[t (m), rotation vector (rad)]``."""
    return from_rt(so3.exp(v[3:]), v[:3])


def matrix_to_vec(t_mat: jnp.ndarray) -> jnp.ndarray:
    """Pose value ``[t, rotation vector]`` of a 4x4 ``T`` (angle in [0, pi])."""
    return jnp.concatenate([t_mat[:3, 3], so3.log(t_mat[:3, :3])])


def inverse(t_mat: jnp.ndarray) -> jnp.ndarray:
    """Inverse of a rigid transform: T_b_a from T_a_b."""
    r_t = t_mat[:3, :3].T
    return from_rt(r_t, -r_t @ t_mat[:3, 3])


def act(t_mat: jnp.ndarray, p: jnp.ndarray) -> jnp.ndarray:
    """Transform point ``p`` (3,) from frame b to frame a with ``T_a_b``."""
    return t_mat[:3, :3] @ p + t_mat[:3, 3]


def exp(xi: jnp.ndarray) -> jnp.ndarray:
    """4x4 exponential of tangent ``xi = [rho, phi]``."""
    rho, phi = xi[:3], xi[3:]
    return from_rt(so3.exp(phi), so3.left_jacobian(phi) @ rho)


def log(t_mat: jnp.ndarray) -> jnp.ndarray:
    """Tangent ``[rho, phi]`` of a 4x4 transform, rotation angle in [0, pi]."""
    phi = so3.log(t_mat[:3, :3])
    rho = so3.left_jacobian_inverse(phi) @ t_mat[:3, 3]
    return jnp.concatenate([rho, phi])


def retract(v: jnp.ndarray, delta: jnp.ndarray) -> jnp.ndarray:
    """Pose value after the right perturbation ``T(v) @ exp(delta)``."""
    return matrix_to_vec(vec_to_matrix(v) @ exp(delta))


def local(v_a: jnp.ndarray, v_b: jnp.ndarray) -> jnp.ndarray:
    """Tangent ``delta`` with ``retract(v_a, delta) == v_b`` (right difference)."""
    return log(inverse(vec_to_matrix(v_a)) @ vec_to_matrix(v_b))


def adjoint(t_mat: jnp.ndarray) -> jnp.ndarray:
    """6x6 adjoint for tangent order [rho, phi]: T exp(x) T^-1 = exp(Ad x)."""
    r, t = t_mat[:3, :3], t_mat[:3, 3]
    zero = jnp.zeros((3, 3), dtype=r.dtype)
    top = jnp.concatenate([r, so3.hat(t) @ r], axis=1)
    bottom = jnp.concatenate([zero, r], axis=1)
    return jnp.concatenate([top, bottom], axis=0)


def between_error(t_i: jnp.ndarray, t_j: jnp.ndarray, t_ij_meas: jnp.ndarray) -> jnp.ndarray:
    """Relative-pose error ``log(Z^-1 T_i^-1 T_j)`` in [rho, phi] (zero when exact).

    This is GTSAM's ``BetweenFactor<Pose3>`` error with its tangent blocks swapped
    to our translation-first order.
    """
    return log(inverse(t_ij_meas) @ inverse(t_i) @ t_j)
