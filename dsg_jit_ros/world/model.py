"""WorldModel: the host-side, editable factor graph behind every solve.

It keeps variables and factors in preallocated numpy slots (per variable type and
per factor signature) and hands out a fixed-shape ``FactorGraph`` pytree
(``wm.fg``) and a flat float64 state (``wm.pack_state()``).  With capacities
given, adding or removing variables and factors changes only data, so jitted
solvers compiled for one graph serve every later edit within capacity.
Exceeding a capacity doubles it (logged), which does recompile.

A factor is a row of its batch (``_Group``: slots, parameters, weights, and its id
and variable ids); ``world.factor_index`` maps ids to (batch, row) for whole arrays
of ids, so the window's per-keyframe edits of thousands of factors are array
operations, not a Python loop per factor.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from dsg_jit_ros.world import weights
from dsg_jit_ros.world.factor_index import FactorIndex
from dsg_jit_ros.world.graph import (
    FactorBatch,
    FactorGraph,
    ResidualSpec,
    StateLayout,
    graph_residual,
)
from dsg_jit_ros.world.variables import BUILTIN_TYPES, VariableType

log = logging.getLogger(__name__)

_MIN_CAPACITY = 1


# Transfers to JAX: ``jnp.asarray`` / ``device_put`` of a NumPy array may read it
# asynchronously (measured on XLA:CPU: an edit right after the call shows up in
# the JAX array), so a solve still running while the model is edited would see
# torn inputs.  ``fg`` therefore transfers private copies of the arrays.


@dataclass
class _Var:
    type_name: str
    slot: int


@dataclass
class _Factor:
    group: tuple
    row: int
    var_ids: tuple[int, ...]


class _SlotPool:
    """Fixed-capacity rows with a free list: O(1) take and release.

    Subclasses hold the row arrays and pad them in ``_pad``.  Running out of rows
    doubles the capacity (a warning when the capacity was configured, since the
    new shapes recompile every jitted solver).
    """

    label = "slots"

    def __init__(self, name: str, capacity: int):
        self.name = name
        self.configured = capacity > 0
        self.used = np.zeros(0, dtype=bool)
        self._free: list[int] = []
        self._grow(capacity)

    @property
    def capacity(self) -> int:
        return self.used.shape[0]

    def _pad(self, pad: int) -> None:
        raise NotImplementedError

    def _grow(self, capacity: int) -> None:
        old = self.capacity
        if capacity <= old:
            return
        if self.configured and old:
            log.warning("%s %r: capacity %d exhausted, growing to %d (recompiles)", self.label, self.name, old, capacity)
        self._pad(capacity - old)
        self.used = np.concatenate([self.used, np.zeros(capacity - old, dtype=bool)])
        # the free list pops from its end: keep the lowest free rows there
        self._free = list(range(capacity - 1, old - 1, -1)) + self._free

    def take(self, n: int) -> np.ndarray:
        """Mark n free rows used; returns them."""
        if len(self._free) < n:
            self._grow(max(2 * self.capacity, _MIN_CAPACITY, self.capacity + n - len(self._free)))
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        rows = np.array(self._free[:-n - 1:-1], dtype=np.int64)
        del self._free[-n:]
        self.used[rows] = True
        return rows

    def release(self, row: int) -> None:
        self.used[row] = False
        self._free.append(int(row))

    def release_many(self, rows: np.ndarray) -> None:
        self.used[rows] = False
        self._free.extend(np.asarray(rows, dtype=np.int64).tolist())


class _TypeSlots(_SlotPool):
    """Value slots of one variable type (host numpy)."""

    label = "variable type"

    def __init__(self, vtype: VariableType, capacity: int):
        self.vtype = vtype
        self.values = np.zeros((0, vtype.dim))
        self.fixed = np.zeros((0, vtype.dim), dtype=bool)  # components held constant
        super().__init__(vtype.name, capacity)

    def _pad(self, pad: int) -> None:
        self.values = np.concatenate([self.values, np.zeros((pad, self.vtype.dim))])
        self.fixed = np.concatenate([self.fixed, np.zeros((pad, self.vtype.dim), dtype=bool)])

    def take(self, n: int) -> np.ndarray:
        rows = super().take(n)
        self.fixed[rows] = False  # a reused slot starts free
        return rows

    def dof_mask(self) -> np.ndarray:
        """(capacity, dim) bool: True where a used slot's component may move."""
        return self.used[:, None] & ~self.fixed


