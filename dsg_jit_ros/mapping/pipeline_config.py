"""What the online data path is configured with: ``PipelineConfig`` and its input rules.

Frozen dataclasses, built from ROS parameters at the edge (``dsg_jit_ros.config``
fills every field from the parameter table) or directly by the demo, benchmarks and
tests.  Each checks its own values on construction, so a ``SlamPipeline`` never
sees an inconsistent configuration.  Units: seconds, metres, m/s, rad/s.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dsg_jit_ros.geometry.poses import from_xyz_rpy
from dsg_jit_ros.mapping.global_graph import LoopConfig
from dsg_jit_ros.mapping.keyframes import KeyframeConfig
from dsg_jit_ros.mapping.window_config import WindowConfig


@dataclass(frozen=True)
class InputConfig:
    """Acceptance rules for incoming data (seconds, metres, m/s, rad/s)."""

    odom_buffer: int = 4000
    max_pending_clouds: int = 100  # clouds waiting for odometry that covers their stamps
    max_linear_speed: float = 10.0  # faster odometry motion between two messages is a jump
    max_angular_speed: float = 6.0
    min_points: int = 10  # fewer valid points than this: the cloud is not used
    compute_covariance: bool = True

    def __post_init__(self) -> None:
        if self.odom_buffer < 2 or self.max_pending_clouds < 1 or self.min_points < 1:
            raise ValueError("odom_buffer >= 2, max_pending_clouds >= 1 and min_points >= 1 are required")
        for name in ("max_linear_speed", "max_angular_speed"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


PLANAR_MODES = ("auto", "on", "off")
MODES = ("mapping", "localization")  # localization: track against map_file without adding to it


@dataclass(frozen=True)
class PipelineConfig:
    """Everything the data path needs; built from ROS parameters at the edge.

    ``planar``: "on" estimates x, y, yaw only (z, roll, pitch from odometry: 2D
    lasers, ground robots); "off" full SE(3); "auto" decides on the first keyframe
    (planar when its cloud lies in z = 0 of the sensor, see ``mapping.planar``).
    """

    window: WindowConfig = field(default_factory=WindowConfig)
    keyframe: KeyframeConfig = field(default_factory=KeyframeConfig)
    inputs: InputConfig = field(default_factory=InputConfig)
    t_body_sensor: tuple[float, ...] = tuple(np.eye(4).reshape(-1))  # row-major 4x4
    planar: str = "auto"
    loop: LoopConfig = field(default_factory=LoopConfig)
    mode: str = "mapping"
    map_file: str = ""
    initial_pose: tuple[float, ...] = (0.0,) * 6  # x, y, z (m), roll, pitch, yaw (rad): T_map_body
    initial_pose_sigma: tuple[float, float] = (0.5, 0.2)  # m, rad

    def __post_init__(self) -> None:
        if self.planar not in PLANAR_MODES:
            raise ValueError(f"planar must be one of {PLANAR_MODES}, got {self.planar!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "localization" and not self.map_file:
            raise ValueError("mode: localization needs a map_file to localize in")
        if len(self.initial_pose) != 6 or len(self.initial_pose_sigma) != 2 or min(self.initial_pose_sigma) <= 0:
            raise ValueError("initial_pose needs 6 values (x y z roll pitch yaw) and initial_pose_sigma 2 positive ones")

    def initial_transform(self) -> np.ndarray:
        """``initial_pose`` as a 4x4 T_map_body."""
        return from_xyz_rpy(self.initial_pose)

    def body_sensor(self) -> np.ndarray:
        """``t_body_sensor`` as a 4x4 T_body_sensor."""
        return np.asarray(self.t_body_sensor, dtype=np.float64).reshape(4, 4)
