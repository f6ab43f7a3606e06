"""WorldModel: the host-side, editable factor graph behind every solve.

The seed API (``add_variable``, ``add_factor``, ``pack_state``, ``fg``, ...) is a
thin façade over three parts, each in its own module:

- the **schema** (``world.schema``): declared variable types, residual functions
  and capacities, frozen (registration swaps in a new one);
- the **slot table** (``world.slot_table``, rows in ``world.slots``): which
  variable and factor lives in which preallocated row, ids <-> rows both ways,
  and change flags that tell when the cached graph and state index are stale;
- the **values** (``world.values``): one array of variable values per type.

It hands out a fixed-shape ``FactorGraph`` pytree (``wm.fg`` on the device,
``wm.host_graph`` the same arrays in NumPy for a jitted call) and a flat float64
state (``wm.pack_state()``).  With capacities given, adding or removing variables
and factors changes only data, so jitted solvers compiled for one graph serve
every later edit within capacity.  Exceeding a capacity doubles it (logged),
which does recompile.  Edits come in plural form (n variables, m factors at once:
the window's per-keyframe edits of thousands of factors are array operations);
the singular seed methods are the plural ones with n = 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from dsg_jit_ros.world import weights
from dsg_jit_ros.world.graph import FactorGraph, StateLayout, graph_residual
from dsg_jit_ros.world.schema import Schema
from dsg_jit_ros.world.slot_table import SlotTable
from dsg_jit_ros.world.slots import FactorRows, VariableSlots
from dsg_jit_ros.world.values import VariableValues
from dsg_jit_ros.world.variables import VariableType

# Transfers to JAX: ``jnp.asarray`` / ``device_put`` of a NumPy array may read it
# asynchronously (measured on XLA:CPU: an edit right after the call shows up in
# the JAX array), so a solve still running while the model is edited would see
# torn inputs.  ``fg`` and ``host_graph`` therefore hold private copies of the
# arrays, made read-only: nothing edits them after they are built.


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
        self.schema = Schema.create(var_capacity, factor_capacity)
        self.table = SlotTable()
        self.values = VariableValues()
        self._host_graph: FactorGraph | None = None  # built from the table; stale when it says so
        self._graph: FactorGraph | None = None  # the device copy of ``_host_graph`` (None: not made yet)
        for name in self.schema.var_capacity:
            self._type_slots(name)

    # ---- registration -------------------------------------------------
    def register_variable_type(self, name: str, dim: int, manifold: str = "euclidean") -> None:
        """Add a variable type (``manifold``: "euclidean" or "se3")."""
        self.schema = self.schema.with_variable_type(VariableType(name, dim, manifold))

    def register_residual(self, f_type: str, fn: Callable[..., jnp.ndarray]) -> None:
        """Register ``fn(x_stacked, params[, ctx]) -> residual`` for factor type ``f_type``."""
        known = self.schema.residuals.get(f_type)
        if known is not None and known.fn is not fn and self.table.has_batches_of(f_type):
            raise ValueError(f"factor type {f_type!r} has factors; cannot replace its residual")
        self.schema = self.schema.with_residual(f_type, fn)

    # ---- variables ----------------------------------------------------
    def _type_slots(self, name: str) -> VariableSlots:
        """The slots of variable type ``name`` (created at its configured capacity if new)."""
        pool = self.table.variables.get(name)
        if pool is None:
            vt = self.schema.variable_type(name)
            pool = self.table.add_variable_type(vt, self.schema.var_capacity.get(name, 0))
            self.values.fit(name, vt.dim, pool.capacity)
        return pool

    def add_variable(self, var_type: str, value) -> int:
        """Add a variable; returns its id.  ``value`` has the type's dim (finite)."""
        val = self._check_value(self.schema.variable_type(var_type), value)
        return int(self.add_variables(var_type, val[None])[0])

    def add_variables(self, var_type: str, values) -> np.ndarray:
        """Add n variables of one type at once ((n, dim) finite values); returns their ids."""
        vt = self.schema.variable_type(var_type)
        vals = np.asarray(values, dtype=np.float64).reshape(-1, vt.dim)
        if not np.all(np.isfinite(vals)):
            raise ValueError(f"{vt.name} values must be finite")
        pool = self._type_slots(var_type)
        ids, rows = self.table.add_variables(var_type, vals.shape[0])
        self.values.fit(var_type, vt.dim, pool.capacity)
        self.values.write(var_type, rows, vals)
        return ids

    def remove_variable(self, var_id: int) -> None:
        """Free a variable's slot; it must have no factors left."""
        self.remove_variables([var_id])

    def remove_variables(self, var_ids) -> None:
        """``remove_variable`` for many ids (each must have no factors left)."""
        self.table.remove_variables(var_ids)

    def get_variable_value(self, var_id: int) -> np.ndarray:
        """A copy of a variable's stored value, (dim,)."""
        return self.get_variable_values([var_id])[0]

    def get_variable_values(self, var_ids) -> np.ndarray:
        """(n, dim) values of n variables of one type (a copy)."""
        name, rows = self.table.same_type_rows(var_ids, "get_variable_values")
        if name is None:
            return np.zeros((0, 0))
        return self.values.read(name, rows)

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
        rec = self.table.variable(var_id)
        val = self._check_value(self.schema.variable_type(rec.type_name), value)
        self.set_variable_values([var_id], val[None])

    def set_variable_values(self, var_ids, values) -> None:
        """Overwrite the stored values of n variables of one type ((n, dim) finite)."""
        name, rows = self.table.same_type_rows(var_ids, "set_variable_values")
        if name is None:
            return
        vt = self.schema.variable_type(name)
        vals = np.asarray(values, dtype=np.float64)
        if vals.shape != (len(rows), vt.dim) or not np.all(np.isfinite(vals)):
            raise ValueError(f"{vt.name} values must be finite with shape ({len(rows)}, {vt.dim}), got {vals.shape}")
        self.values.write(name, rows, vals)

    def set_fixed_dofs(self, var_ids, fixed) -> None:
        """Hold tangent components of variables constant in every solve.

        ``fixed``: (dim,) or (n, dim) bool, True = the component of the tangent
        step is held at zero (for ``pose_se3``, order ``[rho, phi]``: a planar
        pose fixes ``rho_z, phi_x, phi_y``, so z, roll and pitch stay exactly
        where they are).  Like Ceres' subset manifolds; all-False frees a variable.
        """
        name, rows = self.table.same_type_rows(var_ids, "set_fixed_dofs")
        if name is None:
            return
        slots = self.table.variables[name]
        mask = np.asarray(fixed, dtype=bool)
        if mask.shape not in ((slots.vtype.dim,), (len(rows), slots.vtype.dim)):
            raise ValueError(f"fixed must have shape ({slots.vtype.dim},) or ({len(rows)}, {slots.vtype.dim}), "
                             f"got {mask.shape}")
        slots.set_fixed(rows, mask)

    def variable_slot(self, var_id: int) -> int:
        """Row of ``var_id`` among its type's slots (what jitted code indexes by)."""
        return int(self.table.variable(var_id).slot)

    def variable_type(self, var_id: int) -> str:
        return self.table.variable(var_id).type_name

    @property
    def variable_ids(self) -> list[int]:
        return self.table.variable_ids

    # ---- factors ------------------------------------------------------
    def add_factor(self, f_type: str, var_ids: Iterable[int], params: Mapping[str, Any]) -> int:
        """Add a factor of a registered type on ``var_ids``; returns its id.

        ``params`` holds the residual's arrays plus the reserved keys of
        ``world.weights`` (weight / sigma / information / sqrt_info, robust).
        """
        return int(self.add_factors(f_type, [tuple(var_ids)], _stack_one(params))[0])

    def add_factors(self, f_type: str, var_ids, params: Mapping[str, Any]) -> np.ndarray:
        """Add m factors of one type at once; returns their ids, (m,).

        ``var_ids`` is (m, k); residual parameters are stacked (m, ...); weight
        keys are shared or stacked (``world.weights``); ``robust`` is shared.
        All m factors must have the same variable types.
        """
        spec = self.schema.residual(f_type)
        ids = np.asarray(var_ids, dtype=np.int64)
        if ids.ndim != 2 or ids.shape[0] == 0:
            raise ValueError(f"var_ids must be (m, k) with m >= 1, got shape {ids.shape}")
        m, n_args = ids.shape
        flat = self.table.variable_rows(ids.reshape(-1).tolist())
        arg_names = tuple(r[0] for r in flat[:n_args])
        for a in range(n_args):
            if {r[0] for r in flat[a::n_args]} != {arg_names[a]}:
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
        arg_types = tuple(self.schema.types[n] for n in arg_names)
        batch = self._batch_for(spec, arg_types, {k: v.shape[1:] for k, v in values.items()})
        sqrt_info = weights.whitening_matrices(params, batch.residual_dim, m)
        batch.check_isotropic(sqrt_info)  # before any row is taken
        kind, scale = weights.kernel(params)
        slots = np.array([r[1] for r in flat], dtype=np.int32).reshape(m, n_args)
        return self.table.add_factors(batch, ids, slots, values, sqrt_info, kind, scale)

    def _batch_for(self, spec, arg_types, shapes: dict[str, tuple], isotropic: bool = False) -> FactorRows:
        """The batch for (f_type, argument types, parameter shapes), created if new (at
        the configured capacity of its factor type)."""
        key = (spec.f_type, tuple(t.name for t in arg_types), tuple(sorted(shapes.items())))
        batch = self.table.batch(key)
        if batch is None:
            sig = self.schema.signature(spec, arg_types, shapes, isotropic)
            batch = self.table.add_batch(sig, self.schema.factor_capacity.get(spec.f_type, 0))
        return batch

    def declare_factor_type(self, f_type: str, var_types, params: Mapping[str, Any], isotropic: bool = False) -> None:
        """Create the empty batch of ``f_type`` on ``var_types`` with parameters shaped
        like ``params`` (example values), at its configured capacity.

        Declaring every batch up front fixes the graph's structure, so the first
        solve's compilation serves all later edits (an online window's warm-up).
        ``isotropic``: every factor of the batch will have a scalar weight (sqrt_info
        ``w I``, enforced on insertion), which lets the Schur solver use its fast
        path for point observations (``optimization.linear_solvers``).
        """
        spec = self.schema.residual(f_type)
        arg_types = tuple(self.schema.variable_type(t) for t in var_types)
        for t in var_types:
            self._type_slots(t)
        shapes = {k: np.shape(v) for k, v in params.items() if k not in weights.RESERVED_KEYS}
        batch = self._batch_for(spec, arg_types, shapes, isotropic)
        if batch.isotropic != bool(isotropic):
            raise ValueError(f"factor type {f_type!r} on {list(var_types)} already exists with isotropic={batch.isotropic}")

    def set_factor_params(self, factor_id: int, **params) -> None:
        """Change a factor's parameters (and/or weight / kernel) in place."""
        self.set_factors([factor_id], _stack_one(params))

    def set_factors(self, factor_ids, params: Mapping[str, Any]) -> None:
        """``set_factor_params`` for m factors of one batch at once: residual
        parameters stacked (m, ...); weight keys shared or stacked (as ``add_factors``)."""
        ids = np.asarray(factor_ids, dtype=np.int64).reshape(-1)
        if not ids.size:
            return
        g, rows = self.table.factor_rows(ids)
        who = f"factor {int(ids[0])}" if len(ids) == 1 else f"factors of {g.spec.f_type!r}"
        values = {}
        for k, v in params.items():
            if k in weights.RESERVED_KEYS:
                continue
            if k not in g.params:
                raise KeyError(f"{who} {'has' if len(ids) == 1 else 'have'} no parameter {k!r}")
            arr = np.asarray(v, dtype=np.float64)
            if arr.shape != (len(rows),) + g.param_shapes[k] or not np.all(np.isfinite(arr)):
                raise ValueError(f"parameter {k!r} must be finite with shape {g.param_shapes[k]} per factor "
                                 f"(stacked: {(len(rows),) + g.param_shapes[k]})")
            values[k] = arr
        if values:
            g.set_params(rows, values)
        if any(k in params for k in weights.WEIGHT_KEYS):
            g.set_whitening(rows, weights.whitening_matrices(params, g.residual_dim, len(rows)))
        if "robust" in params:
            g.set_kernel(rows, *weights.kernel(params))

    def remove_factor(self, factor_id: int) -> None:
        """Free a factor's slot (masked out of every later solve)."""
        self.remove_factors([factor_id])

    def remove_factors(self, factor_ids) -> None:
        """``remove_factor`` for many ids at once."""
        self.table.remove_factors(factor_ids)

    def factor_ids(self, f_type: str | None = None) -> list[int]:
        """Live factor ids (of ``f_type`` only, if given), increasing."""
        return self.table.factor_ids(f_type)

    def variable_factor_ids(self, var_id: int) -> list[int]:
        """Ids of the factors that involve variable ``var_id``."""
        return self.table.factors_on(var_id)

    def factor_var_ids(self, factor_id: int) -> tuple[int, ...]:
        return self.table.factor_var_ids(factor_id)

    @property
    def num_factors(self) -> int:
        return self.table.num_factors

    # ---- packing ------------------------------------------------------
    @property
    def layout(self) -> StateLayout:
        return self.table.layout()

    @property
    def host_graph(self) -> FactorGraph:
        """The fixed-shape factor graph with NumPy arrays (rebuilt when the slot table
        reports a change, cached otherwise; read-only private copies).  Pass it straight to
        a jitted function: jit's dispatch moves its ~30 arrays to the device in one C++
        call (about 0.15 ms for the 1 MB window graph of a planar log, where ``device_put``
        of the pytree takes 1.3 ms).  ``fg`` is the device copy, for eager use."""
        if self._host_graph is None or self.table.graph_changed():
            self.table.graph_built()  # first: an edit while this builds marks the table changed again
            layout = self.layout
            names = [t.name for t in layout.types]
            pools = self.table.variables
            batches = tuple(g.to_batch(tuple(names.index(t.name) for t in g.arg_types)) for g in self.table.batches)
            masks = tuple(pools[n].used.copy() for n in names)
            dofs = tuple(pools[n].dof_mask() for n in names)
            graph = FactorGraph(batches=batches, var_masks=masks, dof_masks=dofs, layout=layout)
            for leaf in jax.tree_util.tree_leaves(graph):
                leaf.flags.writeable = False  # a transfer may read it after the call returns
            self._host_graph, self._graph = graph, None
        return self._host_graph

    @property
    def fg(self) -> FactorGraph:
        """The fixed-shape factor graph on the device (``host_graph`` moved in one
        ``device_put`` of the whole pytree, cached until the graph changes)."""
        host = self.host_graph  # first: a rebuild drops the device copy
        if self._graph is None:
            self._graph = jax.device_put(host)
        return self._graph

    def state_vector(self) -> jnp.ndarray:
        """The flat float64 state alone (``pack_state()[0]`` without building the index)."""
        return jnp.asarray(self.values.flat(self.layout), dtype=jnp.float64)

    def pack_state(self) -> tuple[jnp.ndarray, dict[int, tuple[int, int]]]:
        """Flat float64 state and ``index``: var id -> (start, stop) in it."""
        return self.state_vector(), dict(self.state_index())

    def state_index(self) -> dict[int, tuple[int, int]]:
        """Var id -> (start, stop) in the flat state (cached until variables change)."""
        return self.table.state_index()

    def unpack_state(self, x) -> dict[int, jnp.ndarray]:
        """Var id -> value (a slice of the flat state ``x``)."""
        return {vid: x[a:b] for vid, (a, b) in self.state_index().items()}

    def update_from_state(self, x) -> None:
        """Write a solved flat state back into the stored variable values."""
        layout = self.layout
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (layout.size,):
            raise ValueError(f"state must have shape ({layout.size},), got {x.shape}")
        self.values.update(layout, x, {n: p.used for n, p in self.table.variables.items()})

    def build_residual(self) -> "GraphResidual":
        """Residual function ``r(x)`` of the current graph (a snapshot of it)."""
        return GraphResidual(self.fg)


def _stack_one(params: Mapping[str, Any]) -> dict[str, Any]:
    """One factor's parameters as a stack of one (weight keys stay shared)."""
    return {k: (v if k in weights.RESERVED_KEYS else np.asarray(v, dtype=np.float64)[None]) for k, v in params.items()}


@dataclass(frozen=True)
class GraphResidual:
    """``r(x)``: robust whitened residuals of a fixed graph snapshot.

    Solvers recognise it and use the graph's block structure instead of a dense
    Jacobian of ``r``.
    """

    graph: FactorGraph

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return graph_residual(self.graph, x)
