"""Factor id -> (batch, row) for many ids at once, as sorted numpy arrays.

``world.slot_table.SlotTable`` hands out factor ids in increasing order; each
factor is a row of its batch (``world.slots.FactorRows``, which holds the row ->
id direction).  Edits of thousands of factors at a time (the window re-weights
every observation of the voxels a keyframe saw) only need each id's batch and
row: this index answers that with one ``searchsorted`` instead of a Python loop
over per-factor records.  New ids are larger than every id before them, so adding appends;
removing compacts the arrays (live factors only: memory does not grow with the
number of factors ever added).
"""

from __future__ import annotations

import numpy as np

from dsg_jit_ros.world.sorted_lookup import sorted_positions


class FactorIndex:
    """Sorted live factor ids with their batch number and row."""

    def __init__(self) -> None:
        self._ids = np.zeros(0, dtype=np.int64)
        self._group = np.zeros(0, dtype=np.int32)
        self._row = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return int(self._ids.shape[0])

    def add(self, ids: np.ndarray, group: int, rows: np.ndarray) -> None:
        """Record new ``ids`` (increasing, larger than every live id) of batch ``group`` at ``rows``."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return
        if len(self._ids) and ids[0] <= self._ids[-1]:
            raise ValueError("factor ids must be added in increasing order")
        self._ids = np.concatenate([self._ids, ids])
        self._group = np.concatenate([self._group, np.full(len(ids), group, dtype=np.int32)])
        self._row = np.concatenate([self._row, np.asarray(rows, dtype=np.int64)])

    def _positions(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if not len(self._ids):
            if len(ids):
                raise KeyError(f"unknown factor id {int(ids[0])}")
            return np.zeros(0, dtype=np.int64)
        pos, found = sorted_positions(self._ids, ids)
        bad = ~found
        if bad.any():
            raise KeyError(f"unknown factor id {int(ids[bad][0])}")
        return pos

    def lookup(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """(batch numbers, rows) of ``ids``; KeyError naming the first unknown id."""
        pos = self._positions(ids)
        return self._group[pos], self._row[pos]

    def remove(self, ids) -> None:
        """Forget ``ids`` (all live)."""
        pos = self._positions(ids)
        if not len(pos):
            return
        keep = np.ones(len(self._ids), dtype=bool)
        keep[pos] = False
        self._ids, self._group, self._row = self._ids[keep], self._group[keep], self._row[keep]

    @property
    def ids(self) -> np.ndarray:
        """Live factor ids, increasing (a view: do not modify)."""
        return self._ids

    @property
    def numbers(self) -> np.ndarray:
        """Batch number of each id of ``ids``."""
        return self._group