class _Group(_SlotPool):
    """Host arrays of one factor signature (f_type, argument types, param shapes), one
    row per factor: what the solvers see (slots, parameters, whitening, kernel, rank)
    and the bookkeeping (factor id, variable ids; -1 in free rows)."""

    label = "factor type"

    def __init__(self, spec: ResidualSpec, arg_types, param_shapes, residual_dim, capacity, isotropic=False):
        self.spec = spec
        self.number = -1  # position among its model's batches (set by WorldModel)
        self.isotropic = bool(isotropic)
        self.arg_types = tuple(arg_types)
        self.param_shapes = dict(param_shapes)
        self.residual_dim = residual_dim
        self.slots = np.zeros((0, len(arg_types)), dtype=np.int32)
        self.fids = np.zeros(0, dtype=np.int64)  # factor id of each used row
        self.vids = np.zeros((0, len(arg_types)), dtype=np.int64)  # variable ids of each used row
        self.params = {k: np.zeros((0,) + s) for k, s in self.param_shapes.items()}
        self.sqrt_info = np.zeros((0, residual_dim, residual_dim))
        self.kind = np.zeros(0, dtype=np.int32)
        self.scale = np.ones(0)
        self.rank = np.full(0, -1, dtype=np.int32)
        super().__init__(spec.f_type, capacity)

    def _pad(self, pad: int) -> None:
        k = len(self.arg_types)
        self.slots = np.concatenate([self.slots, np.zeros((pad, k), dtype=np.int32)])
        self.fids = np.concatenate([self.fids, np.full(pad, -1, dtype=np.int64)])
        self.vids = np.concatenate([self.vids, np.full((pad, k), -1, dtype=np.int64)])
        for name, shape in self.param_shapes.items():
            self.params[name] = np.concatenate([self.params[name], np.zeros((pad,) + shape)])
        d = self.residual_dim
        self.sqrt_info = np.concatenate([self.sqrt_info, np.zeros((pad, d, d))])
        self.kind = np.concatenate([self.kind, np.zeros(pad, dtype=np.int32)])
        self.scale = np.concatenate([self.scale, np.ones(pad)])
        self.rank = np.concatenate([self.rank, np.full(pad, -1, dtype=np.int32)])

    def to_batch(self, positions: tuple[int, ...]) -> FactorBatch:
        """The batch with private host copies of the arrays (``WorldModel.fg`` moves
        the whole graph to the device in one transfer)."""
        return FactorBatch(
            slots=self.slots.copy(),
            params={k: v.copy() for k, v in self.params.items()},
            sqrt_info=self.sqrt_info.copy(),
            robust_kind=self.kind.copy(),
            robust_scale=self.scale.copy(),
            rank=self.rank.copy(),
            mask=self.used.copy(),
            spec=self.spec,
            arg_types=self.arg_types,
            arg_positions=positions,
            residual_dim=self.residual_dim,
            isotropic=self.isotropic,
        )

    def factors_on(self, var_ids: np.ndarray) -> np.ndarray:
        """Ids of the used rows' factors that involve any of ``var_ids``."""
        hit = self.used & np.isin(self.vids, var_ids).any(axis=1)
        return self.fids[hit]

    def check_isotropic(self, sqrt_info: np.ndarray) -> None:
        """Raise unless every (d, d) matrix is a scalar times I (isotropic groups only)."""
        if not self.isotropic:
            return
        d = self.residual_dim
        scal = np.trace(sqrt_info, axis1=-2, axis2=-1)[..., None, None] / d
        if np.any(np.abs(sqrt_info - scal * np.eye(d)) > 1e-12 * np.maximum(np.abs(scal), 1e-300)):
            raise ValueError(f"factor type {self.spec.f_type!r} was declared isotropic: its weight must be a "
                             "scalar weight / sigma (sqrt_info = w I)")


