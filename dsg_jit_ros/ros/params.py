"""The node's parameters: one table of name, default, range and description.

Every parameter is declared read-only with its description and range (so
``ros2 param describe`` explains it), read once at start-up, and turned into the
frozen configuration dataclasses of the ROS-free pipeline.  A value outside its
range or an inconsistent combination raises ``ParameterError`` with a sentence
naming the parameter; the node stops on it.  ``config/params.yaml`` lists the
same names and defaults with comments (a test keeps the two in step).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterValueException
from rclpy.node import Node
from scipy.spatial.transform import Rotation

from dsg_jit_ros.mapping.keyframes import KeyframeConfig
from dsg_jit_ros.mapping.pipeline import InputConfig, PipelineConfig
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
    ParamSpec("window.reassociations", 1, "Re-voxelise the new cloud under the refined pose and re-solve, per keyframe.",
              0, 10),
    ParamSpec("solver.max_iterations", 15, "Levenberg-Marquardt iterations per solve.", 1, 1000),
    ParamSpec("solver.linear_solver", "schur", "Linear solver: schur, dense or pcg."),
    # noise model
    ParamSpec("noise.odom_sigma_translation", 0.05, "Odometry increment sigma between keyframes (m).", 1e-9, BIG),
    ParamSpec("noise.odom_sigma_rotation", 0.02, "Odometry increment sigma between keyframes (rad).", 1e-9, BIG),
    ParamSpec("noise.point_sigma", 0.1, "Sigma of one point in a voxel centroid (m); divided by sqrt(points).",
              1e-9, BIG),
    ParamSpec("noise.anchor_sigma", 0.001, "Prior sigma holding the oldest window keyframe (m and rad).", 1e-12, BIG),
    ParamSpec("noise.frozen_voxel_sigma", 0.05, "Prior sigma of a frozen voxel seen again (m).", 1e-9, BIG),
    # input checks
    ParamSpec("inputs.max_pending_clouds", 100,
              "Clouds allowed to wait for odometry covering their stamps; beyond, the oldest is dropped.", 1, 100000),
    ParamSpec("inputs.max_linear_speed", 10.0, "Odometry faster than this between two messages is a jump (m/s).",
              1e-6, BIG),
    ParamSpec("inputs.max_angular_speed", 6.0, "Odometry faster than this between two messages is a jump (rad/s).",
              1e-6, BIG),
    ParamSpec("inputs.min_points", 10, "Clouds with fewer valid points are not used.", 1, 100_000_000),
    ParamSpec("inputs.odom_buffer", 4000, "Odometry messages kept for interpolation.", 2, 10_000_000),
    # outputs
    ParamSpec("output.publish_covariance", True, "Fill ~/odometry covariance from the window's Hessian.",),
    ParamSpec("output.markers_period", 1.0, "Minimum wall time between ~/voxels and ~/map updates (s).", 0.0, BIG),
    ParamSpec("output.save_directory", "out/map", "Where ~/save_map writes when the request names no directory."),
    ParamSpec("output.log_throttle", 5.0, "Minimum wall time between two warnings of one kind (s).", 0.0, BIG),
    ParamSpec("warmup", True, "Compile the solver on a synthetic keyframe before subscribing."),
)


def _descriptor(spec: ParamSpec) -> ParameterDescriptor:
    desc = ParameterDescriptor(description=spec.description, read_only=True)
    if spec.low is not None:
        if isinstance(spec.default, int) and not isinstance(spec.default, bool):
            desc.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=0)]
        else:
            desc.floating_point_range = [FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high), step=0.0)]
    return desc


def declare_and_read(node: Node) -> dict[str, object]:
    """Declare every parameter on ``node`` and return name -> value."""
    values = {}
    for spec in PARAMS:
        try:
            param = node.declare_parameter(spec.name, spec.default, _descriptor(spec))
        except InvalidParameterValueException as err:
            raise ParameterError(f"parameter '{spec.name}': {err} (allowed: [{spec.low}, {spec.high}])") from err
        except Exception as err:  # wrong type from a params file or -p
            raise ParameterError(f"parameter '{spec.name}': {err}") from err
        values[spec.name] = param.value
    return values


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
    if v["solver.linear_solver"] not in ("schur", "dense", "pcg"):
        raise ParameterError(f"parameter 'solver.linear_solver' must be schur, dense or pcg, got {v['solver.linear_solver']!r}")
    node_cfg = NodeConfig(
        map_frame=v["map_frame"], odom_frame=v["odom_frame"], base_frame=v["base_frame"],
        sensor_frame=v["sensor_frame"], publish_tf=bool(v["publish_tf"]),
        reliable_inputs=v["input_reliability"] == "reliable",
        odom_queue_depth=int(v["odom_queue_depth"]), points_queue_depth=int(v["points_queue_depth"]),
        publish_covariance=bool(v["output.publish_covariance"]), markers_period=float(v["output.markers_period"]),
        save_directory=str(v["output.save_directory"]), log_throttle=float(v["output.log_throttle"]),
        warmup=bool(v["warmup"]),
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
                point_sigma=float(v["noise.point_sigma"]),
                anchor_sigma=float(v["noise.anchor_sigma"]),
                frozen_voxel_sigma=float(v["noise.frozen_voxel_sigma"]),
                reassociations=int(v["window.reassociations"]),
                lm=LMConfig(linear_solver=str(v["solver.linear_solver"]), max_iters=int(v["solver.max_iterations"]),
                            rel_tol=1e-6),
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
        )
    except ValueError as err:
        raise ParameterError(str(err)) from err
    return node_cfg, pipeline_cfg
