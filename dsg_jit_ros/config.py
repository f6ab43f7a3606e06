"""The node's parameters, declared once: name, default, range, description and the field each fills.

This table (``PARAMS``) is what the ROS node declares (``ros.params``); the
shipped parameter files ``config/params.yaml`` (every parameter at its default)
and the sensor-class files (``config/planar_laser.yaml``, ``config/lidar_3d.yaml``)
are rendered from it (``param_files``, a test keeps them in step); and
``build_configs`` fills the frozen configuration dataclasses from it: each
parameter goes into the field named like the last part of its name (``voxel.size``
-> ``VoxelConfig.size``, ``noise.anchor_sigma`` -> ``WindowConfig.anchor_sigma``),
the blocks of the table say which dataclass.  The two ``solver.*`` parameters
whose ``LMConfig`` fields keep the names all the solver configs share
(``max_iters``, ``rel_tol``) say so with ``field``.  What depends on several
parameters (frames that must differ, the sensor extrinsic, covariance on or off)
stays explicit in ``build_configs``.  The dataclasses' own defaults (the ROS-free
code and tests build them directly) are the table's: a test keeps them equal
(``NodeConfig`` has none).  ``load_pipeline_config`` does the same from
a parameter file without ROS (the benchmarks and tests).  A value outside its
range, an unknown name or an inconsistent combination raises ``ParameterError``
with a sentence naming it.  No ROS here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsg_jit_ros.geometry.poses import from_xyz_rpy
from dsg_jit_ros.mapping.global_graph import LoopConfig
from dsg_jit_ros.mapping.keyframes import KeyframeConfig
from dsg_jit_ros.mapping.pipeline_config import MODES, PLANAR_MODES, InputConfig, PipelineConfig
from dsg_jit_ros.mapping.registration import RegistrationConfig
from dsg_jit_ros.mapping.voxel_map import SurfaceConfig
from dsg_jit_ros.mapping.voxelize import VoxelConfig
from dsg_jit_ros.mapping.window_config import WindowConfig
from dsg_jit_ros.optimization.solvers import LMConfig
from dsg_jit_ros.param_spec import (  # noqa: F401 (ParameterError, ParamSpec: re-exported)
    ParameterError, ParamSpec, assemble, field_values, filling, unknown_name_error)


@dataclass(frozen=True)
class NodeConfig:
    """What the ROS edge needs beyond the pipeline (frames, QoS, outputs, start-up); built
    from the table only (``build_configs``), so no defaults of its own."""

    map_frame: str
    odom_frame: str
    base_frame: str
    sensor_frame: str
    sensor_extrinsic: tuple[float, ...]  # x y z roll pitch yaw of T_base_sensor (used with sensor_frame)
    publish_tf: bool
    input_reliability: str
    odom_queue_depth: int
    points_queue_depth: int
    publish_covariance: bool
    markers_period: float
    save_directory: str
    log_throttle: float
    warmup: bool
    compile_cache: str
    autostart: bool

    @property
    def cloud_frame(self) -> str:
        return self.sensor_frame or self.base_frame

    @property
    def reliable_inputs(self) -> bool:
        return self.input_reliability == "reliable"


BIG = 1e9
PARAMS: tuple[ParamSpec, ...] = (
    # frames, topics and QoS
    *filling(NodeConfig,
        ParamSpec("map_frame", "map", "Fixed frame of the optimised map and path (REP-105)."),
        ParamSpec("odom_frame", "odom", "Frame of the incoming odometry (its header.frame_id must match)."),
        ParamSpec("base_frame", "base_link", "Robot body frame (odometry child_frame_id)."),
        ParamSpec("sensor_frame", "", "Frame of the clouds; empty: clouds are in base_frame."),
        ParamSpec("sensor_extrinsic", [0.0] * 6,
                  "T_base_sensor as [x, y, z (m), roll, pitch, yaw (rad)]; used when sensor_frame is set."),
        ParamSpec("publish_tf", True, "Publish the map->odom correction on /tf."),
        ParamSpec("input_reliability", "best_effort",
                  "QoS reliability of the odom and points subscriptions: best_effort (sensor data) or reliable.",
                  choices=("best_effort", "reliable")),
        ParamSpec("odom_queue_depth", 200, "Subscription queue depth for odometry (messages).", 1, 100000),
        ParamSpec("points_queue_depth", 20, "Subscription queue depth for clouds (messages).", 1, 100000),
    ),
    # sensor class
    *filling(PipelineConfig,
        ParamSpec("planar", "auto", "Planar mode: on (x, y, yaw only; z, roll, pitch from odometry: 2D lasers, ground "
                  "robots), off (full SE(3)) or auto (on when the first keyframe's cloud lies in one level plane).",
                  choices=PLANAR_MODES),
    ),
    *filling(KeyframeConfig,
        ParamSpec("keyframe.min_translation", 0.5, "New keyframe after this travel since the last one (m).", 0.0, BIG),
        ParamSpec("keyframe.min_rotation", 0.25, "New keyframe after this rotation since the last one (rad).", 0.0, 6.3),
        ParamSpec("keyframe.track_between", False, "Also register the clouds between keyframes to the window's map, "
                  "for the final trajectory (saved, scored) only: the graph is the same either way; one registration "
                  "per cloud (2D laser: about 4 ms)."),
    ),
    *filling(VoxelConfig,
        ParamSpec("voxel.size", 0.5, "Voxel edge length (m).", 0.01, 100.0),
        ParamSpec("voxel.min_range", 0.3, "Points closer to the sensor are ignored (m).", 0.0, BIG),
        ParamSpec("voxel.max_range", 30.0, "Points farther from the sensor are ignored (m).", 0.01, BIG),
    ),
    *filling(WindowConfig,
        ParamSpec("window.size", 20, "Keyframes optimised together; older ones are frozen into the map.", 2, 1000),
        ParamSpec("window.max_voxels", 4096, "Capacity of active voxels in the window (fixed: sets compiled shapes).",
                  1, 10_000_000),
        ParamSpec("window.max_observations", 32768,
                  "Capacity of keyframe-voxel observations in the window (fixed: sets compiled shapes).", 1, 100_000_000),
        ParamSpec("window.reassociations", 0, "Re-voxelise the new cloud under the refined pose and re-solve, per keyframe.",
                  0, 10),
        ParamSpec("window.frozen_weight", 2.0,
                  "Prior tying an active voxel to its frozen points, in observations of its surface (0: none).", 0.0, BIG),
        ParamSpec("window.kernel_scale", 3.0, "Cauchy kernel scale of the whitened voxel observations.", 1e-6, BIG),
        ParamSpec("solver.prefix_fraction", 0.0, "The window's solve also runs on the graph cut to this share of the "
                  "voxel and observation capacities while the voxels and observations in use fit in it (a second, "
                  "smaller program, compiled in the background once the node is active; 0: off; 0.5 for planar "
                  "lasers, whose windows use a small part of their capacities).", 0.0, 0.9,
                  field="prefix_fraction"),
    ),
    # the window's solver (LMConfig keeps the field names it shares with the other solvers' configs)
    *filling(LMConfig,
        ParamSpec("solver.max_iterations", 15, "Levenberg-Marquardt iterations per solve.", 1, 1000, field="max_iters"),
        ParamSpec("solver.linear_solver", "schur", "Linear solver: schur, dense or pcg.",
                  choices=("schur", "dense", "pcg")),
        ParamSpec("solver.relative_tolerance", 1e-6, "A solve stops when a step lowers the cost by less than this "
                  "share of it.", 0.0, 1.0, field="rel_tol"),
    ),
    # observation model of voxel surfaces
    *filling(SurfaceConfig,
        ParamSpec("surface.point_sigma", 0.03, "Noise of a keyframe's centroid across a voxel's surface (m).", 1e-9, BIG),
        ParamSpec("surface.thickness", 0.03, "Point spreads below this are surface roughness, above it extent (m).",
                  0.0, BIG),
        ParamSpec("surface.slide", 1000.0, "Share of a voxel's spread along its surface that a centroid may slide by "
                  "(viewpoint bias); 0: centroids are exact.", 0.0, BIG),
        ParamSpec("surface.min_points", 4, "Voxels with fewer points get an isotropic spread (no surface normal).",
                  3, 1_000_000),
        ParamSpec("surface.count_saturation", 5.0, "An observation of n points weighs n / (n + this).", 0.0, BIG),
    ),
    # scan-to-map registration of each new keyframe
    *filling(RegistrationConfig,
        ParamSpec("registration.enabled", True, "Register each new keyframe to the map before inserting it."),
        ParamSpec("registration.max_iterations", 20, "Gauss-Newton iterations of one registration.", 1, 1000),
        ParamSpec("registration.max_correspondence", 1.0, "Scan points farther from every voxel mean are unmatched (m).",
                  1e-6, BIG),
        ParamSpec("registration.kernel_scale", 3.0, "Cauchy kernel scale of the whitened point residuals.", 1e-6, BIG),
        ParamSpec("registration.degeneracy_ratio", 0.5, "Directions where the scan adds less information than this "
                  "times the odometry's keep the odometry prediction.", 0.0, BIG),
        ParamSpec("registration.max_correction_sigma", 6.0, "A registration moving the odometry prediction by more "
                  "than this many odometry sigmas is not believed (the prediction is kept and counted).", 1e-6, BIG),
        ParamSpec("registration.downsample", 0.25, "Grid (m) the scan is thinned to before registering; 0: all points.",
                  0.0, BIG),
        ParamSpec("registration.min_matches", 20, "Fewer matched points: keep the odometry prediction.", 1, 100_000_000),
    ),
    # noise model
    *filling(WindowConfig,
        ParamSpec("noise.odom_sigma_translation", 0.05, "Odometry increment sigma between keyframes (m).", 1e-9, BIG),
        ParamSpec("noise.odom_sigma_rotation", 0.02, "Odometry increment sigma between keyframes (rad).", 1e-9, BIG),
        ParamSpec("noise.odom_translation_scale", 0.0, "Added odometry translation sigma per metre travelled (m/m).",
                  0.0, BIG),
        ParamSpec("noise.odom_translation_per_turn", 0.0, "Added odometry translation sigma per radian turned (m/rad): "
                  "wheels slip while turning.", 0.0, BIG),
        ParamSpec("noise.odom_rotation_scale", 0.0, "Added odometry rotation sigma per radian turned (rad/rad).",
                  0.0, BIG),
        ParamSpec("noise.odom_scale_memory", 0.0, "Estimate the wheel odometry's distance scale over about this much "
                  "travel (m) and apply it to the odometry increments (worn wheels read long or short); 0: off. "
                  "Experimental: see the README before turning it on.",
                  0.0, BIG),
        ParamSpec("noise.odom_scale_limit", 0.1, "The estimated odometry scale stays within 1 +- this.", 0.0, 0.99),
        ParamSpec("noise.anchor_sigma", 0.001, "Prior sigma holding the oldest window keyframe (m and rad).", 1e-12, BIG),
    ),
    # input checks
    *filling(InputConfig,
        ParamSpec("inputs.max_pending_clouds", 100,
                  "Clouds allowed to wait for odometry covering their stamps; beyond, the oldest is dropped.", 1, 100000),
        ParamSpec("inputs.max_linear_speed", 10.0, "Odometry faster than this between two messages is a jump (m/s).",
                  1e-6, BIG),
        ParamSpec("inputs.max_angular_speed", 6.0, "Odometry faster than this between two messages is a jump (rad/s).",
                  1e-6, BIG),
        ParamSpec("inputs.min_points", 10, "Clouds with fewer valid points are not used.", 1, 100_000_000),
        ParamSpec("inputs.odom_buffer", 4000, "Odometry messages kept for interpolation.", 2, 10_000_000),
    ),
    # saved maps and localization
    *filling(PipelineConfig,
        ParamSpec("map_file", "", "Map to start from (a map.npz written by ~/save_map); empty: start with no map."),
        ParamSpec("mode", "mapping", "mapping (extend the map) or localization (track against map_file without "
                  "adding to it).", choices=MODES),
        ParamSpec("initial_pose", [0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "With map_file: T_map_body of the first keyframe "
                  "[x, y, z (m), roll, pitch, yaw (rad)], refined by registration to the map."),
        ParamSpec("initial_pose_sigma", [0.5, 0.2], "How well initial_pose is known [m, rad]: the prior of the first "
                  "keyframe's registration."),
    ),
    # global pose graph and loop closure
    *filling(LoopConfig,
        ParamSpec("loop.enabled", False, "Close loops: verified loop edges in the global pose graph of every keyframe "
                  "that left the window (solved in a thread of its own), then the window and map re-based; the window "
                  "tracks only the last loop.min_interval seconds of map (see README)."),
        ParamSpec("loop.capacity", 8192, "Keyframes in the global graph; older ones are merged away (frozen, no "
                  "longer loop candidates): it bounds memory and the longest loop that can close.", 4, 10_000_000),
        ParamSpec("loop.initial_capacity", 2048, "Compiled size of the global graph at start (keyframes); it doubles "
                  "as the graph grows, up to loop.capacity, each time recompiling its solve in the loop thread (a "
                  "solve's cost grows with this size).", 4, 10_000_000),
        ParamSpec("loop.min_interval", 30.0, "A loop candidate is at least this much older (s); with loop closure the "
                  "window tracks the keyframes of this last span only.", 0.0, BIG),
        ParamSpec("loop.horizon_travel", 0.0, "With loop closure the window also tracks the keyframes of this last "
                  "travel (m), however old: a robot wandering in one room keeps tracking it.", 0.0, BIG),
        ParamSpec("loop.search_radius", 2.0, "Candidates within this distance of the current estimate (m) ...", 1e-6, BIG),
        ParamSpec("loop.drift_per_metre", 0.04, "... plus this much per metre travelled since the candidate (m/m).",
                  0.0, BIG),
        ParamSpec("loop.drift_rotation_per_metre", 0.006, "Heading drift allowed per metre travelled between a "
                  "loop's two keyframes (rad/m): a loop turning the map by more (3 sigma, with the chain's own "
                  "uncertainty) is refused.", 0.0, BIG),
        ParamSpec("loop.max_candidates", 3, "Candidates verified per attempt (nearest first).", 1, 1000),
        ParamSpec("loop.min_spacing", 1.0, "Travel between two loop attempts (m).", 0.0, BIG),
        ParamSpec("loop.submap_keyframes", 10, "Keyframes on each side of a candidate in its submap (the scan "
                  "verified against it: the keyframes of the last 5 m of travel).", 0, 10000),
        ParamSpec("loop.min_overlap", 0.5, "Share of the scan a verified loop must match (a second "
                  "agreeing loop, the drift gate and the kernel guard against a wrong one).", 0.0, 1.0),
        ParamSpec("loop.max_rmse", 1.3, "RMS whitened residual a verified loop may have.", 1e-6, BIG),
        ParamSpec("loop.sigma_translation", 0.05, "Sigma of a loop edge (m).", 1e-9, BIG),
        ParamSpec("loop.sigma_rotation", 0.01, "Sigma of a loop edge (rad).", 1e-9, BIG),
        ParamSpec("loop.kernel_scale", 3.0, "Cauchy kernel scale of loop edges (whitened).", 1e-6, BIG),
        ParamSpec("loop.max_residual", 5.0, "A loop edge left with a larger whitened error after the global solve is "
                  "removed.", 1e-6, BIG),
        ParamSpec("loop.chain_sigma_translation", 0.005, "Sigma of the window's relative pose between consecutive "
                  "keyframes in the global graph (m) ...", 1e-9, BIG),
        ParamSpec("loop.chain_translation_scale", 0.01, "... plus this per metre between them (m/m).", 0.0, BIG),
        ParamSpec("loop.chain_sigma_rotation", 0.001, "Rotation sigma of the chain edges (rad) ...", 1e-9, BIG),
        ParamSpec("loop.chain_rotation_scale", 0.01, "... plus this per radian turned (rad/rad).", 0.0, BIG),
        ParamSpec("loop.partial", False, "Also accept loops whose registration pins every direction but one "
                  "translation (a corridor: lateral position and heading, not the position along it); their edges "
                  "constrain only the pinned directions."),
    ),
    # outputs and start-up
    *filling(NodeConfig,
        ParamSpec("output.publish_covariance", True, "Fill ~/odometry covariance from the window's Hessian.",),
        ParamSpec("output.markers_period", 1.0, "Minimum wall time between ~/voxels and ~/map updates (s).", 0.0, BIG),
        ParamSpec("output.save_directory", "out/map", "Where ~/save_map writes when the request names no directory."),
        ParamSpec("output.log_throttle", 5.0, "Minimum wall time between two warnings of one kind (s).", 0.0, BIG),
        ParamSpec("warmup", True, "Compile the solver on a synthetic keyframe before subscribing."),
        ParamSpec("compile_cache", "auto", "Persistent XLA compile cache directory: a restarted node loads its compiled "
                  "solver instead of compiling it; auto: $DSG_JIT_ROS_CACHE or ~/.cache/dsg_jit_ros/xla; empty: off."),
        ParamSpec("autostart", True, "Configure and activate at start-up; false: stay unconfigured until lifecycle "
                  "transitions arrive on ~/change_state (lifecycle_msgs/ChangeState)."),
    ),
)
SPECS = {s.name: s for s in PARAMS}
BUILT_IN = ("use_sim_time",)  # declared by rclpy itself; a parameter file may set it


def _extrinsic(values: tuple[float, ...]) -> tuple[float, ...]:
    if len(values) != 6 or not np.all(np.isfinite(values)):
        raise ParameterError(f"parameter 'sensor_extrinsic' needs 6 finite numbers [x y z roll pitch yaw], got {list(values)}")
    return tuple(from_xyz_rpy(values).reshape(-1))


def build_configs(v: dict[str, object]) -> tuple[NodeConfig, PipelineConfig]:
    """Validate a full set of values (name -> value) and build the configuration dataclasses.

    Ranges and choices come from the table; the checks across parameters and the
    fields derived from several of them are the explicit part below."""
    given = field_values(PARAMS, v)  # cast, range and choices checked
    for name in ("map_frame", "odom_frame", "base_frame"):
        if not v[name]:
            raise ParameterError(f"parameter '{name}' must not be empty")
    if len({v["map_frame"], v["odom_frame"], v["base_frame"]}) != 3:
        raise ParameterError("map_frame, odom_frame and base_frame must be three different frames")
    node = given[NodeConfig]
    # derived: the sensor's pose on the body, and covariance only when it is published
    given[PipelineConfig]["t_body_sensor"] = (_extrinsic(node["sensor_extrinsic"]) if node["sensor_frame"]
                                              else tuple(np.eye(4).reshape(-1)))
    given[InputConfig]["compute_covariance"] = node["publish_covariance"]
    try:
        return assemble(NodeConfig, given), assemble(PipelineConfig, given)
    except ValueError as err:  # a dataclass's own checks (e.g. min_range < max_range)
        raise ParameterError(str(err)) from err


def check_names(names, source: str) -> None:
    """ParameterError for the first name that is not declared, naming the closest declared one."""
    for name in names:
        if name not in SPECS and name not in BUILT_IN:
            raise unknown_name_error(name, SPECS, source)


def load_pipeline_config(path: str | Path | None = None, overrides=()) -> PipelineConfig:
    """The pipeline configuration of the defaults, a parameter file and ``name=value``
    overrides (later wins), without ROS."""
    from dsg_jit_ros.param_files import parse_override, read_param_file

    values = {s.name: s.default for s in PARAMS}
    if path is not None:
        values.update(read_param_file(path))
    extra = dict(parse_override(o) for o in overrides)
    check_names(extra, "override")
    values.update(extra)
    return build_configs(values)[1]
