"""Variable types: name, value dimension and manifold of each kind of variable.

A variable's *value* is a flat vector of ``dim`` numbers; its *tangent* has the
same dimension for every type shipped here (poses are stored as 6-vectors, see
``dsg_jit_ros.geometry.se3``).  ``manifold`` names the retraction the solvers use:
``"euclidean"`` (x + delta) or ``"se3"`` (right perturbation).
"""

from __future__ import annotations

from dataclasses import dataclass

MANIFOLDS = ("euclidean", "se3")


@dataclass(frozen=True)
class VariableType:
    """A kind of variable: ``name``, value ``dim`` and ``manifold`` name."""

    name: str
    dim: int
    manifold: str = "euclidean"

    def __post_init__(self) -> None:
        if self.dim <= 0:
            raise ValueError(f"variable type {self.name!r}: dim must be positive, got {self.dim}")
        if self.manifold not in MANIFOLDS:
            raise ValueError(
                f"variable type {self.name!r}: manifold must be one of {MANIFOLDS}, got {self.manifold!r}"
            )
        if self.manifold == "se3" and self.dim != 6:
            raise ValueError(f"variable type {self.name!r}: se3 variables have dim 6, got {self.dim}")


BUILTIN_TYPES: dict[str, VariableType] = {
    t.name: t
    for t in (
        VariableType("pose_se3", 6, "se3"),
        VariableType("voxel_cell3d", 3),
        VariableType("point3d", 3),
    )
}
