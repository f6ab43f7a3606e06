"""Keyframe selection by travelled distance and rotation since the last keyframe."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsg_jit_ros.geometry.poses import rotation_angle


@dataclass(frozen=True)
class KeyframeConfig:
    """A new keyframe once translation > ``min_translation`` (m) or rotation >
    ``min_rotation`` (rad) since the last one.  ``track_between``: the clouds between
    keyframes are registered to the window's map too, for the final trajectory only
    (``SlamPipeline.tracked_scans``); the graph is the same either way."""

    min_translation: float = 0.5
    min_rotation: float = 0.25
    track_between: bool = False

    def __post_init__(self) -> None:
        if self.min_translation < 0 or self.min_rotation < 0:
            raise ValueError("keyframe thresholds must be non-negative")


def relative_motion(t_a: np.ndarray, t_b: np.ndarray) -> tuple[float, float]:
    """(translation m, rotation angle rad) of ``T_a^-1 T_b``."""
    rel = np.linalg.inv(t_a) @ t_b
    return float(np.linalg.norm(rel[:3, 3])), rotation_angle(rel[:3, :3])


class KeyframeSelector:
    """Says whether an odometry pose is far enough from the last keyframe."""

    def __init__(self, cfg: KeyframeConfig):
        self.cfg = cfg
        self._last: np.ndarray | None = None

    def is_keyframe(self, t_odom_body: np.ndarray) -> bool:
        """True for the first pose and whenever a threshold is exceeded."""
        if self._last is None:
            return True
        dist, angle = relative_motion(self._last, t_odom_body)
        return dist > self.cfg.min_translation or angle > self.cfg.min_rotation

    def accept(self, t_odom_body: np.ndarray) -> None:
        """Record ``t_odom_body`` as the latest keyframe."""
        self._last = np.asarray(t_odom_body, dtype=np.float64).copy()

    def reset(self) -> None:
        self._last = None
