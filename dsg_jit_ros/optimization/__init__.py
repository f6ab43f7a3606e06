"""Linearisation, linear solvers and nonlinear solvers (pure JAX)."""
