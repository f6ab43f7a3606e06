"""The clouds registered between keyframes (``keyframe.track_between``), kept compactly.

One row per registered cloud: its stamp (s), the stamp of the keyframe it was
registered after and the increment ``T_keyframe^-1 T_map_body`` (4x4, from the
keyframe's estimate when the cloud came).  The final trajectory
(``export.poses_at(final=True)``) reads them after the run.

Rows live in numpy arrays that double when full (no Python object per cloud): 144
bytes per cloud, about 5 MB per hour at 10 Hz (a list of tuples took ~250 bytes).
"""

from __future__ import annotations

import numpy as np


class TrackedScans:
    """Append-only table of registered clouds, stamps increasing."""

    def __init__(self, capacity: int = 1024):
        self._n = 0
        self._stamps = np.empty(capacity)
        self._keyframe_stamps = np.empty(capacity)
        self._increments = np.empty((capacity, 4, 4))

    def append(self, stamp: float, keyframe_stamp: float, increment: np.ndarray) -> None:
        """Add one cloud's registration (stamp after every stored one)."""
        if self._n and stamp <= self._stamps[self._n - 1]:
            raise ValueError(f"tracked cloud stamp {stamp} is not after the last one {self._stamps[self._n - 1]}")
        if self._n == len(self._stamps):
            self._grow()
        i = self._n
        self._stamps[i], self._keyframe_stamps[i] = stamp, keyframe_stamp
        self._increments[i] = increment
        self._n += 1

    def _grow(self) -> None:
        cap = 2 * max(len(self._stamps), 1)
        for name in ("_stamps", "_keyframe_stamps", "_increments"):
            old = getattr(self, name)
            new = np.empty((cap, *old.shape[1:]), dtype=old.dtype)
            new[: self._n] = old[: self._n]
            setattr(self, name, new)

    def __len__(self) -> int:
        return self._n

    @property
    def stamps(self) -> np.ndarray:
        """(n,) cloud stamps (s)."""
        return self._stamps[: self._n]

    @property
    def keyframe_stamps(self) -> np.ndarray:
        """(n,) stamp of the keyframe each cloud was registered after (s)."""
        return self._keyframe_stamps[: self._n]

    @property
    def increments(self) -> np.ndarray:
        """(n, 4, 4) ``T_keyframe^-1 T_map_body``."""
        return self._increments[: self._n]

    @property
    def nbytes(self) -> int:
        """Bytes held (capacity included)."""
        return sum(a.nbytes for a in (self._stamps, self._keyframe_stamps, self._increments))
