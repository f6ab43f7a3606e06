"""Robust kernels, selected per factor as data (an int code and a scale).

A factor with whitened residual ``r`` (``s = |r|^2``) contributes ``0.5 * rho(s)`` to
the cost, where for scale ``k``:
  none:   rho = s
  huber:  rho = s (s <= k^2), 2 k sqrt(s) - k^2 otherwise
  cauchy: rho = k^2 log(1 + s / k^2)
These match GTSAM's ``mEstimator`` losses (which are written in ``sqrt(s)``).
Because the kernel is data, switching a factor's kernel never recompiles.
"""

from __future__ import annotations

import jax.numpy as jnp

KERNELS = {"none": 0, "huber": 1, "cauchy": 2}


def kernel_code(name: str) -> int:
    """Integer code of a kernel name (raises ValueError for unknown names)."""
    try:
        return KERNELS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown robust kernel {name!r}; known: {sorted(KERNELS)}") from None


def rho(s: jnp.ndarray, kind: jnp.ndarray, k: jnp.ndarray) -> jnp.ndarray:
    """Robust cost ``rho(s)`` of squared norms ``s`` (elementwise)."""
    k2 = k * k
    sqrt_s = jnp.sqrt(jnp.where(s > 0.0, s, 1.0))
    huber = jnp.where(s <= k2, s, 2.0 * k * sqrt_s - k2)
    cauchy = k2 * jnp.log1p(s / k2)
    return jnp.select([kind == 1, kind == 2], [huber, cauchy], s)


def weight(s: jnp.ndarray, kind: jnp.ndarray, k: jnp.ndarray) -> jnp.ndarray:
    """IRLS weight ``rho'(s)`` (1 for no kernel; in (0, 1] for Huber and Cauchy)."""
    k2 = k * k
    sqrt_s = jnp.sqrt(jnp.where(s > 0.0, s, 1.0))
    huber = jnp.where(s <= k2, 1.0, k / sqrt_s)
    cauchy = 1.0 / (1.0 + s / k2)
    return jnp.select([kind == 1, kind == 2], [huber, cauchy], jnp.ones_like(s))


def residual_scale(s: jnp.ndarray, kind: jnp.ndarray, k: jnp.ndarray) -> jnp.ndarray:
    """``sqrt(rho(s) / s)``: scaling a residual by it makes ``0.5|r|^2 = 0.5 rho(s)``."""
    small = s < 1e-20
    safe_s = jnp.where(small, 1.0, s)
    return jnp.where(small, 1.0, jnp.sqrt(rho(safe_s, kind, k) / safe_s))
