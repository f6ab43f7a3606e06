"""Shared test set-up: float64 JAX via the package import, repo paths."""

from pathlib import Path

import dsg_jit_ros  # noqa: F401  (enables float64)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
POSEGRAPH = SHARED / "data" / "posegraph"
