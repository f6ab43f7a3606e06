"""Turning a factor's reserved parameter keys into a whitening matrix and kernel.

Reserved keys (at most one of the first five):
  ``weight``      scalar or (d,): scales the residual, W = weight * I (or diag)
  ``sigma``       scalar or (d,): standard deviations, W = diag(1 / sigma)
  ``information`` (d, d) SPD: W = chol(information).T, so |W e|^2 = e' Omega e
  ``sqrt_info``   (d, d): W as given
  (none)          W = I
  ``robust``      None, "huber", ("huber", k) or {"kernel": "huber", "scale": k}
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dsg_jit_ros.world import robust as robust_kernels

WEIGHT_KEYS = ("weight", "sigma", "information", "sqrt_info")
RESERVED_KEYS = WEIGHT_KEYS + ("robust",)
DEFAULT_SCALES = {"none": 1.0, "huber": 1.345, "cauchy": 2.3849}


def whitening_matrices(params: dict[str, Any], d: int, m: int) -> np.ndarray:
    """(m, d, d) square-root informations of m factors from their reserved keys.

    Each key holds either one value shared by all m factors or m stacked values.
    """
    given = [k for k in WEIGHT_KEYS if k in params]
    if len(given) > 1:
        raise ValueError(f"give at most one of {WEIGHT_KEYS}, got {given}")
    if not given:
        return np.broadcast_to(np.eye(d), (m, d, d)).copy()
    key = given[0]
    val = np.asarray(params[key], dtype=np.float64)
    if not np.all(np.isfinite(val)):
        raise ValueError(f"{key} must be finite, got {val}")
    if key in ("weight", "sigma"):
        val = _per_factor(val, key, m, (d,), scalar_ok=True)
        if key == "sigma":
            if np.any(val <= 0):
                raise ValueError(f"sigma must be positive, got {val}")
            val = 1.0 / val
        if np.any(val < 0):
            raise ValueError(f"weight must be non-negative, got {val}")
        return val[:, :, None] * np.eye(d)
    val = _per_factor(val, key, m, (d, d), scalar_ok=False)
    if key == "sqrt_info":
        return val
    sym = 0.5 * (val + np.swapaxes(val, 1, 2))
    try:
        return np.swapaxes(np.linalg.cholesky(sym), 1, 2)
    except np.linalg.LinAlgError:
        pass
    # Name the first failing factor (eigenvalues only computed on this error path).
    bad = next(k for k in range(m) if not _cholesky_ok(sym[k]))
    eig = np.linalg.eigvalsh(sym[bad])
    raise ValueError(
        f"information matrix is not symmetric positive definite: factor {bad} of {m} in this call "
        f"(eigenvalues {eig[0]:.6g} .. {eig[-1]:.6g})"
    )


def _cholesky_ok(matrix: np.ndarray) -> bool:
    try:
        np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        return False
    return True


def _per_factor(val: np.ndarray, key: str, m: int, shape: tuple, scalar_ok: bool) -> np.ndarray:
    """Broadcast a shared or stacked value to (m,) + shape, or raise."""
    if scalar_ok and val.ndim == 0:
        return np.full((m,) + shape, float(val))
    if val.shape == shape:  # shared (checked first: (d,) is per-dimension when m == d)
        return np.broadcast_to(val, (m,) + shape).copy()
    if scalar_ok and val.shape == (m,):
        return np.repeat(val[:, None], shape[0], axis=1)
    if val.shape == (m,) + shape:
        return val
    raise ValueError(f"{key} must be a scalar, shape {shape} or ({m},) + {shape}; got shape {val.shape}")


def whitening_matrix(params: dict[str, Any], d: int) -> np.ndarray:
    """(d, d) square-root information of one factor (see ``whitening_matrices``)."""
    return whitening_matrices(params, d, 1)[0]


def kernel(params: dict[str, Any]) -> tuple[int, float]:
    """(kernel code, scale) from the ``robust`` key (no kernel when absent)."""
    spec = params.get("robust")
    if spec is None:
        return 0, 1.0
    if isinstance(spec, str):
        name, scale = spec, None
    elif isinstance(spec, dict):
        name, scale = spec.get("kernel", "none"), spec.get("scale")
    else:
        name, scale = spec
    code = robust_kernels.kernel_code(name)
    scale = DEFAULT_SCALES[name.lower()] if scale is None else float(scale)
    if not (scale > 0 and np.isfinite(scale)):
        raise ValueError(f"robust kernel scale must be positive and finite, got {scale}")
    return code, scale