class WorldModel:
    """Variables + factors + residual registry, packed into fixed-shape arrays.

    ``var_capacity`` maps variable type -> number of slots; ``factor_capacity``
    maps factor type -> slots per argument signature.  Unlisted types start with
    exactly the room they need (and grow, which recompiles).
    """

    def __init__(
        self,
        var_capacity: Mapping[str, int] | None = None,
        factor_capacity: Mapping[str, int] | None = None,
    ):
        self._types: dict[str, VariableType] = dict(BUILTIN_TYPES)
        self._residuals: dict[str, ResidualSpec] = {}
        self._var_capacity = dict(var_capacity or {})
        self._factor_capacity = dict(factor_capacity or {})
        self._slots: dict[str, _TypeSlots] = {}
        self._vars: dict[int, _Var] = {}
        # factors live in their batch's rows (fids, vids); the index maps ids to rows
        self._groups: dict[tuple, _Group] = {}
        self._group_keys: list[tuple] = []  # batch number -> key (creation order)
        self._index_by_id = FactorIndex()  # factor id -> (batch number, row), vectorised
        self._type_rank: dict[str, int] = {}
        self._next_var = 0
        self._next_factor = 0
        self._graph: FactorGraph | None = None
        self._index: dict[int, tuple[int, int]] | None = None
        for name, cap in self._var_capacity.items():
            self._type_slots(name, cap)

    # ---- registration -------------------------------------------------
    def register_variable_type(self, name: str, dim: int, manifold: str = "euclidean") -> None:
        """Add a variable type (``manifold``: "euclidean" or "se3")."""
        vt = VariableType(name, dim, manifold)
        if name in self._types and self._types[name] != vt:
            raise ValueError(f"variable type {name!r} already registered as {self._types[name]}")
        self._types[name] = vt

    def register_residual(self, f_type: str, fn: Callable[..., jnp.ndarray]) -> None:
        """Register ``fn(x_stacked, params[, ctx]) -> residual`` for factor type ``f_type``."""
        if f_type in self._residuals and self._residuals[f_type].fn is not fn:
            if any(g[0] == f_type for g in self._groups):
                raise ValueError(f"factor type {f_type!r} has factors; cannot replace its residual")
        self._residuals[f_type] = ResidualSpec(f_type, fn)

    # ---- variables ----------------------------------------------------
    def _type_slots(self, name: str, capacity: int | None = None) -> _TypeSlots:
        if name not in self._types:
            raise KeyError(f"unknown variable type {name!r}; known: {sorted(self._types)}")
        if name not in self._slots:
            cap = capacity if capacity is not None else self._var_capacity.get(name, 0)
            self._slots[name] = _TypeSlots(self._types[name], cap)
            self._graph, self._index = None, None  # the layout changed
        return self._slots[name]

    def add_variable(self, var_type: str, value) -> int:
        """Add a variable; returns its id.  ``value`` has the type's dim (finite)."""
        vt = self._types.get(var_type)
        if vt is None:
            raise KeyError(f"unknown variable type {var_type!r}; known: {sorted(self._types)}")
        val = self._check_value(vt, value)
        slots = self._type_slots(var_type)
        slot = int(slots.take(1)[0])
        slots.values[slot] = val
        vid = self._next_var
        self._next_var += 1
        self._vars[vid] = _Var(var_type, slot)
        self._graph = None
        self._index = None
        return vid

    def add_variables(self, var_type: str, values) -> np.ndarray:
        """Add n variables of one type at once ((n, dim) finite values); returns their ids."""
        vt = self._types.get(var_type)
        if vt is None:
            raise KeyError(f"unknown variable type {var_type!r}; known: {sorted(self._types)}")
        vals = np.asarray(values, dtype=np.float64).reshape(-1, vt.dim)
        if not np.all(np.isfinite(vals)):
            raise ValueError(f"{vt.name} values must be finite")
        slots = self._type_slots(var_type)
        rows = slots.take(vals.shape[0])
        slots.values[rows] = vals
        ids = np.arange(self._next_var, self._next_var + vals.shape[0])
        self._next_var += vals.shape[0]
        self._vars.update((vid, _Var(var_type, slot)) for vid, slot in zip(ids.tolist(), rows.tolist()))
        if len(ids):
            self._graph = None
            self._index = None
        return ids

    def remove_variables(self, var_ids) -> None:
        """``remove_variable`` for many ids (each must have no factors left)."""
        ids = [int(v) for v in np.asarray(var_ids, dtype=np.int64).reshape(-1)]
        for vid in ids:
            self._var(vid)
        self._check_no_factors(ids)
        by_type: dict[str, list[int]] = {}
        for vid in ids:
            v = self._vars.pop(vid)
            by_type.setdefault(v.type_name, []).append(v.slot)
        for name, rows in by_type.items():
            self._slots[name].release_many(np.array(rows, dtype=np.int64))
        if ids:
            self._index = None
            self._graph = None

    def get_variable_values(self, var_ids) -> np.ndarray:
        """(n, dim) values of n variables of one type."""
        recs = [self._var(v) for v in np.asarray(var_ids, dtype=np.int64).reshape(-1).tolist()]
        if not recs:
            return np.zeros((0, 0))
        name = recs[0].type_name
        if any(r.type_name != name for r in recs):
            raise ValueError("get_variable_values: all variables must have the same type")
        return self._slots[name].values[[r.slot for r in recs]]

    @staticmethod
    def _check_value(vt: VariableType, value) -> np.ndarray:
        val = np.asarray(value, dtype=np.float64).reshape(-1)
        if val.shape != (vt.dim,):
            raise ValueError(f"{vt.name} value must have {vt.dim} entries, got shape {np.shape(value)}")
        if not np.all(np.isfinite(val)):
            raise ValueError(f"{vt.name} value must be finite, got {val}")
        return val

    def set_variable_value(self, var_id: int, value) -> None:
        """Overwrite a variable's stored value."""
        v = self._var(var_id)
        slots = self._slots[v.type_name]
        slots.values[v.slot] = self._check_value(slots.vtype, value)

    def set_fixed_dofs(self, var_ids, fixed) -> None:
        """Hold tangent components of variables constant in every solve.

        ``fixed``: (dim,) or (n, dim) bool, True = the component of the tangent
        step is held at zero (for ``pose_se3``, order ``[rho, phi]``: a planar
        pose fixes ``rho_z, phi_x, phi_y``, so z, roll and pitch stay exactly
        where they are).  Like Ceres' subset manifolds; all-False frees a variable.
        """
        ids = np.asarray(var_ids, dtype=np.int64).reshape(-1)
        recs = [self._var(v) for v in ids.tolist()]
        if not recs:
            return
        names = {r.type_name for r in recs}
        if len(names) != 1:
            raise ValueError("set_fixed_dofs: all variables must have the same type")
        slots = self._slots[recs[0].type_name]
        mask = np.asarray(fixed, dtype=bool)
        if mask.shape not in ((slots.vtype.dim,), (len(recs), slots.vtype.dim)):
            raise ValueError(f"fixed must have shape ({slots.vtype.dim},) or ({len(recs)}, {slots.vtype.dim}), "
                             f"got {mask.shape}")
        slots.fixed[[r.slot for r in recs]] = mask
        self._graph = None

    def get_variable_value(self, var_id: int) -> np.ndarray:
        v = self._var(var_id)
        return self._slots[v.type_name].values[v.slot].copy()

    def variable_slot(self, var_id: int) -> int:
        """Row of ``var_id`` among its type's slots (what jitted code indexes by)."""
        return int(self._var(var_id).slot)

    def variable_type(self, var_id: int) -> str:
        return self._var(var_id).type_name

    def remove_variable(self, var_id: int) -> None:
        """Free a variable's slot; it must have no factors left."""
        v = self._var(var_id)
        self._check_no_factors([int(var_id)])
        self._slots[v.type_name].release(v.slot)
        del self._vars[var_id]
        self._index = None
        self._graph = None

    def _check_no_factors(self, var_ids) -> None:
        """ValueError naming a variable of ``var_ids`` that still has factors (and a few of them)."""
        ids = np.asarray(var_ids, dtype=np.int64)
        if not len(ids):
            return
        for g in self._groups.values():
            hit = g.factors_on(ids)
            if len(hit):
                vid = next(v for v in self._factor(int(hit[0])).var_ids if v in set(ids.tolist()))
                raise ValueError(f"variable {vid} still has factors {self.variable_factor_ids(vid)[:5]}")

    def _var(self, var_id: int) -> _Var:
        try:
            return self._vars[int(var_id)]
        except KeyError:
            raise KeyError(f"unknown variable id {var_id}") from None

    @property
    def variable_ids(self) -> list[int]:
        return list(self._vars)

    # ---- factors ------------------------------------------------------
    def add_factor(self, f_type: str, var_ids: Iterable[int], params: Mapping[str, Any]) -> int:
        """Add a factor of a registered type on ``var_ids``; returns its id.

        ``params`` holds the residual's arrays plus the reserved keys of
        ``world.weights`` (weight / sigma / information / sqrt_info, robust).
        """
        batched = {k: (v if k in weights.RESERVED_KEYS else np.asarray(v, dtype=np.float64)[None]) for k, v in params.items()}
        return int(self.add_factors(f_type, [tuple(var_ids)], batched)[0])

    def add_factors(self, f_type: str, var_ids, params: Mapping[str, Any]) -> np.ndarray:
        """Add m factors of one type at once; returns their ids, (m,).

        ``var_ids`` is (m, k); residual parameters are stacked (m, ...); weight
        keys are shared or stacked (``world.weights``); ``robust`` is shared.
        All m factors must have the same variable types.
        """
        spec = self._residuals.get(f_type)
        if spec is None:
            raise KeyError(f"no residual registered for factor type {f_type!r}")
        ids = np.asarray(var_ids, dtype=np.int64)
        if ids.ndim != 2 or ids.shape[0] == 0:
            raise ValueError(f"var_ids must be (m, k) with m >= 1, got shape {ids.shape}")
        m = ids.shape[0]
        known = self._vars
        try:
            flat = [known[v] for v in ids.reshape(-1).tolist()]
        except KeyError as exc:
            raise KeyError(f"unknown variable id {exc.args[0]}") from None
        n_args = ids.shape[1]
        arg_names = tuple(r.type_name for r in flat[:n_args])
        arg_types = tuple(self._types[n] for n in arg_names)
        for a in range(n_args):
            if {r.type_name for r in flat[a::n_args]} != {arg_names[a]}:
                raise ValueError(f"add_factors({f_type!r}): all factors must have the same variable types")
        values = {}
        for k, v in params.items():
            if k in weights.RESERVED_KEYS:
                continue
            arr = np.asarray(v, dtype=np.float64)
            if arr.ndim == 0 or arr.shape[0] != m:
                raise ValueError(f"factor {f_type!r}: parameter {k!r} must be stacked (m={m}, ...), got shape {arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"factor {f_type!r}: parameter {k!r} must be finite")
            values[k] = arr
        key, group = self._group_for(spec, arg_types, {k: v.shape[1:] for k, v in values.items()})
        sqrt_info = weights.whitening_matrices(params, group.residual_dim, m)
        group.check_isotropic(sqrt_info)
        kind, scale = weights.kernel(params)
        rows = group.take(m)
        group.slots[rows] = np.array([r.slot for r in flat], dtype=np.int32).reshape(m, n_args)
        for k, v in values.items():
            group.params[k][rows] = v
        group.sqrt_info[rows] = sqrt_info
        group.kind[rows], group.scale[rows] = kind, scale
        first_rank = self._type_rank.get(f_type, 0)
        group.rank[rows] = first_rank + np.arange(m)
        self._type_rank[f_type] = first_rank + m
        fids = np.arange(self._next_factor, self._next_factor + m)
        self._next_factor += m
        self._index_by_id.add(fids, group.number, rows)
        group.fids[rows] = fids
        group.vids[rows] = ids
        self._graph = None
        return fids

    def _group_for(self, spec: ResidualSpec, arg_types, shapes: dict[str, tuple],
                   isotropic: bool = False) -> tuple[tuple, _Group]:
        """The batch for (f_type, argument types, parameter shapes), created if new."""
        key = (spec.f_type, tuple(t.name for t in arg_types), tuple(sorted(shapes.items())))
        group = self._groups.get(key)
        if group is None:
            examples = {k: np.zeros(v) for k, v in shapes.items()}
            d = self._residual_dim(spec, arg_types, examples)
            group = _Group(spec, arg_types, shapes, d, self._factor_capacity.get(spec.f_type, 0), isotropic)
            group.number = len(self._group_keys)
            self._groups[key] = group
            self._group_keys.append(key)
            self._graph = None
        return key, group

    def declare_factor_type(self, f_type: str, var_types, params: Mapping[str, Any], isotropic: bool = False) -> None:
        """Create the empty batch of ``f_type`` on ``var_types`` with parameters shaped
        like ``params`` (example values), at its configured capacity.

        Declaring every batch up front fixes the graph's structure, so the first
        solve's compilation serves all later edits (an online window's warm-up).
        ``isotropic``: every factor of the batch will have a scalar weight (sqrt_info
        ``w I``, enforced on insertion), which lets the Schur solver use its fast
        path for point observations (``optimization.linear_solvers``).
        """
        spec = self._residuals.get(f_type)
        if spec is None:
            raise KeyError(f"no residual registered for factor type {f_type!r}")
        arg_types = tuple(self._types[t] if t in self._types else self._unknown_type(t) for t in var_types)
        for t in var_types:
            self._type_slots(t)
        shapes = {k: np.shape(v) for k, v in params.items() if k not in weights.RESERVED_KEYS}
        key, group = self._group_for(spec, arg_types, shapes, isotropic)
        if group.isotropic != bool(isotropic):
            raise ValueError(f"factor type {f_type!r} on {list(var_types)} already exists with isotropic={group.isotropic}")

    def _unknown_type(self, name: str):
        raise KeyError(f"unknown variable type {name!r}; known: {sorted(self._types)}")

    @staticmethod
    def _residual_dim(spec: ResidualSpec, arg_types, values) -> int:
        return _residual_dim(spec, tuple(arg_types), tuple(sorted((k, np.shape(v)) for k, v in values.items())))

    def set_factor_params(self, factor_id: int, **params) -> None:
        """Change a factor's parameters (and/or weight / kernel) in place."""
        f = self._factor(factor_id)
        g = self._groups[f.group]
        for k, v in params.items():
            if k in weights.RESERVED_KEYS:
                continue
            if k not in g.params:
                raise KeyError(f"factor {factor_id} has no parameter {k!r}")
            arr = np.asarray(v, dtype=np.float64)
            if arr.shape != g.param_shapes[k] or not np.all(np.isfinite(arr)):
                raise ValueError(f"parameter {k!r} must be finite with shape {g.param_shapes[k]}")
            g.params[k][f.row] = arr
        if any(k in params for k in weights.WEIGHT_KEYS):
            w = weights.whitening_matrix(params, g.residual_dim)
            g.check_isotropic(w)
            g.sqrt_info[f.row] = w
        if "robust" in params:
            g.kind[f.row], g.scale[f.row] = weights.kernel(params)
        self._graph = None

    def set_factors(self, factor_ids, params: Mapping[str, Any]) -> None:
        """``set_factor_params`` for m factors of one batch at once: residual
        parameters stacked (m, ...); weight keys shared or stacked (as ``add_factors``)."""
        ids = np.asarray(factor_ids, dtype=np.int64).reshape(-1)
        if not ids.size:
            return
        numbers, rows = self._index_by_id.lookup(ids)  # KeyError on an unknown id
        if np.any(numbers != numbers[0]):
            raise ValueError("set_factors: all factors must be of one batch (type and signature)")
        key = self._group_keys[int(numbers[0])]
        g = self._groups[key]
        for k, v in params.items():
            if k in weights.RESERVED_KEYS:
                continue
            if k not in g.params:
                raise KeyError(f"factors of {key[0]!r} have no parameter {k!r}")
            arr = np.asarray(v, dtype=np.float64)
            if arr.shape != (len(rows),) + g.param_shapes[k] or not np.all(np.isfinite(arr)):
                raise ValueError(f"parameter {k!r} must be finite with shape {(len(rows),) + g.param_shapes[k]}")
            g.params[k][rows] = arr
        if any(k in params for k in weights.WEIGHT_KEYS):
            w = weights.whitening_matrices(params, g.residual_dim, len(rows))
            g.check_isotropic(w)
            g.sqrt_info[rows] = w
        if "robust" in params:
            g.kind[rows], g.scale[rows] = weights.kernel(params)
        self._graph = None

    def remove_factor(self, factor_id: int) -> None:
        """Free a factor's slot (masked out of every later solve)."""
        self.remove_factors([factor_id])

    def remove_factors(self, factor_ids) -> None:
        """``remove_factor`` for many ids at once."""
        ids = np.asarray(factor_ids, dtype=np.int64).reshape(-1)
        if not len(ids):
            return
        numbers, rows = self._index_by_id.lookup(ids)  # KeyError on an unknown id
        if len(np.unique(ids)) != len(ids):
            raise KeyError(f"factor ids repeated in one removal: {ids[:5].tolist()}")
        for number in np.unique(numbers).tolist():
            g = self._groups[self._group_keys[number]]
            r = rows[numbers == number]
            g.fids[r] = -1
            g.vids[r] = -1
            g.release_many(r)
        self._index_by_id.remove(ids)
        self._graph = None

    def _factor(self, factor_id: int) -> _Factor:
        numbers, rows = self._index_by_id.lookup([int(factor_id)])  # KeyError on an unknown id
        key = self._group_keys[int(numbers[0])]
        row = int(rows[0])
        return _Factor(key, row, tuple(self._groups[key].vids[row].tolist()))

    def factor_ids(self, f_type: str | None = None) -> list[int]:
        ids, numbers = self._index_by_id.ids, self._index_by_id.numbers
        if f_type is not None:
            ids = ids[np.isin(numbers, [i for i, k in enumerate(self._group_keys) if k[0] == f_type])]
        return ids.tolist()

    def variable_factor_ids(self, var_id: int) -> list[int]:
        """Ids of the factors that involve variable ``var_id``."""
        self._var(var_id)
        found = [g.factors_on(np.array([int(var_id)])) for g in self._groups.values()]
        return sorted(np.concatenate(found).tolist()) if found else []

    def factor_var_ids(self, factor_id: int) -> tuple[int, ...]:
        return self._factor(factor_id).var_ids

    @property
    def num_factors(self) -> int:
        return len(self._index_by_id)

    # ---- packing ------------------------------------------------------
    @property
    def layout(self) -> StateLayout:
        names = list(self._slots)
        return StateLayout(
            types=tuple(self._types[n] for n in names),
            capacities=tuple(self._slots[n].capacity for n in names),
        )

    @property
    def fg(self) -> FactorGraph:
        """The fixed-shape factor graph (rebuilt after edits, cached otherwise)."""
        if self._graph is None:
            layout = self.layout
            names = [t.name for t in layout.types]
            batches = tuple(
                g.to_batch(tuple(names.index(t.name) for t in g.arg_types))
                for g in self._groups.values()
            )
            masks = tuple(self._slots[n].used.copy() for n in names)
            dofs = tuple(self._slots[n].dof_mask() for n in names)
            # one device_put of the whole pytree (several times faster than an
            # asarray per array); the arrays are private copies because the
            # transfer may read them asynchronously (see the note above _Var)
            self._graph = jax.device_put(FactorGraph(batches=batches, var_masks=masks, dof_masks=dofs, layout=layout))
        return self._graph

    def state_vector(self) -> jnp.ndarray:
        """The flat float64 state alone (``pack_state()[0]`` without building the index)."""
        layout = self.layout
        x = np.concatenate([self._slots[t.name].values.reshape(-1) for t in layout.types]) if layout.types else np.zeros(0)
        return jnp.asarray(x, dtype=jnp.float64)

    def pack_state(self) -> tuple[jnp.ndarray, dict[int, tuple[int, int]]]:
        """Flat float64 state and ``index``: var id -> (start, stop) in it."""
        layout = self.layout
        x = np.concatenate([self._slots[t.name].values.reshape(-1) for t in layout.types]) if layout.types else np.zeros(0)
        return jnp.asarray(x, dtype=jnp.float64), dict(self.state_index())

    def state_index(self) -> dict[int, tuple[int, int]]:
        """Var id -> (start, stop) in the flat state (cached until variables change)."""
        if self._index is not None:
            return self._index
        layout = self.layout
        offsets = {t.name: o for t, o in zip(layout.types, layout.offsets)}
        index = {}
        for vid, v in self._vars.items():
            dim = self._types[v.type_name].dim
            start = offsets[v.type_name] + v.slot * dim
            index[vid] = (start, start + dim)
        self._index = index
        return index

    def unpack_state(self, x) -> dict[int, jnp.ndarray]:
        """Var id -> value (a slice of the flat state ``x``)."""
        return {vid: x[a:b] for vid, (a, b) in self.state_index().items()}

    def update_from_state(self, x) -> None:
        """Write a solved flat state back into the stored variable values."""
        layout = self.layout
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (layout.size,):
            raise ValueError(f"state must have shape ({layout.size},), got {x.shape}")
        for t, block in zip(layout.types, layout.split(x)):
            slots = self._slots[t.name]
            slots.values[slots.used] = block[slots.used]  # one assignment per type

    def build_residual(self) -> "GraphResidual":
        """Residual function ``r(x)`` of the current graph (a snapshot of it)."""
        return GraphResidual(self.fg)


@dataclass(frozen=True)
class GraphResidual:
    """``r(x)``: robust whitened residuals of a fixed graph snapshot.

    Solvers recognise it and use the graph's block structure instead of a dense
    Jacobian of ``r``.
    """

    graph: FactorGraph

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return graph_residual(self.graph, x)


@functools.lru_cache(maxsize=None)
def _residual_dim(spec: ResidualSpec, arg_types: tuple, shapes: tuple) -> int:
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
