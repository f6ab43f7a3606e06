"""What a residual function offers beyond its value: one frozen ``FactorType`` record.

A residual ``fn(x_stacked, params[, ctx]) -> e`` may come with

- ``lifted_residual(args, params) -> e``: the same on *lifted* arguments (poses as
  4x4 matrices, computed once per variable rather than once per factor);
- ``tangent_jacobians(args, params) -> (e, [J_a])``: closed-form Jacobians on lifted
  arguments with respect to each argument's tangent step (right perturbation for
  poses), used by the linearisation instead of forward-mode autodiff;
- ``schur_structure``: the algebraic form the point Schur solver's moment path may
  rely on (``optimization.point_schur``), one of ``SCHUR_STRUCTURES``.

The built-in residuals declare theirs once (``describe`` in ``slam.measurements``);
``factor_type_of(fn)`` gives the declared record, or a plain one (autodiff, no
structure) for any other function, such as the seeds' own.  ``ResidualSpec``
(``world.graph``) reads its capabilities from here, so nothing asks a function
for attributes.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable

ResidualFn = Callable[..., object]

POINT_IN_BODY = "point_in_body"  # e = R^T (v - t) - p: a point seen in a pose's frame
POINT_IN_MAP = "point_in_map"  # e = v - R p - t: the same in the map frame
PRIOR = "prior"  # e = x - target on a Euclidean variable: Jacobian I
SCHUR_STRUCTURES = (POINT_IN_BODY, POINT_IN_MAP, PRIOR)


@dataclass(frozen=True)
class FactorType:
    """A residual function and what it offers (see the module doc).  Compares by its
    functions' identities, so equal records give equal compiled programs."""

    residual: ResidualFn
    lifted_residual: Callable | None = None
    tangent_jacobians: Callable | None = None
    schur_structure: str | None = None
    takes_context: bool = field(init=False, compare=False)  # fn(x, params, ctx) rather than fn(x, params)

    def __post_init__(self) -> None:
        if self.schur_structure is not None and self.schur_structure not in SCHUR_STRUCTURES:
            raise ValueError(f"schur_structure must be one of {SCHUR_STRUCTURES}, got {self.schur_structure!r}")
        object.__setattr__(self, "takes_context", len(inspect.signature(self.residual).parameters) >= 3)

    @property
    def name(self) -> str:
        return getattr(self.residual, "__name__", repr(self.residual))


_DESCRIBED: dict[ResidualFn, FactorType] = {}


def describe(fn: ResidualFn, **capabilities) -> FactorType:
    """Declare what ``fn`` offers (``FactorType`` fields); returns its record.  Once per
    function, at import of the module that defines it."""
    if fn in _DESCRIBED:
        raise ValueError(f"residual {getattr(fn, '__name__', fn)!r} is already described")
    record = _DESCRIBED[fn] = FactorType(fn, **capabilities)
    return record


def factor_type_of(fn: ResidualFn) -> FactorType:
    """The declared record of ``fn``, or a plain one (autodiff, no structure)."""
    record = _DESCRIBED.get(fn)
    return record if record is not None else FactorType(fn)
