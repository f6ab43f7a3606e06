"""Learning factor parameters through the solver (pure JAX)."""

from dsg_jit_ros.learning.param_residual import build_param_residual, inject_params, theta_from_model

__all__ = ["build_param_residual", "inject_params", "theta_from_model"]
