"""Host rows behind a ``WorldModel``: fixed-capacity tables, rows taken lowest free first.

``SlotPool`` is the row allocator (lowest free rows first, growth by doubling);
``VariableSlots`` holds one variable type's rows (used, fixed components) and
``FactorRows`` one factor batch's rows (variable slots, parameters, whitening,
kernel, rank, and the factor id and variable ids of each row).  Variable *values*
are not here: they live in ``world.values`` (the solvers read them as the state,
not as graph data).

Every change goes through a method that records it, so caches built from the
tables know when they are stale without being told: ``changed`` (anything the
``FactorGraph`` is built from: rows in use, capacities, batch data, fixed
components) and, for variables, ``rows_changed`` (which rows are in use: the
state index).  A consumer reads the flag and clears it when it rebuilds.
"""

from __future__ import annotations

import logging

import numpy as np

from dsg_jit_ros.world.graph import FactorBatch
from dsg_jit_ros.world.schema import BatchSignature
from dsg_jit_ros.world.variables import VariableType

log = logging.getLogger(__name__)

_MIN_CAPACITY = 1


class SlotPool:
    """Fixed-capacity rows, taken lowest free first: the rows in use stay packed at the
    front (a solve may then run on that prefix alone: ``optimization.prefix``).

    Subclasses hold the row arrays and pad them in ``_pad``.  Running out of rows
    doubles the capacity (a warning when the capacity was configured, since the
    new shapes recompile every jitted solver).  ``changed`` is set by every
    change (a new pool starts changed).
    """

    label = "slots"

    def __init__(self, name: str, capacity: int):
        self.name = name
        self.configured = capacity > 0
        self.used = np.zeros(0, dtype=bool)
        self.changed = True
        self._grow(capacity)

    @property
    def capacity(self) -> int:
        return self.used.shape[0]

    def _pad(self, pad: int) -> None:
        raise NotImplementedError

    def _touch(self) -> None:
        """Record a change of the rows in use (or of the capacity)."""
        self.changed = True

    def _grow(self, capacity: int) -> None:
        old = self.capacity
        if capacity <= old:
            return
        if self.configured and old:
            log.warning("%s %r: capacity %d exhausted, growing to %d (recompiles)", self.label, self.name, old, capacity)
        self._pad(capacity - old)
        self.used = np.concatenate([self.used, np.zeros(capacity - old, dtype=bool)])
        self._touch()

    def take(self, n: int) -> np.ndarray:
        """Mark n free rows used, the lowest free ones first (the rows in use stay packed
        at the front: the window's solve then fits a smaller compiled capacity more
        often, ``optimization.prefix``); returns them."""
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        free = np.flatnonzero(~self.used)  # one pass over the capacity (a few µs)
        if len(free) < n:
            self._grow(max(2 * self.capacity, _MIN_CAPACITY, self.capacity + n - len(free)))
            free = np.flatnonzero(~self.used)
        rows = free[:n]
        self.used[rows] = True
        self._touch()
        return rows

    def release(self, rows: np.ndarray) -> None:
        """Mark ``rows`` (used) free again."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        self.used[rows] = False
        if len(rows):
            self._touch()


class VariableSlots(SlotPool):
    """Rows of one variable type: which are used, and which tangent components of a
    used row are held fixed.  ``rows_changed``: the used rows or the capacity changed
    (a variable's place in the flat state may have moved)."""

    label = "variable type"

    def __init__(self, vtype: VariableType, capacity: int):
        self.vtype = vtype
        self.fixed = np.zeros((0, vtype.dim), dtype=bool)  # components held constant
        self.rows_changed = True
        super().__init__(vtype.name, capacity)

    def _pad(self, pad: int) -> None:
        self.fixed = np.concatenate([self.fixed, np.zeros((pad, self.vtype.dim), dtype=bool)])

    def _touch(self) -> None:
        self.changed = self.rows_changed = True

    def take(self, n: int) -> np.ndarray:
        rows = super().take(n)
        self.fixed[rows] = False  # a reused slot starts free
        return rows

    def set_fixed(self, rows: np.ndarray, fixed: np.ndarray) -> None:
        """Hold components of ``rows`` fixed (True) or free (False); ``fixed`` broadcasts
        to (len(rows), dim)."""
        self.fixed[rows] = fixed
        self.changed = True

    def dof_mask(self) -> np.ndarray:
        """(capacity, dim) bool: True where a used slot's component may move."""
        return self.used[:, None] & ~self.fixed


class FactorRows(SlotPool):
    """Host arrays of one factor batch (its static ``BatchSignature``: f_type, argument
    types, param shapes, ...), one row per factor: what the solvers see (slots,
    parameters, whitening, kernel, rank) and the bookkeeping (factor id, variable
    ids; -1 in free rows)."""

    label = "factor type"

    def __init__(self, signature: BatchSignature, capacity: int, number: int = -1):
        self.signature = signature
        self.spec = signature.spec
        self.number = number  # position among its model's batches
        self.isotropic = signature.isotropic
        self.arg_types = signature.arg_types
        self.param_shapes = dict(signature.param_shapes)
        self.residual_dim = d = signature.residual_dim
        k = len(self.arg_types)
        self.slots = np.zeros((0, k), dtype=np.int32)
        self.fids = np.zeros(0, dtype=np.int64)  # factor id of each used row
        self.vids = np.zeros((0, k), dtype=np.int64)  # variable ids of each used row
        self.params = {name: np.zeros((0,) + shape) for name, shape in self.param_shapes.items()}
        self.sqrt_info = np.zeros((0, d, d))
        self.kind = np.zeros(0, dtype=np.int32)
        self.scale = np.ones(0)
        self.rank = np.full(0, -1, dtype=np.int32)
        super().__init__(self.spec.f_type, capacity)

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

    def fill(self, rows, fids, vids, slots, rank, params, sqrt_info, kind, scale) -> None:
        """Record new factors in ``rows`` (just taken): ids, variable ids and slots (m, k),
        rank among the factors of their type, parameters, whitening (the caller checked
        it before taking the rows), kernel."""
        self.slots[rows] = slots
        for k, v in params.items():
            self.params[k][rows] = v
        self.sqrt_info[rows] = sqrt_info
        self.kind[rows], self.scale[rows] = kind, scale
        self.rank[rows] = rank
        self.fids[rows] = fids
        self.vids[rows] = vids
        self.changed = True

    def set_params(self, rows, values: dict[str, np.ndarray]) -> None:
        """Residual parameters of ``rows``, stacked (len(rows), ...) per name."""
        for k, v in values.items():
            self.params[k][rows] = v
        self.changed = True

    def set_whitening(self, rows, sqrt_info: np.ndarray) -> None:
        """(len(rows), d, d) square-root informations (checked if isotropic)."""
        self.check_isotropic(sqrt_info)
        self.sqrt_info[rows] = sqrt_info
        self.changed = True

    def set_kernel(self, rows, kind: int, scale: float) -> None:
        """Robust kernel code and scale of ``rows`` (``world.robust``)."""
        self.kind[rows], self.scale[rows] = kind, scale
        self.changed = True

    def free(self, rows: np.ndarray) -> None:
        """Forget the factors in ``rows``: ids -1, rows free again."""
        self.fids[rows] = -1
        self.vids[rows] = -1
        self.release(rows)

    def to_batch(self, positions: tuple[int, ...]) -> FactorBatch:
        """The batch with private host copies of the arrays (``WorldModel.host_graph``
        holds them; a transfer to the device may read them after it returns)."""
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
