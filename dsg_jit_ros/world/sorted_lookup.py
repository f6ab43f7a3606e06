"""Where many keys sit in a sorted array of unique keys: one ``searchsorted``.

Factor ids (``world.factor_index``), voxel keys (``mapping.voxel_map``,
``mapping.cell_table``, ``mapping.active_voxels``, ``mapping.local_map``) are all
looked up this way; the clip to the last position lets a key past the end be
compared (and found absent) without a bounds test.
"""

from __future__ import annotations

import numpy as np


def sorted_positions(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions, found): where each of ``keys`` would sit in ``sorted_keys`` (sorted,
    unique, not empty), clipped to its last position, and whether it is there."""
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return pos, sorted_keys[pos] == keys
