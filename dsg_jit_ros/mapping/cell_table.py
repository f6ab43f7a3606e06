"""Row lookup of integer voxel cells: which row of a set of voxels holds each queried cell.

Registration looks up the 8 (planar: 4) cells around every scan point at every
Gauss-Newton iteration: tens of thousands of queries per iteration.  A sorted
search of packed keys costs a binary search per query; here the voxels' cells
(integer ``floor(q / voxel_size)`` coordinates, map or target frame) are written
into a dense table over their bounding box, so a query is one index computation
and one gather.  A set of voxels spread so far that the box would exceed
``MAX_TABLE_CELLS`` falls back to the sorted search.
"""

from __future__ import annotations

import numpy as np

from dsg_jit_ros.mapping.voxelize import KEY_LIMIT, pack_keys, unpack_keys
from dsg_jit_ros.world.sorted_lookup import sorted_positions

MAX_TABLE_CELLS = 1 << 21  # dense table entries over the box (int32: 8 MiB at most)


class CellTable:
    """Rows of integer cells among ``keys`` ((K,) packed int64, ``voxelize.pack_keys``;
    row ``i`` is ``keys[i]``)."""

    def __init__(self, keys: np.ndarray):
        self.keys = np.asarray(keys, dtype=np.int64)
        self._table = None
        self._order = None
        if not len(self.keys):
            return
        cells = unpack_keys(self.keys)
        self._lo = cells.min(axis=0) - 1  # a border of empty cells around the box
        self._extent = cells.max(axis=0) - self._lo + 2
        self._strides = np.array([self._extent[1] * self._extent[2], self._extent[2], 1], dtype=np.int64)
        size = int(np.prod(self._extent))
        if size <= MAX_TABLE_CELLS:
            # after the box, a run of empty entries that any block of offsets from its first one stays in
            self._outside = size
            self._block_limit = (self._extent - 1).astype(np.uint64)
            self._table = np.full(size + self._flat(np.ones(3, dtype=np.int64)) + 1, -1, dtype=np.int32)
            self._table[self._flat(cells - self._lo)] = np.arange(len(self.keys), dtype=np.int32)
        else:
            self._order = np.argsort(self.keys, kind="stable")

    def _flat(self, idx: np.ndarray) -> np.ndarray:
        """Flat table index of (..., 3) box coordinates (row-major over the box)."""
        return idx @ self._strides

    def block_rows(self, base: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """(N, k) rows (int32 or int64) of the cells ``base + offsets`` ((N, 3) integer cells,
        (k, 3) offsets of 0 or 1), -1 where the set has no such voxel."""
        if self._table is None or not len(self.keys):
            return self.rows(base[:, None, :] + offsets[None, :, :])
        # the box and its border hold base and base + 1 of a point inside it: one flat
        # index per point (points outside: the empty run after the box), plus a fixed step per offset
        idx = np.asarray(base, dtype=np.int64) - self._lo
        # inside the box: 0 <= idx < extent - 1, as one unsigned compare per axis
        # (np.all over an axis of 3 costs ten times the three ands on small inputs)
        ok = idx.view(np.uint64) < self._block_limit
        inside = ok[:, 0] & ok[:, 1] & ok[:, 2]
        flat = np.where(inside, self._flat(idx), self._outside)
        return self._table[flat[:, None] + self._flat(np.asarray(offsets, dtype=np.int64))[None, :]]

    def rows(self, cells: np.ndarray) -> np.ndarray:
        """Row of each (..., 3) integer cell, -1 where the set has no such voxel."""
        cells = np.asarray(cells, dtype=np.int64)
        if not len(self.keys):
            return np.full(cells.shape[:-1], -1, dtype=np.int64)
        if self._table is not None:
            idx = cells - self._lo
            inside = np.all((idx >= 0) & (idx < self._extent), axis=-1)
            rows = self._table[self._flat(np.where(inside[..., None], idx, 0))]
            return np.where(inside, rows, -1).astype(np.int64)
        # sorted search; cells beyond pack_keys' range are in no set
        packable = np.all((cells >= -KEY_LIMIT) & (cells < KEY_LIMIT), axis=-1)
        flat = np.where(packable[..., None], cells, 0).reshape(-1, 3)
        keys = pack_keys(flat).reshape(cells.shape[:-1])
        sorted_keys = self.keys[self._order]
        pos, found = sorted_positions(sorted_keys, keys)
        return np.where(packable & found, self._order[pos], -1)
