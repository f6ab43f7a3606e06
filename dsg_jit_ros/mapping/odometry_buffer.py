"""A bounded, time-ordered buffer of odometry poses ``T_odom_body`` with
interpolation at arbitrary stamps (linear in translation, slerp in rotation).

Stamps are seconds (float).  Out-of-order or duplicate stamps are rejected with
``ValueError`` (the caller counts and logs them); queries outside the buffered
span return ``None`` so a cloud can wait for later odometry or be dropped.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from dsg_jit_ros.geometry.poses import interpolate


class OdometryBuffer:
    """The last ``capacity`` odometry poses, strictly increasing in time."""

    def __init__(self, capacity: int = 2000):
        if capacity < 2:
            raise ValueError(f"capacity must be >= 2, got {capacity}")
        self._stamps: deque[float] = deque(maxlen=capacity)
        self._poses: deque[np.ndarray] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._stamps)

    @property
    def span(self) -> tuple[float, float] | None:
        """(oldest, newest) stamp, or None when empty."""
        return (self._stamps[0], self._stamps[-1]) if self._stamps else None

    def add(self, stamp: float, t_odom_body: np.ndarray) -> None:
        """Append a pose; raises ValueError on a non-increasing stamp or bad pose."""
        t = np.asarray(t_odom_body, dtype=np.float64)
        if t.shape != (4, 4) or not np.all(np.isfinite(t)):
            raise ValueError("odometry pose must be a finite 4x4 matrix")
        if not np.isfinite(stamp):
            raise ValueError(f"odometry stamp must be finite, got {stamp}")
        if self._stamps and stamp <= self._stamps[-1]:
            kind = "duplicate" if stamp == self._stamps[-1] else "out-of-order"
            raise ValueError(f"{kind} odometry stamp {stamp:.9f} (newest {self._stamps[-1]:.9f})")
        r = t[:3, :3]
        if np.abs(r.T @ r - np.eye(3)).max() > 1e-6 or np.linalg.det(r) < 0:
            raise ValueError("odometry rotation is not orthonormal")
        self._stamps.append(float(stamp))
        self._poses.append(t)

    def interpolate(self, stamp: float) -> np.ndarray | None:
        """``T_odom_body`` at ``stamp``, or None outside the buffered span."""
        if len(self._stamps) == 0 or not (self._stamps[0] <= stamp <= self._stamps[-1]):
            return None
        stamps = np.fromiter(self._stamps, dtype=np.float64)
        k = int(np.searchsorted(stamps, stamp, side="right"))
        if k == len(stamps):
            return self._poses[-1].copy()
        a, b = self._poses[k - 1], self._poses[k]
        s = (stamp - stamps[k - 1]) / (stamps[k] - stamps[k - 1])
        return interpolate(a, b, s)
