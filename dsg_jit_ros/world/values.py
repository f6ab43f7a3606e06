"""The values of a ``WorldModel``'s variables, and the flat state they make.

One (capacity, dim) float64 array per variable type, row ``slot`` holding the value
of the variable in that slot (``world.slot_table``); free rows keep whatever was
last written (they are masked out of every solve).  The flat state is the
concatenation of the arrays in the ``StateLayout``'s order, so a slot's place in
it is ``offset(type) + slot * dim``.
"""

from __future__ import annotations

import numpy as np

from dsg_jit_ros.world.graph import StateLayout


class VariableValues:
    """Per-type value arrays, kept as long as their type's slot capacity."""

    def __init__(self) -> None:
        self._blocks: dict[str, np.ndarray] = {}

    def fit(self, name: str, dim: int, capacity: int) -> None:
        """Make type ``name``'s array ``capacity`` rows long (new rows are zeros)."""
        block = self._blocks.get(name)
        if block is None:
            self._blocks[name] = np.zeros((capacity, dim))
        elif block.shape[0] < capacity:
            self._blocks[name] = np.concatenate([block, np.zeros((capacity - block.shape[0], dim))])

    def block(self, name: str) -> np.ndarray:
        """Type ``name``'s (capacity, dim) array (the stored one: writes go through)."""
        return self._blocks[name]

    def write(self, name: str, rows, values: np.ndarray) -> None:
        """Store ``values`` ((len(rows), dim)) in ``rows`` of type ``name``."""
        self._blocks[name][rows] = values

    def read(self, name: str, rows) -> np.ndarray:
        """A copy of ``rows`` of type ``name``, (len(rows), dim)."""
        return self._blocks[name][rows]

    def flat(self, layout: StateLayout) -> np.ndarray:
        """The flat float64 state (a new array)."""
        if not layout.types:
            return np.zeros(0)
        return np.concatenate([self._blocks[t.name].reshape(-1) for t in layout.types])

    def update(self, layout: StateLayout, x: np.ndarray, used: dict[str, np.ndarray]) -> None:
        """Take the used rows' values (``used``: type -> (capacity,) bool) from the flat
        state ``x``; free rows keep theirs."""
        for t, block in zip(layout.types, layout.split(x)):
            mask = used[t.name]
            self._blocks[t.name][mask] = block[mask]  # one assignment per type
