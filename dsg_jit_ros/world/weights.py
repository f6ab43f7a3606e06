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


def whitening_matrix(params: dict[str, Any], d: int) -> np.ndarray:
    """(d, d) square-root information from a factor's reserved keys."""
    given = [k for k in WEIGHT_KEYS if k in params]
    if len(given) > 1:
        raise ValueError(f"give at most one of {WEIGHT_KEYS}, got {given}")
    if not given:
        return np.eye(d)
    key = given[0]
    val = np.asarray(params[key], dtype=np.float64)
    if not np.all(np.isfinite(val)):
        raise ValueError(f"{key} must be finite, got {val}")
    if key in ("weight", "sigma"):
        if val.ndim == 0:
            val = np.full(d, float(val))
        if val.shape != (d,):
            raise ValueError(f"{key} must be a scalar or shape ({d},), got shape {val.shape}")
        if key == "sigma":
            if np.any(val <= 0):
                raise ValueError(f"sigma must be positive, got {val}")
            val = 1.0 / val
        if np.any(val < 0):
            raise ValueError(f"weight must be non-negative, got {val}")
        return np.diag(val)
    if val.shape != (d, d):
        raise ValueError(f"{key} must have shape ({d}, {d}), got {val.shape}")
    if key == "sqrt_info":
        return val
    sym = 0.5 * (val + val.T)
    try:
        return np.linalg.cholesky(sym).T
    except np.linalg.LinAlgError:
        raise ValueError("information matrix is not symmetric positive definite") from None


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
