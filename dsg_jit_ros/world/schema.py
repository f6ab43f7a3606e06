"""What a ``WorldModel`` may hold: its variable types, residual functions and
capacities, and the static signature of each factor batch.

``Schema`` is frozen: registering a type or a residual returns a new schema (the
model keeps the newest), so a schema handed to something else never changes under
it.  ``BatchSignature`` is the static part of one factor batch (residual, argument
types, parameter shapes, residual length, isotropy): what the compiled code
depends on, as opposed to the rows of data in ``world.slots.FactorRows``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping

import jax
import jax.numpy as jnp

from dsg_jit_ros.world.graph import ResidualSpec
from dsg_jit_ros.world.variables import BUILTIN_TYPES, VariableType


def _frozen(mapping: Mapping | None) -> Mapping:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class BatchSignature:
    """The static part of a factor batch.  ``key`` (f_type, argument type names,
    sorted (parameter, shape) pairs) names the batch in its model; ``isotropic`` is a
    promise about its weights (scalar times I), not part of the key."""

    spec: ResidualSpec
    arg_types: tuple[VariableType, ...]
    param_shapes: tuple[tuple[str, tuple[int, ...]], ...]  # sorted by name
    residual_dim: int
    isotropic: bool = False

    @property
    def key(self) -> tuple:
        return (self.spec.f_type, tuple(t.name for t in self.arg_types), self.param_shapes)


@dataclass(frozen=True, eq=False)
class Schema:
    """Variable types and residuals by name, capacities by variable type and by factor
    type (slots per argument signature; unlisted types start with the room they need
    and grow, which recompiles)."""

    types: Mapping[str, VariableType] = field(default_factory=lambda: _frozen(BUILTIN_TYPES))
    residuals: Mapping[str, ResidualSpec] = field(default_factory=lambda: _frozen(None))
    var_capacity: Mapping[str, int] = field(default_factory=lambda: _frozen(None))
    factor_capacity: Mapping[str, int] = field(default_factory=lambda: _frozen(None))

    @classmethod
    def create(cls, var_capacity: Mapping[str, int] | None = None,
               factor_capacity: Mapping[str, int] | None = None) -> "Schema":
        """The built-in variable types, no residual, the given capacities."""
        return cls(var_capacity=_frozen(var_capacity), factor_capacity=_frozen(factor_capacity))

    def with_variable_type(self, vt: VariableType) -> "Schema":
        """This schema with ``vt`` (ValueError if its name is taken by another definition)."""
        known = self.types.get(vt.name)
        if known is not None and known != vt:
            raise ValueError(f"variable type {vt.name!r} already registered as {known}")
        return Schema(_frozen({**self.types, vt.name: vt}), self.residuals, self.var_capacity, self.factor_capacity)

    def with_residual(self, f_type: str, fn: Callable[..., jnp.ndarray]) -> "Schema":
        """This schema with ``fn`` as the residual of ``f_type`` (replacing any before)."""
        residuals = {**self.residuals, f_type: ResidualSpec(f_type, fn)}
        return Schema(self.types, _frozen(residuals), self.var_capacity, self.factor_capacity)

    def variable_type(self, name: str) -> VariableType:
        """The type called ``name``; KeyError listing the known ones."""
        vt = self.types.get(name)
        if vt is None:
            raise KeyError(f"unknown variable type {name!r}; known: {sorted(self.types)}")
        return vt

    def residual(self, f_type: str) -> ResidualSpec:
        """The residual registered for ``f_type``; KeyError when there is none."""
        spec = self.residuals.get(f_type)
        if spec is None:
            raise KeyError(f"no residual registered for factor type {f_type!r}")
        return spec

    def signature(self, spec: ResidualSpec, arg_types, shapes: Mapping[str, tuple],
                  isotropic: bool = False) -> BatchSignature:
        """The batch signature of ``spec`` on ``arg_types`` with parameters of ``shapes``
        (its residual length from one trace, cached)."""
        arg_types = tuple(arg_types)
        shapes = tuple(sorted((k, tuple(v)) for k, v in shapes.items()))
        return BatchSignature(spec, arg_types, shapes, residual_dim(spec, arg_types, shapes), bool(isotropic))


@functools.lru_cache(maxsize=None)
def residual_dim(spec: ResidualSpec, arg_types: tuple, shapes: tuple) -> int:
    """Residual length of ``spec`` on ``arg_types`` with parameters of ``shapes`` ((name,
    shape) pairs), from one trace (``jax.eval_shape``).  Cached: it depends on nothing
    else, and a node builds its window's and graph's models several times at start-up
    (warm-up, reset; ~0.1 s of tracing each)."""
    x = jax.ShapeDtypeStruct((sum(t.dim for t in arg_types),), jnp.float64)
    p = {k: jax.ShapeDtypeStruct(shape, jnp.float64) for k, shape in shapes}
    try:
        out = jax.eval_shape(lambda xx, pp: spec(xx, pp, arg_types), x, p)
    except Exception as exc:  # residual functions raise anything on bad shapes
        names = [t.name for t in arg_types]
        raise ValueError(f"factor {spec.f_type!r} on {names}: residual failed: {exc}") from exc
    if len(out.shape) != 1:
        raise ValueError(f"factor {spec.f_type!r}: residual must be a vector, got shape {out.shape}")
    return int(out.shape[0])
