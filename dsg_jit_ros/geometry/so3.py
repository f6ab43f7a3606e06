"""SO(3) on JAX: rotation vectors <-> matrices, with derivatives finite everywhere.

Rotation vectors ``w`` (radians, axis * angle) map to rotation matrices ``R``.
``exp`` and ``log`` switch to Taylor series for small angles (and feed the exact
branch a safe argument), so forward values *and* autodiff derivatives stay finite
at the identity.  ``log`` takes the angle from ``atan2`` (no ``arccos`` of a
trace) and the axis near pi from the symmetric part, accurate up to pi itself.
All functions act on one element; ``jax.vmap`` them for batches.

``small_matmul`` is ``a @ b`` written as a broadcast product and a sum: under
``vmap`` XLA:CPU runs a batch of tiny ``dot``s as a loop of small matrix products,
several times slower than the fused elementwise code this gives (hot paths of the
pose-graph linearisation use it).
"""

from __future__ import annotations

import jax.numpy as jnp

# Below this squared angle (rad^2) the series are used; truncation error < 1e-12.
_SMALL_SQ = 1e-2


def small_matmul(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """``a @ b`` for one element's small matrix ``a`` and matrix or vector ``b``, as a
    broadcast product summed over the inner dimension (see the module doc)."""
    if b.ndim == 1:
        return jnp.sum(a * b[None, :], axis=1)
    return jnp.sum(a[:, :, None] * b[None, :, :], axis=1)


def hat(w: jnp.ndarray) -> jnp.ndarray:
    """Skew-symmetric matrix [w]x with [w]x v = w x v."""
    x, y, z = w[0], w[1], w[2]
    zero = jnp.zeros_like(x)
    return jnp.stack(
        [jnp.stack([zero, -z, y]), jnp.stack([z, zero, -x]), jnp.stack([-y, x, zero])]
    )


def _angle_terms(theta_sq: jnp.ndarray):
    """Return (sin t / t, (1 - cos t) / t^2, (t - sin t) / t^3) for t^2 = theta_sq."""
    small = theta_sq < _SMALL_SQ
    safe_sq = jnp.where(small, 1.0, theta_sq)
    t = jnp.sqrt(safe_sq)
    s, c = jnp.sin(t), jnp.cos(t)
    a_exact = s / t
    b_exact = (1.0 - c) / safe_sq
    c_exact = (t - s) / (safe_sq * t)
    q = theta_sq
    a_series = 1.0 - q / 6.0 + q * q / 120.0 - q * q * q / 5040.0
    b_series = 0.5 - q / 24.0 + q * q / 720.0 - q * q * q / 40320.0
    c_series = 1.0 / 6.0 - q / 120.0 + q * q / 5040.0 - q * q * q / 362880.0
    return (
        jnp.where(small, a_series, a_exact),
        jnp.where(small, b_series, b_exact),
        jnp.where(small, c_series, c_exact),
    )


def exp(w: jnp.ndarray) -> jnp.ndarray:
    """Rotation matrix of rotation vector ``w`` (Rodrigues)."""
    a, b, _ = _angle_terms(jnp.dot(w, w))
    k = hat(w)
    return jnp.eye(3, dtype=w.dtype) + a * k + b * (k @ k)


def left_jacobian(w: jnp.ndarray) -> jnp.ndarray:
    """Left Jacobian J_l(w) = I + b [w]x + c [w]x^2; also V(w) of the SE(3) exp."""
    _, b, c = _angle_terms(jnp.dot(w, w))
    k = hat(w)
    return jnp.eye(3, dtype=w.dtype) + b * k + c * (k @ k)


def right_jacobian(w: jnp.ndarray) -> jnp.ndarray:
    """Right Jacobian: exp(w + d) ~= exp(w) exp(J_r(w) d) for small d."""
    return left_jacobian(-w)


def inverse_jacobian_coefficient(theta_sq: jnp.ndarray) -> jnp.ndarray:
    """``d = (1 - t sin t / (2 (1 - cos t))) / t^2`` of ``left_jacobian_inverse`` for t^2 = theta_sq."""
    small = theta_sq < _SMALL_SQ
    safe_sq = jnp.where(small, 1.0, theta_sq)
    t = jnp.sqrt(safe_sq)
    d_exact = (1.0 - t * jnp.sin(t) / (2.0 * (1.0 - jnp.cos(t)))) / safe_sq
    q = theta_sq
    d_series = 1.0 / 12.0 + q / 720.0 + q * q / 30240.0 + q * q * q / 1209600.0
    return jnp.where(small, d_series, d_exact)


def left_jacobian_inverse(w: jnp.ndarray) -> jnp.ndarray:
    """Inverse of ``left_jacobian``: I - 1/2 [w]x + d [w]x^2, valid for |w| < 2 pi."""
    d = inverse_jacobian_coefficient(jnp.dot(w, w))
    k = hat(w)
    return jnp.eye(3, dtype=w.dtype) - 0.5 * k + d * (k @ k)


def to_quaternion(r: jnp.ndarray) -> jnp.ndarray:
    """Unit quaternion (w, x, y, z), w >= 0, of rotation matrix ``r``.

    Evaluates the four classic branches on safe arguments and keeps the one with
    the largest pivot, so it is accurate for every rotation, including pi.
    """
    r00, r01, r02 = r[0, 0], r[0, 1], r[0, 2]
    r10, r11, r12 = r[1, 0], r[1, 1], r[1, 2]
    r20, r21, r22 = r[2, 0], r[2, 1], r[2, 2]
    pivots = jnp.stack(
        [1.0 + r00 + r11 + r22, 1.0 + r00 - r11 - r22, 1.0 - r00 + r11 - r22, 1.0 - r00 - r11 + r22]
    )
    s = 2.0 * jnp.sqrt(jnp.maximum(pivots, 1e-12))
    cands = jnp.stack(
        [
            jnp.stack([0.25 * s[0], (r21 - r12) / s[0], (r02 - r20) / s[0], (r10 - r01) / s[0]]),
            jnp.stack([(r21 - r12) / s[1], 0.25 * s[1], (r01 + r10) / s[1], (r02 + r20) / s[1]]),
            jnp.stack([(r02 - r20) / s[2], (r01 + r10) / s[2], 0.25 * s[2], (r12 + r21) / s[2]]),
            jnp.stack([(r10 - r01) / s[3], (r02 + r20) / s[3], (r12 + r21) / s[3], 0.25 * s[3]]),
        ]
    )
    q = cands[jnp.argmax(pivots)]
    q = q / jnp.linalg.norm(q)
    return jnp.where(q[0] < 0.0, -q, q)


def log(r: jnp.ndarray) -> jnp.ndarray:
    """Rotation vector (radians, angle in [0, pi]) of rotation matrix ``r``.

    The angle is ``atan2(|v|, c)`` with ``v = vee(R - R^T) / 2 = sin(t) axis`` and
    ``c = (tr R - 1) / 2``, accurate at every angle.  Away from pi the axis is
    ``v / sin(t)`` (series for small angles); near pi, where ``v`` vanishes, it
    is read from the symmetric part ``(R + R^T) / 2 - c I = (1 - c) a a^T`` and
    signed by ``v``.  Both branches get safe arguments, so derivatives stay finite.
    """
    v = 0.5 * jnp.stack([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    c = jnp.clip(0.5 * (jnp.trace(r) - 1.0), -1.0, 1.0)
    s_sq = jnp.dot(v, v)
    near_pi = c < -0.5
    # regular branch: w = t / sin(t) * v
    small = s_sq < 1e-10
    s = jnp.sqrt(jnp.where(small, 1.0, s_sq))
    theta = jnp.arctan2(s, c)
    ratio = jnp.where(small, 1.0 + s_sq / 6.0 + 3.0 * s_sq * s_sq / 40.0, theta / s)
    regular = ratio * v
    # near-pi branch: axis from the largest column of the symmetric part
    tiny = jnp.finfo(r.dtype).tiny
    sym = 0.5 * (r + r.T) - c * jnp.eye(3, dtype=r.dtype)
    k = jnp.argmax(jnp.diagonal(sym))
    col = sym[:, k]
    one_minus_c = jnp.where(near_pi, 1.0 - c, 1.0)
    axis = col / jnp.sqrt(jnp.maximum(jnp.where(near_pi, sym[k, k], 1.0) * one_minus_c, tiny))
    axis = jnp.where(jnp.dot(axis, v) < 0.0, -axis, axis)
    theta_pi = jnp.arctan2(jnp.sqrt(jnp.where(near_pi, s_sq, 0.0) + tiny), jnp.where(near_pi, c, -1.0))
    return jnp.where(near_pi, theta_pi * axis, regular)


def from_quaternion(q: jnp.ndarray) -> jnp.ndarray:
    """Rotation matrix of quaternion (w, x, y, z); normalises ``q`` first."""
    q = q / jnp.linalg.norm(q)
    w, x, y, z = q[0], q[1], q[2], q[3]
    return jnp.stack(
        [
            jnp.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)]),
            jnp.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)]),
            jnp.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]),
        ]
    )
