"""The factor graph as fixed-shape arrays: what every jitted function receives.

``FactorGraph`` is a JAX pytree.  Its *static* part (variable types and their
capacities, factor types, residual functions, residual dimensions) decides the
compiled code; everything that changes as a graph is edited (which slots are
used, variable indices, measurements, weights, kernels) is *data*.  So editing a
graph within its capacities never recompiles and never reuses stale parameters.

Weight convention (one for all factors): a factor's residual ``e`` is whitened as
``r = W e`` with ``W`` its (d, d) square-root information (``weight * I`` for a
scalar ``weight``, ``chol(information).T`` for an information matrix), and the
factor adds ``0.5 * rho(|r|^2)`` to the cost (``rho(s) = s`` without a kernel).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import jax
import jax.numpy as jnp

from dsg_jit_ros.geometry import se3
from dsg_jit_ros.world import robust
from dsg_jit_ros.world.factor_type import FactorType, factor_type_of
from dsg_jit_ros.world.variables import VariableType

ResidualFn = Callable[..., jnp.ndarray]


@dataclass(frozen=True)
class FactorContext:
    """What a residual function may ask about its factor: the argument types."""

    arg_types: tuple[VariableType, ...]


@dataclass(frozen=True)
class ResidualSpec:
    """A registered residual function ``fn(x_stacked, params[, ctx]) -> e`` under its
    factor type name, with what it offers (``kind``: its ``world.factor_type``
    record, looked up once).

    ``x_stacked`` is the concatenation of the factor's variable values, ``params``
    a dict of this factor's parameter arrays (without the reserved weight keys).
    Specs compare by (f_type, fn), so graphs of two WorldModels that register the
    same functions share compiled solvers.
    """

    f_type: str
    fn: ResidualFn
    kind: FactorType = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", factor_type_of(self.fn))

    @property
    def tangent_jacobians(self):
        """Closed-form ``(e, [J_a])`` on lifted arguments if the function has one."""
        return self.kind.tangent_jacobians

    @property
    def lifted_residual(self):
        """The residual on lifted arguments (poses as 4x4) if the function has one."""
        return self.kind.lifted_residual

    @property
    def schur_structure(self) -> str | None:
        """The form the point Schur solver may rely on (``world.factor_type``), if any."""
        return self.kind.schur_structure

    @property
    def takes_context(self) -> bool:
        return self.kind.takes_context

    def __call__(self, x_stacked, params, arg_types):
        if self.takes_context:
            return self.fn(x_stacked, params, FactorContext(arg_types))
        return self.fn(x_stacked, params)


@dataclass(frozen=True)
class StateLayout:
    """Where each variable type lives in the flat state: (type, capacity, offset)."""

    types: tuple[VariableType, ...]
    capacities: tuple[int, ...]

    @property
    def offsets(self) -> tuple[int, ...]:
        out, acc = [], 0
        for t, c in zip(self.types, self.capacities):
            out.append(acc)
            acc += t.dim * c
        return tuple(out)

    @property
    def size(self) -> int:
        return sum(t.dim * c for t, c in zip(self.types, self.capacities))

    def position(self, type_name: str) -> int:
        for i, t in enumerate(self.types):
            if t.name == type_name:
                return i
        raise KeyError(type_name)

    def split(self, x: jnp.ndarray) -> tuple[jnp.ndarray, ...]:
        """Flat state -> one (capacity, dim) array per variable type."""
        return tuple(
            x[o : o + t.dim * c].reshape(c, t.dim)
            for t, c, o in zip(self.types, self.capacities, self.offsets)
        )

    def join(self, blocks) -> jnp.ndarray:
        """Inverse of ``split``."""
        if not blocks:
            return jnp.zeros((0,))
        return jnp.concatenate([b.reshape(-1) for b in blocks])


@dataclass(frozen=True)
class FactorBatch:
    """All factors of one type and argument signature, padded to a capacity."""

    slots: jnp.ndarray  # (cap, k) int32: slot of each argument in its type's block
    params: dict[str, jnp.ndarray]  # name -> (cap, ...)
    sqrt_info: jnp.ndarray  # (cap, d, d)
    robust_kind: jnp.ndarray  # (cap,) int32, see world.robust
    robust_scale: jnp.ndarray  # (cap,)
    rank: jnp.ndarray  # (cap,) int32: index among factors of this f_type, -1 if unused
    mask: jnp.ndarray  # (cap,) bool
    spec: ResidualSpec  # static
    arg_types: tuple[VariableType, ...]  # static
    arg_positions: tuple[int, ...]  # static: layout position of each argument type
    residual_dim: int  # static
    isotropic: bool = False  # static: every sqrt_info is a scalar times I (checked on insertion)

    @property
    def f_type(self) -> str:
        return self.spec.f_type

    @property
    def capacity(self) -> int:
        return self.mask.shape[0]


jax.tree_util.register_dataclass(
    FactorBatch,
    data_fields=["slots", "params", "sqrt_info", "robust_kind", "robust_scale", "rank", "mask"],
    meta_fields=["spec", "arg_types", "arg_positions", "residual_dim", "isotropic"],
)


@dataclass(frozen=True)
class FactorGraph:
    """Variable slot masks + factor batches + the static state layout.

    ``dof_masks`` says which state entries may move: False on unused slots and on
    a used variable's fixed components (e.g. z, roll, pitch of a planar pose; see
    ``WorldModel.set_fixed_dofs``).  Linearisation zeroes the Jacobian columns of
    fixed entries, so every solver leaves them exactly where they are.
    """

    batches: tuple[FactorBatch, ...]
    var_masks: tuple[jnp.ndarray, ...]  # one (capacity,) bool per layout type
    dof_masks: tuple[jnp.ndarray, ...]  # one (capacity, dim) bool per layout type
    layout: StateLayout  # static

    @property
    def state_size(self) -> int:
        return self.layout.size


jax.tree_util.register_dataclass(
    FactorGraph, data_fields=["batches", "var_masks", "dof_masks"], meta_fields=["layout"]
)


def gather_args(batch: FactorBatch, blocks: tuple[jnp.ndarray, ...]) -> list[jnp.ndarray]:
    """Values of each argument of every factor: list of (cap, dim_a) arrays."""
    return [blocks[p][batch.slots[:, a]] for a, p in enumerate(batch.arg_positions)]


def lift_blocks(layout: StateLayout, blocks) -> tuple[jnp.ndarray, ...]:
    """Per-type blocks with poses lifted to (cap, 4, 4) matrices, once per variable,
    for residuals that take lifted arguments (``spec.lifted_residual``)."""
    return tuple(
        jax.vmap(se3.vec_to_matrix)(b) if t.manifold == "se3" else b for t, b in zip(layout.types, blocks)
    )


def batched_matmul(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """``a @ b`` per batch row, (c, m, k) by (c, k, n) or (c, k), unrolled over ``k``
    as a sum of broadcast products: XLA:CPU runs a batched ``dot`` of tiny matrices as
    a loop of small matrix products, two to three times slower than this fused loop."""
    def term(i):
        return a[:, :, i, None] * b[:, None, i] if b.ndim == 3 else a[:, :, i] * b[:, i, None]

    out = term(0)
    for i in range(1, a.shape[2]):
        out = out + term(i)
    return out


def whitened_errors(batch: FactorBatch, blocks, lifted=None) -> jnp.ndarray:
    """Whitened residuals ``W e`` of every slot, (cap, d); zero in unused slots.

    ``lifted`` (from ``lift_blocks``) is used by residuals that accept it.
    """
    fast = batch.spec.lifted_residual
    if fast is not None and lifted is not None:
        args = gather_args(batch, lifted)
        e = jax.vmap(fast)(args, batch.params)
        if batch.isotropic:  # sqrt_info = w I
            r = batch.sqrt_info[:, 0, 0, None] * e
        else:
            r = batched_matmul(batch.sqrt_info, e)
    else:
        args = gather_args(batch, blocks)

        def one(xs, p, w):
            return w @ batch.spec(jnp.concatenate(xs), p, batch.arg_types)

        r = jax.vmap(one)(args, batch.params, batch.sqrt_info)
    return jnp.where(batch.mask[:, None], r, 0.0)


def robust_residuals(batch: FactorBatch, r: jnp.ndarray) -> jnp.ndarray:
    """Scale whitened residuals so that ``0.5 |r|^2`` equals ``0.5 rho``."""
    s = jnp.sum(r * r, axis=-1)
    return r * robust.residual_scale(s, batch.robust_kind, batch.robust_scale)[:, None]


def graph_residual(graph: FactorGraph, x: jnp.ndarray) -> jnp.ndarray:
    """Flat robust whitened residual of the whole graph (unused slots give zeros)."""
    blocks = graph.layout.split(x)
    lifted = lift_blocks(graph.layout, blocks) if any(b.spec.lifted_residual for b in graph.batches) else None
    parts = []
    for b in graph.batches:
        r = whitened_errors(b, blocks, lifted)
        parts.append(robust_residuals(b, r).reshape(-1))
    if not parts:
        return jnp.zeros((0,), dtype=x.dtype)
    return jnp.concatenate(parts)


def graph_cost(graph: FactorGraph, x: jnp.ndarray) -> jnp.ndarray:
    """Total cost ``sum 0.5 rho(|W e|^2)`` (GTSAM's ``graph.error`` convention)."""
    r = graph_residual(graph, x)
    return 0.5 * jnp.dot(r, r)
