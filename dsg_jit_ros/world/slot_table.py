"""Which variable and factor lives in which row: the bookkeeping of a ``WorldModel``.

``SlotTable`` hands out ids and rows and answers both directions:

- variables: id -> (type, slot) records; slot -> id is not needed (factors store
  their variables' ids);
- factors: id -> (batch number, row) through ``world.factor_index.FactorIndex``
  (whole arrays of ids at once); row -> (factor id, variable ids) in the batch's
  ``FactorRows``;
- variable -> factors: ``factors_on`` asks every batch for the rows that name the
  variables (one vectorised test per batch).

It owns the row tables (``world.slots``: one ``VariableSlots`` per variable type,
in layout order, one ``FactorRows`` per batch, in creation order) and knows from
their change flags when what is built from them is stale (``graph_changed``,
``state_index``), so nobody invalidates a cache by hand.  It checks ids, not
values: the model validates values before it asks for rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsg_jit_ros.world.factor_index import FactorIndex
from dsg_jit_ros.world.graph import StateLayout
from dsg_jit_ros.world.schema import BatchSignature
from dsg_jit_ros.world.slots import FactorRows, VariableSlots
from dsg_jit_ros.world.variables import VariableType


@dataclass
class VariableRecord:
    """Where a variable lives: its type's name and its row among that type's slots."""

    type_name: str
    slot: int


class SlotTable:
    """Ids <-> rows for variables and factors (see the module doc)."""

    def __init__(self) -> None:
        self.variables: dict[str, VariableSlots] = {}  # by type name, in layout order
        self.batches: list[FactorRows] = []  # by batch number (creation order)
        self._batch_by_key: dict[tuple, FactorRows] = {}
        self._vars: dict[int, VariableRecord] = {}
        self.factor_index = FactorIndex()  # factor id -> (batch number, row)
        self._type_rank: dict[str, int] = {}  # f_type -> factors of it ever added
        self._next_var = 0
        self._next_factor = 0
        self._index: dict[int, tuple[int, int]] | None = None

    # ---- variables ------------------------------------------------------
    def add_variable_type(self, vtype: VariableType, capacity: int) -> VariableSlots:
        """The slots of ``vtype`` (created with ``capacity`` rows if new)."""
        pool = self.variables.get(vtype.name)
        if pool is None:
            pool = self.variables[vtype.name] = VariableSlots(vtype, capacity)
        return pool

    def add_variables(self, type_name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n new variables of a type with slots: (ids, rows), each (n,)."""
        pool = self.variables[type_name]
        rows = pool.take(n)
        ids = np.arange(self._next_var, self._next_var + n)
        self._next_var += n
        self._vars.update((vid, VariableRecord(type_name, slot)) for vid, slot in zip(ids.tolist(), rows.tolist()))
        return ids, rows

    def variable(self, var_id: int) -> VariableRecord:
        """The record of ``var_id``; KeyError "unknown variable id"."""
        try:
            return self._vars[int(var_id)]
        except KeyError:
            raise KeyError(f"unknown variable id {var_id}") from None

    def variable_records(self, var_ids) -> list[VariableRecord]:
        """Records of ``var_ids`` (any shape, flattened), in order."""
        return [self.variable(v) for v in np.asarray(var_ids, dtype=np.int64).reshape(-1).tolist()]

    def same_type_rows(self, var_ids, what: str) -> tuple[str | None, list[int]]:
        """(type name, slots) of variables of one type (None, [] for no ids); ValueError
        "``what``: all variables must have the same type" otherwise."""
        recs = self.variable_records(var_ids)
        if not recs:
            return None, []
        name = recs[0].type_name
        if any(r.type_name != name for r in recs):
            raise ValueError(f"{what}: all variables must have the same type")
        return name, [r.slot for r in recs]

    def remove_variables(self, var_ids) -> None:
        """Free the slots of ``var_ids`` (known, without factors: ValueError naming one that
        has some)."""
        ids = [int(v) for v in np.asarray(var_ids, dtype=np.int64).reshape(-1)]
        for vid in ids:
            self.variable(vid)
        self._check_no_factors(ids)
        by_type: dict[str, list[int]] = {}
        for vid in ids:
            v = self._vars.pop(vid)
            by_type.setdefault(v.type_name, []).append(v.slot)
        for name, rows in by_type.items():
            self.variables[name].release(np.array(rows, dtype=np.int64))

    def _check_no_factors(self, var_ids) -> None:
        """ValueError naming a variable of ``var_ids`` (known) that still has factors (and a
        few of them).  A used factor row names its variables by slot, and a slot holds one
        variable at a time, so the test is a gather of each batch's slot columns into a mask
        of the variables' slots (a set search over the variable ids only to name one)."""
        ids = np.asarray(var_ids, dtype=np.int64)
        if not len(ids):
            return
        marks: dict[str, np.ndarray] = {}
        for name, slot in self.variable_rows(ids.tolist()):
            if name not in marks:
                marks[name] = np.zeros(self.variables[name].capacity, dtype=bool)
            marks[name][slot] = True
        for g in self.batches:
            cols = [marks[t.name][g.slots[:, a]] for a, t in enumerate(g.arg_types) if t.name in marks]
            if not cols or not (np.logical_or.reduce(cols) & g.used).any():
                continue
            hit = g.factors_on(ids)
            if len(hit):
                vid = next(v for v in self.factor_var_ids(int(hit[0])) if v in set(ids.tolist()))
                raise ValueError(f"variable {vid} still has factors {self.factors_on(vid)[:5]}")

    @property
    def variable_ids(self) -> list[int]:
        return list(self._vars)

    def variable_rows(self, var_ids) -> list[tuple[str, int]]:
        """(type name, slot) of each of ``var_ids``: what a factor on them stores."""
        known = self._vars
        try:
            return [(r.type_name, r.slot) for r in (known[v] for v in var_ids)]
        except KeyError as exc:
            raise KeyError(f"unknown variable id {exc.args[0]}") from None

    # ---- factors --------------------------------------------------------
    def batch(self, key: tuple) -> FactorRows | None:
        """The batch named ``key`` (``BatchSignature.key``), None if not created yet."""
        return self._batch_by_key.get(key)

    def add_batch(self, sig: BatchSignature, capacity: int) -> FactorRows:
        """Create the (empty) batch of ``sig`` with ``capacity`` rows."""
        rows = FactorRows(sig, capacity, number=len(self.batches))
        self._batch_by_key[sig.key] = rows
        self.batches.append(rows)
        return rows

    def has_batches_of(self, f_type: str) -> bool:
        return any(b.spec.f_type == f_type for b in self.batches)

    def add_factors(self, batch: FactorRows, var_ids: np.ndarray, slots: np.ndarray, params, sqrt_info,
                    kind: int, scale: float) -> np.ndarray:
        """m new factors in ``batch`` on ``var_ids`` (m, k) with variable ``slots`` (m, k) and
        their data (checked); returns their ids."""
        m = var_ids.shape[0]
        f_type = batch.spec.f_type
        rows = batch.take(m)
        first_rank = self._type_rank.get(f_type, 0)
        self._type_rank[f_type] = first_rank + m
        fids = np.arange(self._next_factor, self._next_factor + m)
        self._next_factor += m
        self.factor_index.add(fids, batch.number, rows)
        batch.fill(rows, fids, var_ids, slots, first_rank + np.arange(m), params, sqrt_info, kind, scale)
        return fids

    def factor_rows(self, factor_ids) -> tuple[FactorRows, np.ndarray]:
        """(batch, rows) of factors of one batch; KeyError on an unknown id, ValueError
        when they span batches."""
        numbers, rows = self.factor_index.lookup(factor_ids)  # KeyError on an unknown id
        if np.any(numbers != numbers[0]):
            raise ValueError("set_factors: all factors must be of one batch (type and signature)")
        return self.batches[int(numbers[0])], rows

    def remove_factors(self, factor_ids) -> None:
        """Free the rows of ``factor_ids`` (known, each once; KeyError otherwise)."""
        ids = np.asarray(factor_ids, dtype=np.int64).reshape(-1)
        if not len(ids):
            return
        numbers, rows = self.factor_index.lookup(ids)  # KeyError on an unknown id
        if len(np.unique(ids)) != len(ids):
            raise KeyError(f"factor ids repeated in one removal: {ids[:5].tolist()}")
        for number in np.unique(numbers).tolist():
            self.batches[number].free(rows[numbers == number])
        self.factor_index.remove(ids)

    def factor_var_ids(self, factor_id: int) -> tuple[int, ...]:
        numbers, rows = self.factor_index.lookup([int(factor_id)])  # KeyError on an unknown id
        return tuple(self.batches[int(numbers[0])].vids[int(rows[0])].tolist())

    def factor_ids(self, f_type: str | None = None) -> list[int]:
        ids, numbers = self.factor_index.ids, self.factor_index.numbers
        if f_type is not None:
            ids = ids[np.isin(numbers, [b.number for b in self.batches if b.spec.f_type == f_type])]
        return ids.tolist()

    def factors_on(self, var_id: int) -> list[int]:
        """Ids of the factors that involve variable ``var_id``, increasing."""
        self.variable(var_id)
        found = [g.factors_on(np.array([int(var_id)])) for g in self.batches]
        return sorted(np.concatenate(found).tolist()) if found else []

    @property
    def num_factors(self) -> int:
        return len(self.factor_index)

    # ---- what is built from the rows -----------------------------------------
    def layout(self) -> StateLayout:
        """The flat state's layout: variable types in the order their slots were created."""
        return StateLayout(types=tuple(p.vtype for p in self.variables.values()),
                           capacities=tuple(p.capacity for p in self.variables.values()))

    def graph_changed(self) -> bool:
        """Whether anything a ``FactorGraph`` is built from changed since ``graph_built``."""
        return any(p.changed for p in self.variables.values()) or any(b.changed for b in self.batches)

    def graph_built(self) -> None:
        """A graph is being built from the rows as they are now: clear the change flags
        (new tables start changed)."""
        for pool in (*self.variables.values(), *self.batches):
            pool.changed = False

    def state_index(self) -> dict[int, tuple[int, int]]:
        """Var id -> (start, stop) in the flat state (cached until a type's used rows or
        capacity change)."""
        if self._index is not None and not any(p.rows_changed for p in self.variables.values()):
            return self._index
        layout = self.layout()
        offsets = {t.name: o for t, o in zip(layout.types, layout.offsets)}
        dims = {t.name: t.dim for t in layout.types}
        index = {}
        for vid, v in self._vars.items():
            dim = dims[v.type_name]
            start = offsets[v.type_name] + v.slot * dim
            index[vid] = (start, start + dim)
        for pool in self.variables.values():
            pool.rows_changed = False
        self._index = index
        return index
