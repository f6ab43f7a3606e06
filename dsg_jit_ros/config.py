"""The node's parameters, declared once: name, default, range and description.

This table (``PARAMS``) is what the ROS node declares (``ros.params``), what
``config/params.yaml`` lists with the same defaults (a test keeps them in step),
and what the sensor-class files (``config/planar_laser.yaml``,
``config/lidar_3d.yaml``) override.  ``build_configs`` validates a full set of
values and builds the frozen configuration dataclasses of the ROS-free pipeline;
``load_pipeline_config`` does the same from a parameter file without ROS (the
benchmarks and tests).  A value outside its range, an unknown name or an
inconsistent combination raises ``ParameterError`` with a sentence naming it.
No ROS here.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from dsg_jit_ros.mapping.global_graph import LoopConfig
from dsg_jit_ros.mapping.keyframes import KeyframeConfig
from dsg_jit_ros.mapping.pipeline import PLANAR_MODES, InputConfig, PipelineConfig
from dsg_jit_ros.mapping.registration import RegistrationConfig
from dsg_jit_ros.mapping.voxel_map import SurfaceConfig
from dsg_jit_ros.mapping.voxelize import VoxelConfig
from dsg_jit_ros.mapping.window import WindowConfig
from dsg_jit_ros.optimization.solvers import LMConfig


class ParameterError(ValueError):
    """A parameter value the node cannot run with."""


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: object
    description: str
    low: float | None = None
    high: float | None = None


BIG = 1e9
PARAMS: tuple[ParamSpec, ...] = (
    # frames and topics
    ParamSpec("map_frame", "map", "Fixed frame of the optimised map and path (REP-105)."),
    ParamSpec("odom_frame", "odom", "Frame of the incoming odometry (its header.frame_id must match)."),
    ParamSpec("base_frame", "base_link", "Robot body frame (odometry child_frame_id)."),
    ParamSpec("sensor_frame", "", "Frame of the clouds; empty: clouds are in base_frame."),
    ParamSpec("sensor_extrinsic", [0.0] * 6,
              "T_base_sensor as [x, y, z (m), roll, pitch, yaw (rad)]; used when sensor_frame is set."),
    ParamSpec("publish_tf", True, "Publish the map->odom correction on /tf."),
    ParamSpec("input_reliability", "best_effort",
              "QoS reliability of the odom and points subscriptions: best_effort (sensor data) or reliable."),
    ParamSpec("odom_queue_depth", 200, "Subscription queue depth for odometry (messages).", 1, 100000),
    ParamSpec("points_queue_depth", 20, "Subscription queue depth for clouds (messages).", 1, 100000),
    # sensor class
    ParamSpec("planar", "auto", "Planar mode: on (x, y, yaw only; z, roll, pitch from odometry: 2D lasers, ground "
              "robots), off (full SE(3)) or auto (on when the first keyframe's cloud lies in one level plane)."),
    # keyframes and voxels
    ParamSpec("keyframe.min_translation", 0.5, "New keyframe after this travel since the last one (m).", 0.0, BIG),
    ParamSpec("keyframe.min_rotation", 0.25, "New keyframe after this rotation since the last one (rad).", 0.0, 6.3),
    ParamSpec("voxel.size", 0.5, "Voxel edge length (m).", 0.01, 100.0),
    ParamSpec("voxel.min_range", 0.3, "Points closer to the sensor are ignored (m).", 0.0, BIG),
    ParamSpec("voxel.max_range", 30.0, "Points farther from the sensor are ignored (m).", 0.01, BIG),
    # window and solver
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
    ParamSpec("solver.max_iterations", 15, "Levenberg-Marquardt iterations per solve.", 1, 1000),
    ParamSpec("solver.linear_solver", "schur", "Linear solver: schur, dense or pcg."),
    ParamSpec("solver.relative_tolerance", 1e-6, "A solve stops when a step lowers the cost by less than this "
              "share of it.", 0.0, 1.0),
    # observation model of voxel surfaces
    ParamSpec("surface.point_sigma", 0.03, "Noise of a keyframe's centroid across a voxel's surface (m).", 1e-9, BIG),
    ParamSpec("surface.thickness", 0.03, "Point spreads below this are surface roughness, above it extent (m).",
              0.0, BIG),
    ParamSpec("surface.slide", 1000.0, "Share of a voxel's spread along its surface that a centroid may slide by "
              "(viewpoint bias); 0: centroids are exact.", 0.0, BIG),
    ParamSpec("surface.min_points", 4, "Voxels with fewer points get an isotropic spread (no surface normal).",
              3, 1_000_000),
    ParamSpec("surface.count_saturation", 5.0, "An observation of n points weighs n / (n + this).", 0.0, BIG),
    # scan-to-map registration of each new keyframe
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
    # noise model
    ParamSpec("noise.odom_sigma_translation", 0.05, "Odometry increment sigma between keyframes (m).", 1e-9, BIG),
    ParamSpec("noise.odom_sigma_rotation", 0.02, "Odometry increment sigma between keyframes (rad).", 1e-9, BIG),
    ParamSpec("noise.odom_translation_scale", 0.0, "Added odometry translation sigma per metre travelled (m/m).",
              0.0, BIG),
    ParamSpec("noise.odom_translation_per_turn", 0.0, "Added odometry translation sigma per radian turned (m/rad): "
              "wheels slip while turning.", 0.0, BIG),
    ParamSpec("noise.odom_rotation_scale", 0.0, "Added odometry rotation sigma per radian turned (rad/rad).",
              0.0, BIG),
    ParamSpec("noise.anchor_sigma", 0.001, "Prior sigma holding the oldest window keyframe (m and rad).", 1e-12, BIG),
    # input checks
    ParamSpec("inputs.max_pending_clouds", 100,
              "Clouds allowed to wait for odometry covering their stamps; beyond, the oldest is dropped.", 1, 100000),
    ParamSpec("inputs.max_linear_speed", 10.0, "Odometry faster than this between two messages is a jump (m/s).",
              1e-6, BIG),
    ParamSpec("inputs.max_angular_speed", 6.0, "Odometry faster than this between two messages is a jump (rad/s).",
              1e-6, BIG),
    ParamSpec("inputs.min_points", 10, "Clouds with fewer valid points are not used.", 1, 100_000_000),
    ParamSpec("inputs.odom_buffer", 4000, "Odometry messages kept for interpolation.", 2, 10_000_000),
    # saved maps and localization
    ParamSpec("map_file", "", "Map to start from (a map.npz written by ~/save_map); empty: start with no map."),
    ParamSpec("mode", "mapping", "mapping (extend the map) or localization (track against map_file without "
              "adding to it)."),
    ParamSpec("initial_pose", [0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "With map_file: T_map_body of the first keyframe "
              "[x, y, z (m), roll, pitch, yaw (rad)], refined by registration to the map."),
    ParamSpec("initial_pose_sigma", [0.5, 0.2], "How well initial_pose is known [m, rad]: the prior of the first "
              "keyframe's registration."),
    # global pose graph and loop closure
    ParamSpec("loop.enabled", False, "Close loops: verified loop edges in the global pose graph of every keyframe "
              "that left the window (solved in a thread of its own), then the window and map re-based; the window "
              "tracks only the last loop.min_interval seconds of map (see README)."),
    ParamSpec("loop.capacity", 2048, "Keyframes in the global graph (fixed: sets compiled shapes; the solve's cost "
              "grows with it); older ones are merged away.", 4, 10_000_000),
    ParamSpec("loop.min_interval", 30.0, "A loop candidate is at least this much older (s); with loop closure the "
              "window tracks the keyframes of this last span only.", 0.0, BIG),
    ParamSpec("loop.search_radius", 2.0, "Candidates within this distance of the current estimate (m) ...", 1e-6, BIG),
    ParamSpec("loop.drift_per_metre", 0.02, "... plus this much per metre travelled since the candidate (m/m).",
              0.0, BIG),
    ParamSpec("loop.max_candidates", 3, "Candidates verified per attempt (nearest first).", 1, 1000),
    ParamSpec("loop.min_spacing", 1.0, "Travel between two loop attempts (m).", 0.0, BIG),
    ParamSpec("loop.submap_keyframes", 10, "Keyframes on each side of a candidate in its submap, and before the "
              "current one in the scan verified against it.", 0, 10000),
    ParamSpec("loop.min_overlap", 0.6, "Share of the scan a verified loop must match.", 0.0, 1.0),
    ParamSpec("loop.max_rmse", 1.0, "RMS whitened residual a verified loop may have.", 1e-6, BIG),
    ParamSpec("loop.sigma_translation", 0.05, "Sigma of a loop edge (m).", 1e-9, BIG),
    ParamSpec("loop.sigma_rotation", 0.01, "Sigma of a loop edge (rad).", 1e-9, BIG),
    ParamSpec("loop.kernel_scale", 1.0, "Cauchy kernel scale of loop edges (whitened).", 1e-6, BIG),
    ParamSpec("loop.max_residual", 5.0, "A loop edge left with a larger whitened error after the global solve is "
              "removed.", 1e-6, BIG),
    ParamSpec("loop.chain_sigma_translation", 0.005, "Sigma of the window's relative pose between consecutive "
              "keyframes in the global graph (m) ...", 1e-9, BIG),
    ParamSpec("loop.chain_translation_scale", 0.01, "... plus this per metre between them (m/m).", 0.0, BIG),
    ParamSpec("loop.chain_sigma_rotation", 0.001, "Rotation sigma of the chain edges (rad) ...", 1e-9, BIG),
    ParamSpec("loop.chain_rotation_scale", 0.01, "... plus this per radian turned (rad/rad).", 0.0, BIG),
    # outputs
    ParamSpec("output.publish_covariance", True, "Fill ~/odometry covariance from the window's Hessian.",),
    ParamSpec("output.markers_period", 1.0, "Minimum wall time between ~/voxels and ~/map updates (s).", 0.0, BIG),
    ParamSpec("output.save_directory", "out/map", "Where ~/save_map writes when the request names no directory."),
    ParamSpec("output.log_throttle", 5.0, "Minimum wall time between two warnings of one kind (s).", 0.0, BIG),
    ParamSpec("warmup", True, "Compile the solver on a synthetic keyframe before subscribing."),
    ParamSpec("compile_cache", "auto", "Persistent XLA compile cache directory: a restarted node loads its compiled "
              "solver instead of compiling it; auto: $DSG_JIT_ROS_CACHE or ~/.cache/dsg_jit_ros/xla; empty: off."),
    ParamSpec("autostart", True, "Configure and activate at start-up; false: stay unconfigured until lifecycle "
              "transitions arrive on ~/change_state (lifecycle_msgs/ChangeState)."),
)
SPECS = {s.name: s for s in PARAMS}


@dataclass(frozen=True)
class NodeConfig:
    """What the ROS edge needs beyond the pipeline (frames, QoS, outputs)."""

    map_frame: str
    odom_frame: str
    base_frame: str
    sensor_frame: str
    publish_tf: bool
    reliable_inputs: bool
    odom_queue_depth: int
    points_queue_depth: int
    publish_covariance: bool
    markers_period: float
    save_directory: str
    log_throttle: float
    warmup: bool
    compile_cache: str = "auto"

    @property
    def cloud_frame(self) -> str:
        return self.sensor_frame or self.base_frame


def _extrinsic(values: list[float]) -> tuple[float, ...]:
    if len(values) != 6 or not np.all(np.isfinite(values)):
        raise ParameterError(f"parameter 'sensor_extrinsic' needs 6 finite numbers [x y z roll pitch yaw], got {values}")
    t = np.eye(4)
    t[:3, :3] = Rotation.from_euler("xyz", values[3:]).as_matrix()
    t[:3, 3] = values[:3]
    return tuple(t.reshape(-1))


def build_configs(v: dict[str, object]) -> tuple[NodeConfig, PipelineConfig]:
    """Validate the values and build the configuration dataclasses."""
    for name in ("map_frame", "odom_frame", "base_frame"):
        if not v[name]:
            raise ParameterError(f"parameter '{name}' must not be empty")
    if len({v["map_frame"], v["odom_frame"], v["base_frame"]}) != 3:
        raise ParameterError("map_frame, odom_frame and base_frame must be three different frames")
    if v["input_reliability"] not in ("best_effort", "reliable"):
        raise ParameterError(f"parameter 'input_reliability' must be best_effort or reliable, got {v['input_reliability']!r}")
    if v["planar"] not in PLANAR_MODES:
        raise ParameterError(f"parameter 'planar' must be one of {', '.join(PLANAR_MODES)}, got {v['planar']!r}")
    if v["solver.linear_solver"] not in ("schur", "dense", "pcg"):
        raise ParameterError(f"parameter 'solver.linear_solver' must be schur, dense or pcg, got {v['solver.linear_solver']!r}")
    node_cfg = NodeConfig(
        map_frame=v["map_frame"], odom_frame=v["odom_frame"], base_frame=v["base_frame"],
        sensor_frame=v["sensor_frame"], publish_tf=bool(v["publish_tf"]),
        reliable_inputs=v["input_reliability"] == "reliable",
        odom_queue_depth=int(v["odom_queue_depth"]), points_queue_depth=int(v["points_queue_depth"]),
        publish_covariance=bool(v["output.publish_covariance"]), markers_period=float(v["output.markers_period"]),
        save_directory=str(v["output.save_directory"]), log_throttle=float(v["output.log_throttle"]),
        warmup=bool(v["warmup"]), compile_cache=str(v["compile_cache"]),
    )
    try:
        pipeline_cfg = PipelineConfig(
            window=WindowConfig(
                window_size=int(v["window.size"]),
                voxel=VoxelConfig(float(v["voxel.size"]), float(v["voxel.min_range"]), float(v["voxel.max_range"])),
                max_voxels=int(v["window.max_voxels"]),
                max_observations=int(v["window.max_observations"]),
                odom_sigma_translation=float(v["noise.odom_sigma_translation"]),
                odom_sigma_rotation=float(v["noise.odom_sigma_rotation"]),
                odom_translation_scale=float(v["noise.odom_translation_scale"]),
                odom_rotation_scale=float(v["noise.odom_rotation_scale"]),
                odom_translation_per_turn=float(v["noise.odom_translation_per_turn"]),
                anchor_sigma=float(v["noise.anchor_sigma"]),
                surface=SurfaceConfig(
                    point_sigma=float(v["surface.point_sigma"]), thickness=float(v["surface.thickness"]),
                    slide=float(v["surface.slide"]),
                    min_points=int(v["surface.min_points"]), count_saturation=float(v["surface.count_saturation"])),
                frozen_weight=float(v["window.frozen_weight"]),
                kernel_scale=float(v["window.kernel_scale"]),
                reassociations=int(v["window.reassociations"]),
                registration=RegistrationConfig(
                    enabled=bool(v["registration.enabled"]), max_iterations=int(v["registration.max_iterations"]),
                    max_correspondence=float(v["registration.max_correspondence"]),
                    kernel_scale=float(v["registration.kernel_scale"]),
                    degeneracy_ratio=float(v["registration.degeneracy_ratio"]),
                    max_correction_sigma=float(v["registration.max_correction_sigma"]),
                    downsample=float(v["registration.downsample"]),
                    min_matches=int(v["registration.min_matches"])),
                lm=LMConfig(linear_solver=str(v["solver.linear_solver"]), max_iters=int(v["solver.max_iterations"]),
                            rel_tol=float(v["solver.relative_tolerance"])),
            ),
            keyframe=KeyframeConfig(float(v["keyframe.min_translation"]), float(v["keyframe.min_rotation"])),
            inputs=InputConfig(
                odom_buffer=int(v["inputs.odom_buffer"]),
                max_pending_clouds=int(v["inputs.max_pending_clouds"]),
                max_linear_speed=float(v["inputs.max_linear_speed"]),
                max_angular_speed=float(v["inputs.max_angular_speed"]), min_points=int(v["inputs.min_points"]),
                compute_covariance=node_cfg.publish_covariance,
            ),
            t_body_sensor=_extrinsic(list(v["sensor_extrinsic"])) if v["sensor_frame"] else tuple(np.eye(4).reshape(-1)),
            planar=str(v["planar"]),
            mode=str(v["mode"]), map_file=str(v["map_file"]),
            initial_pose=tuple(float(x) for x in v["initial_pose"]),
            initial_pose_sigma=tuple(float(x) for x in v["initial_pose_sigma"]),
            loop=LoopConfig(
                enabled=bool(v["loop.enabled"]), capacity=int(v["loop.capacity"]),
                min_interval=float(v["loop.min_interval"]), search_radius=float(v["loop.search_radius"]),
                drift_per_metre=float(v["loop.drift_per_metre"]), max_candidates=int(v["loop.max_candidates"]),
                min_spacing=float(v["loop.min_spacing"]), submap_keyframes=int(v["loop.submap_keyframes"]),
                min_overlap=float(v["loop.min_overlap"]), max_rmse=float(v["loop.max_rmse"]),
                loop_sigma_translation=float(v["loop.sigma_translation"]),
                loop_sigma_rotation=float(v["loop.sigma_rotation"]), kernel_scale=float(v["loop.kernel_scale"]),
                max_residual=float(v["loop.max_residual"]),
                chain_sigma_translation=float(v["loop.chain_sigma_translation"]),
                chain_translation_scale=float(v["loop.chain_translation_scale"]),
                chain_sigma_rotation=float(v["loop.chain_sigma_rotation"]),
                chain_rotation_scale=float(v["loop.chain_rotation_scale"])),
        )
    except ValueError as err:
        raise ParameterError(str(err)) from err
    return node_cfg, pipeline_cfg


def flatten(doc: dict, prefix: str = "") -> dict[str, object]:
    """Nested parameter dict -> dotted names (``{"window": {"size": 3}}`` -> ``{"window.size": 3}``)."""
    out: dict[str, object] = {}
    for k, v in doc.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_names(names, source: str) -> None:
    """ParameterError for the first name that is not declared, naming the closest declared one."""
    for name in names:
        if name not in SPECS and name != "use_sim_time":
            close = difflib.get_close_matches(name, list(SPECS), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ParameterError(f"{source}: unknown parameter '{name}'{hint}")


def read_param_file(path: str | Path) -> dict[str, object]:
    """Dotted name -> value of a ROS 2 parameter file (``/**`` or node-name sections)."""
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ParameterError(f"cannot read parameter file {path}: {err}") from err
    values: dict[str, object] = {}
    for section in (doc or {}).values():
        if isinstance(section, dict) and "ros__parameters" in section:
            values.update(flatten(section["ros__parameters"] or {}))
    check_names(values, str(path))
    return values


def _parse_override(text: str):
    import yaml

    name, sep, value = text.partition("=")
    if not sep:
        raise ParameterError(f"override {text!r} is not name=value")
    parsed = yaml.safe_load(value)
    if isinstance(parsed, str):  # YAML 1.1 reads "1e-4" as a string
        try:
            parsed = float(parsed)
        except ValueError:
            pass
    return name.strip(), parsed


def load_pipeline_config(path: str | Path | None = None, overrides=()) -> PipelineConfig:
    """The pipeline configuration of the defaults, a parameter file and ``name=value``
    overrides (later wins), without ROS."""
    values = {s.name: s.default for s in PARAMS}
    if path is not None:
        values.update(read_param_file(path))
    extra = dict(_parse_override(o) for o in overrides)
    check_names(extra, "override")
    values.update(extra)
    for name, value in values.items():
        spec = SPECS.get(name)
        if spec is not None and spec.low is not None and not spec.low <= value <= spec.high:
            raise ParameterError(f"parameter '{name}' = {value} is outside [{spec.low}, {spec.high}]")
    return build_configs(values)[1]


def render_param_file(values: dict[str, object] | None = None, header: str = "") -> str:
    """A ROS 2 parameter file (``/**: ros__parameters:``) of ``values`` (default: every
    declared parameter at its default), grouped by prefix, each with its description."""
    import yaml

    values = {s.name: s.default for s in PARAMS} if values is None else values
    lines = [f"# {h}" if h else "#" for h in header.splitlines()] + ["/**:", "  ros__parameters:"]
    group = None
    for spec in PARAMS:
        if spec.name not in values:
            continue
        head, _, leaf = spec.name.rpartition(".")
        if head != group:
            if head:
                lines += ["", f"    {head}:"]
            group = head
        indent = "      " if head else "    "
        rng = f" Range [{spec.low:g}, {spec.high:g}]." if spec.low is not None else ""
        lines.append(f"{indent}# {spec.description}{rng}")
        text = yaml.safe_dump({leaf: values[spec.name]}, default_flow_style=True, width=1000).strip()[1:-1]
        lines.append(f"{indent}{text}")
    return "\n".join(lines) + "\n"
