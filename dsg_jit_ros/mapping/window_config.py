"""The sliding window's settings: size, capacities, the odometry noise model
(``WindowConfig``; its YAML groups are ``window``, ``voxel``, ``surface``,
``registration``, ``noise`` and ``solver``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dsg_jit_ros.geometry.poses import pose_values
from dsg_jit_ros.mapping.registration import RegistrationConfig
from dsg_jit_ros.mapping.voxel_map import SurfaceConfig
from dsg_jit_ros.mapping.voxelize import VoxelConfig
from dsg_jit_ros.optimization.prefix import check_fraction
from dsg_jit_ros.optimization.solvers import LMConfig


@dataclass(frozen=True)
class WindowConfig:
    """Window size, capacities and noise model (metres, radians).

    ``reassociations``: after the solve, cut the new cloud into voxels again under
    the refined pose and solve again (a second solve per keyframe).
    ``frozen_weight``: observation-equivalents of the prior that ties an active
    voxel to its frozen statistics (0: no such prior).
    ``kernel_scale``: Cauchy scale of the whitened voxel observations.
    Odometry increments between keyframes have sigmas ``odom_sigma_translation +
    odom_translation_scale * |travel| + odom_translation_per_turn * |turn|`` (m) and
    ``odom_sigma_rotation + odom_rotation_scale * |turn|`` (rad): wheel odometry errs
    in proportion to the motion (a turn in place of 60 degrees is not known to
    0.02 rad, and wheels slip while turning).
    ``odom_scale_memory`` (m; 0: off): the odometry's distance scale is estimated over
    about this much travel and applied to its increments (``mapping.odometry_scale``),
    within ``1 +- odom_scale_limit``.
    ``prefix_fraction`` (0: off): the solve also runs on the graph cut to this share
    of its voxel and observation capacities whenever every voxel and observation in
    use fits in it (``optimization.prefix``); that second, smaller program is compiled
    after the first (``mapping.warm_up``).
    """

    size: int = 20
    voxel: VoxelConfig = field(default_factory=VoxelConfig)
    max_voxels: int = 4096
    max_observations: int = 32768
    odom_sigma_translation: float = 0.05
    odom_sigma_rotation: float = 0.02
    odom_translation_scale: float = 0.0
    odom_rotation_scale: float = 0.0
    odom_translation_per_turn: float = 0.0
    odom_scale_memory: float = 0.0
    odom_scale_limit: float = 0.1
    anchor_sigma: float = 1e-3
    surface: SurfaceConfig = field(default_factory=SurfaceConfig)
    frozen_weight: float = 2.0
    kernel_scale: float = 3.0
    reassociations: int = 0
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    lm: LMConfig = field(default_factory=lambda: LMConfig(linear_solver="schur", max_iters=15, rel_tol=1e-6))
    prefix_fraction: float = 0.0

    def __post_init__(self) -> None:
        check_fraction(self.prefix_fraction)
        if self.size < 2:
            raise ValueError(f"window size must be >= 2 keyframes, got {self.size}")
        for name in ("odom_sigma_translation", "odom_sigma_rotation", "anchor_sigma", "kernel_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_voxels < 1 or self.max_observations < 1:
            raise ValueError("max_voxels and max_observations must be >= 1")
        if min(self.frozen_weight, self.reassociations, self.odom_translation_scale, self.odom_rotation_scale,
               self.odom_translation_per_turn, self.odom_scale_memory) < 0:
            raise ValueError("frozen_weight, reassociations, the odometry scales and odom_scale_memory must be >= 0")
        if not 0 <= self.odom_scale_limit < 1:
            raise ValueError(f"odom_scale_limit must be in [0, 1), got {self.odom_scale_limit}")

    def odom_sigmas(self, increment: np.ndarray) -> np.ndarray:
        """(6,) sigmas of the odometry increment ``T_i^-1 T_j`` (4x4), tangent order
        [rho (m), phi (rad)]."""
        travel = float(np.linalg.norm(increment[:3, 3]))
        turn = float(np.linalg.norm(pose_values(increment[None])[0, 3:]))
        return np.array([self.odom_sigma_translation + self.odom_translation_scale * travel
                         + self.odom_translation_per_turn * turn] * 3
                        + [self.odom_sigma_rotation + self.odom_rotation_scale * turn] * 3)
