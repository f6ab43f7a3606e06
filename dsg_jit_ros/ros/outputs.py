"""What the SLAM node publishes: its lifecycle publishers and one method per output.

The node (``ros.slam_node``) decides *when* (per odometry message, per keyframe,
after a loop closure); this module decides *what*: the map-frame path of the
window's keyframes, ``~/odometry`` (odometry re-expressed in the map frame),
``/tf`` map -> odom (REP-105), the throttled voxel markers and ``~/map`` cloud,
``~/loop_closures`` and ``~/status``.  Message building itself stays in
``ros.convert`` (arrays <-> messages in one place).
"""

from __future__ import annotations

import time

import numpy as np
from nav_msgs.msg import Odometry, Path
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2
from visualization_msgs.msg import MarkerArray

from dsg_jit_ros.mapping.pipeline import KeyframeUpdate, SlamPipeline
from dsg_jit_ros.optimization.compile_count import compile_count
from dsg_jit_ros.ros import convert


class SlamOutputs:
    """The node's publishers (created inactive; the lifecycle enables them).

    ``cfg`` is the node's NodeConfig (frames, ``publish_tf``, ``markers_period`` in
    seconds); ``SlamStatus`` and ``TFMessage`` are the generated message classes.
    """

    def __init__(self, node, cfg, SlamStatus, TFMessage):
        self.cfg, self.SlamStatus, self.TFMessage = cfg, SlamStatus, TFMessage
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.path = node.create_lifecycle_publisher(Path, "~/path", 10)
        self.odometry = node.create_lifecycle_publisher(Odometry, "~/odometry", 50)
        self.markers = node.create_lifecycle_publisher(MarkerArray, "~/voxels", 1)
        self.map = node.create_lifecycle_publisher(PointCloud2, "~/map", latched)
        self.loops = node.create_lifecycle_publisher(MarkerArray, "~/loop_closures", latched)
        self.status = node.create_lifecycle_publisher(SlamStatus, "~/status", 10)
        self.tf = node.create_lifecycle_publisher(TFMessage, "/tf", 100) if cfg.publish_tf else None
        self._last_markers = -np.inf  # monotonic time of the last map / marker publication
        # ~/path's rows of the frozen keyframes, computed once: (the window's frozen-trajectory
        # list they came from, ``convert.pose_rows`` of its first len(rows) entries)
        self._frozen: tuple = (None, *_rows([]))

    @property
    def publishers(self) -> list:
        return [p for p in (self.path, self.odometry, self.markers, self.map, self.loops, self.status, self.tf)
                if p is not None]

    def map_changed(self) -> None:
        """Publish the map with the next keyframe, whatever the throttle (after a reset or load)."""
        self._last_markers = -np.inf

    def odometry_in_map(self, msg: Odometry, t_map_odom: np.ndarray, t_odom_body: np.ndarray,
                        covariance: np.ndarray | None) -> None:
        """``msg`` re-expressed in the map frame with the current correction, and the TF."""
        self.odometry.publish(convert.odometry_msg(msg, self.cfg.map_frame, t_map_odom @ t_odom_body, covariance))
        self.transform(t_map_odom, msg.header.stamp)

    def transform(self, t_map_odom: np.ndarray, stamp) -> None:
        """map -> odom on /tf (nothing when publish_tf is off)."""
        if self.tf is not None:
            tf = convert.transform_stamped(t_map_odom, self.cfg.map_frame, self.cfg.odom_frame, stamp)
            self.tf.publish(self.TFMessage(transforms=[tf]))

    def keyframe(self, pipeline: SlamPipeline, update: KeyframeUpdate) -> float:
        """TF, loop markers after a loop, the status, then ``~/path`` and the (throttled)
        map pictures (``~/voxels``, ``~/map``): visualisation, off the latency (the path
        grows with the run).

        Returns the keyframe's latency in milliseconds: cloud received -> status published.
        """
        stamp = convert.sec_to_stamp(update.stamp)
        self.transform(pipeline.t_map_odom, stamp)
        if update.loops_closed:
            self.loop_closures(pipeline, stamp)
        status = self._status(pipeline, update)
        status.header.stamp = stamp
        status.header.frame_id = self.cfg.map_frame
        status.latency_ms = (time.perf_counter() - update.received) * 1000.0
        self.status.publish(status)
        self.trajectory(pipeline, stamp)
        now = time.monotonic()
        if now - self._last_markers >= self.cfg.markers_period:
            self.voxel_map(pipeline, stamp)
            self._last_markers = now
        return status.latency_ms

    def trajectory(self, pipeline: SlamPipeline, stamp) -> None:
        """``~/path``: every keyframe's current T_map_body (after a loop closure, corrected),
        serialised with numpy (``convert.path_cdr``: 8.5 ms per 10,000 keyframes on a loaded
        machine, where PoseStamped objects took ~23 ms per 1,000 on a quiet one).  The
        frozen keyframes' poses change only when the window's frozen trajectory is replaced
        (a loop closure's re-base, a reset or load: a new list), so their rows (stamp,
        position, quaternion) are computed once and reused; only the window's keyframes are
        converted each time."""
        window = pipeline.window
        frozen = window.trajectory
        source, times, rows = self._frozen
        if source is not frozen or len(times) > len(frozen):
            times, rows = _rows([])
        if len(frozen) > len(times):
            new_times, new_rows = _rows(frozen[len(times):])
            times, rows = np.concatenate([times, new_times]), np.concatenate([rows, new_rows])
        self._frozen = (frozen, times, rows)
        live_times, live_rows = _rows(window.keyframe_poses[len(frozen):])
        self.path.publish(convert.path_cdr(np.concatenate([times, live_times]), np.concatenate([rows, live_rows]),
                                           self.cfg.map_frame, stamp))

    def _status(self, pipeline: SlamPipeline, update: KeyframeUpdate):
        s = update.stats
        dropped = list(pipeline.dropped_snapshot().items())
        loops = pipeline.loop_counts()
        return self.SlamStatus(
            graph_nodes=loops["graph_nodes"], loop_closures=loops["loop_closures"],
            loop_attempts=loops["loop_attempts"], loops_rejected=loops["loops_rejected"],
            global_solves=loops["global_solves"], global_solve_ms=float(loops["global_solve_ms"]),
            keyframes=update.keyframes, solve_ms=s.solve_ms, iterations=s.iterations,
            initial_cost=s.initial_cost, final_cost=s.final_cost, window_size=s.keyframes_in_window,
            active_voxels=s.active_voxels, frozen_voxels=s.frozen_voxels, factors=s.factors,
            compilations=compile_count(), compilations_after_warmup=update.compilations_after_warmup,
            dropped_reasons=[k for k, _ in dropped], dropped_counts=[int(v) for _, v in dropped],
        )

    def voxel_map(self, pipeline: SlamPipeline, stamp) -> None:
        """The whole map's voxel centres: CUBE_LIST markers and the latched ``~/map`` cloud."""
        centres = pipeline.map_centres()
        size = pipeline.cfg.window.voxel.size
        self.markers.publish(convert.voxel_markers(centres, size, self.cfg.map_frame, stamp))
        self.map.publish(convert.xyz_to_pointcloud2(centres, self.cfg.map_frame, stamp))

    def loop_closures(self, pipeline: SlamPipeline, stamp) -> None:
        """A line between the keyframes of every loop edge (latched)."""
        positions, pairs = pipeline.loop_edges
        self.loops.publish(convert.loop_markers(positions, pairs, self.cfg.map_frame, stamp))


def _rows(trajectory: list) -> tuple[np.ndarray, np.ndarray]:
    """``convert.pose_rows`` of a list of (stamp s, T_map_body 4x4)."""
    if not trajectory:
        return np.zeros((0, 2), dtype=np.int64), np.zeros((0, 7))
    return convert.pose_rows(np.array([t for t, _ in trajectory]), np.array([m for _, m in trajectory]))
