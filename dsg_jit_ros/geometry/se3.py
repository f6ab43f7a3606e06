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
    return matrix_to_vec(so3.small_matmul(vec_to_matrix(v), exp(delta)))


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


def between_matrix(t_i: jnp.ndarray, t_j: jnp.ndarray, t_ij_meas: jnp.ndarray) -> jnp.ndarray:
    """``Z^-1 T_i^-1 T_j`` from rotation and translation blocks (``so3.small_matmul``)."""
    mul = so3.small_matmul
    r_it, r_zt = t_i[:3, :3].T, t_ij_meas[:3, :3].T
    r = mul(r_zt, mul(r_it, t_j[:3, :3]))
    t = mul(r_zt, mul(r_it, t_j[:3, 3] - t_i[:3, 3]) - t_ij_meas[:3, 3])
    return from_rt(r, t)


def between_error(t_i: jnp.ndarray, t_j: jnp.ndarray, t_ij_meas: jnp.ndarray) -> jnp.ndarray:
    """Relative-pose error ``log(Z^-1 T_i^-1 T_j)`` in [rho, phi] (zero when exact).

    This is GTSAM's ``BetweenFactor<Pose3>`` error with its tangent blocks swapped
    to our translation-first order.
    """
    return log(between_matrix(t_i, t_j, t_ij_meas))


def _outer(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    return a[:, None] * b[None, :]


def inverse_jacobians(xi: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(J_l^-1(xi), J_r^-1(xi))``, SE(3)'s inverse left and right Jacobians at
    ``xi = [rho, phi]``: ``log(exp(d) exp(xi)) ~ xi + J_l^-1 d`` and
    ``log(exp(xi) exp(d)) ~ xi + J_r^-1 d`` for small ``d``.

    ``J_l = [[J, Q], [0, J]]`` with SO(3)'s left Jacobian ``J`` and Barfoot's
    ``Q(rho, phi) = rho^/2 + c1 (P R + R P + P R P) + c2 (P P R + R P P - 3 P R P)
    + c3 (P R P P + P P R P)`` (``P = phi^``, ``R = rho^``, ``t = |phi|``,
    ``c1 = (t - sin t) / t^3``, ``c2 = (t^2 + 2 cos t - 2) / (2 t^4)``,
    ``c3 = (2 t - 3 sin t + t cos t) / (2 t^5)``, Taylor series for small ``t``), so
    ``J_l^-1 = [[J^-1, -J^-1 Q J^-1], [0, J^-1]]``; ``J_r(xi) = J_l(-xi)``.  With
    ``a^ b^ = b a^T - (a.b) I`` the products are outer products of ``phi``, ``rho``
    and ``w = phi x rho`` (``s = phi.rho``): ``P R + R P = rho phi^T + phi rho^T - 2 s I``,
    ``P R P = -s P``, ``P P R + R P P = w phi^T - phi w^T - 2 s P``,
    ``P R P P + P P R P = -2 s P P``.  Flipping the sign of ``xi`` flips the terms of
    odd degree, so both inverses share them.  Elementwise code, fast under ``vmap``.
    """
    rho, phi = xi[:3], xi[3:]
    q = jnp.dot(phi, phi)
    s = jnp.dot(phi, rho)
    w = jnp.cross(phi, rho)
    _, _, c1 = so3._angle_terms(q)
    small = q < so3._SMALL_SQ
    safe_sq = jnp.where(small, 1.0, q)
    t = jnp.sqrt(safe_sq)
    sin, cos = jnp.sin(t), jnp.cos(t)
    c2 = jnp.where(small, 1.0 / 24.0 - q / 720.0 + q * q / 40320.0 - q * q * q / 3628800.0,
                   (safe_sq + 2.0 * cos - 2.0) / (2.0 * safe_sq * safe_sq))
    c3 = jnp.where(small, 1.0 / 120.0 - q / 2520.0 + q * q / 120960.0 - q * q * q / 9979200.0,
                   (2.0 * t - 3.0 * sin + t * cos) / (2.0 * safe_sq * safe_sq * t))
    eye = jnp.eye(3, dtype=xi.dtype)
    p_hat, r_hat = so3.hat(phi), so3.hat(rho)
    p_sq = _outer(phi, phi) - q * eye  # P P
    odd = 0.5 * r_hat - c1 * s * p_hat + c2 * (_outer(w, phi) - _outer(phi, w) + s * p_hat)
    even = c1 * (_outer(rho, phi) + _outer(phi, rho) - 2.0 * s * eye) - 2.0 * c3 * s * p_sq
    d = so3.inverse_jacobian_coefficient(q)
    zero = jnp.zeros((3, 3), dtype=xi.dtype)

    def inverse(j_inv, q_mat):
        top = jnp.concatenate([j_inv, -so3.small_matmul(so3.small_matmul(j_inv, q_mat), j_inv)], axis=1)
        return jnp.concatenate([top, jnp.concatenate([zero, j_inv], axis=1)], axis=0)

    return (inverse(eye - 0.5 * p_hat + d * p_sq, odd + even),
            inverse(eye + 0.5 * p_hat + d * p_sq, even - odd))
