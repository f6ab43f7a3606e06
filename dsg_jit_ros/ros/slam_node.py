"""The online SLAM node (``slam_node``, node name ``dsg_jit_slam``): thin ROS glue.

Subscribes ``odom`` (nav_msgs/Odometry, T_odom_base) and ``points``
(sensor_msgs/PointCloud2 in the base or sensor frame); hands arrays to the
ROS-free ``SlamPipeline`` (keyframes, sliding window, jitted LM); publishes

- ``~/path``      nav_msgs/Path of every keyframe, optimised (map frame),
- ``~/odometry``  every odometry message re-expressed in the map frame with the
                  latest correction, pose covariance from the window's Hessian,
- ``/tf``         map -> odom (the correction, REP-105), unless publish_tf is off,
- ``~/voxels``    one CUBE_LIST marker of voxel centres coloured by height (throttled),
- ``~/map``       PointCloud2 of voxel centres (transient local, throttled),
- ``~/status``    dsg_jit_ros_msgs/SlamStatus per keyframe (with loop-closure counts),
- ``~/loop_closures`` MarkerArray: a line between the keyframes of each loop edge,
                  after each global solve (transient local),

takes ``/initialpose`` (geometry_msgs/PoseWithCovarianceStamped, map frame:
re-localize on the loaded map),

and serves ``~/save_map`` (dsg_jit_ros_msgs/SaveMap), ``~/load_map``
(dsg_jit_ros_msgs/LoadMap) and ``~/reset`` (std_srvs/Trigger).  Every rejected input is counted in the status and logged
(throttled per reason).  A lifecycle node (``~/change_state``, ``~/get_state``,
lifecycle_msgs): configure compiles, activate subscribes (see ``SlamNode``);
``autostart`` (default true) runs both at start-up.

Threads: the executor (one thread) runs only cheap callbacks: the two
subscriptions check and queue (the pipeline locks its buffers).  Keyframes are
solved and published by a worker thread of the node, so odometry (and
``~/odometry``, TF) keeps flowing during a solve; the services take the same
lock as the worker.  Loop search and the global solve run in the pipeline's own
loop-closure thread (``mapping.loop_worker``); the solver worker applies a
finished global solve at its next keyframe.  (A solver callback group in a multi-threaded executor was
measured to busy-spin the executor while a solve ran, starving both.)
"""

from __future__ import annotations

import dataclasses
import gc
import signal
import sys
import threading
import time
import traceback
from collections import Counter, deque

import numpy as np
import rclpy
from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.signals import SignalHandlerOptions
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2
from std_srvs.srv import Trigger

from dsg_jit_ros.mapping.export import save_outputs
from dsg_jit_ros.mapping.pipeline import KeyframeUpdate, Rejection, SlamPipeline
from dsg_jit_ros.mapping.warm_up import WarmUp
from dsg_jit_ros.optimization.compile_cache import enable_persistent_cache
from dsg_jit_ros.optimization import sparse_backend
from dsg_jit_ros.ros import convert
from dsg_jit_ros.ros.outputs import SlamOutputs
from dsg_jit_ros.ros.params import ParameterError, arguments_error, build_configs, check_overrides, declare_and_read

NODE_NAME = "dsg_jit_slam"
LATENCY_HISTORY = 100_000  # keyframe latencies kept for the demo's figures (~28 h at 1 Hz)


def _interfaces():
    """Our generated interfaces (built by interfaces/build.sh at set-up)."""
    try:
        from dsg_jit_ros_msgs.msg import SlamStatus
        from dsg_jit_ros_msgs.srv import LoadMap, SaveMap
        from tf2_msgs.msg import TFMessage
    except ImportError as err:
        raise RuntimeError(
            f"{err}: the interface packages are not built; run `make setup` (interfaces/build.sh)") from err
    return SlamStatus, SaveMap, LoadMap, TFMessage


class SlamNode(LifecycleNode):
    """Online SLAM on odometry + clouds; see the module docstring for the interface.

    A lifecycle node: *configure* validates the parameters (no name from
    ``--params-file`` or ``-p`` the node does not declare, values that fit together),
    builds the pipeline (reads ``map_file``) and compiles the solver (warm-up),
    creates publishers and services; *activate* subscribes and enables the
    publishers; *deactivate* unsubscribes (queued keyframes are still solved) and
    mutes the publishers; *cleanup* forgets the pipeline; *shutdown* ends ``main``.
    With ``autostart`` (default) the node configures and activates itself in the
    constructor, and a failed configure raises ParameterError (``main`` prints it
    and exits with code 2); otherwise it waits for lifecycle_msgs/ChangeState on
    ``~/change_state``, and a failed configure is logged and leaves it
    unconfigured.  A value out of range or of the wrong type raises in the
    constructor already (rclpy checks it at declaration).  Either way, no
    subscription exists before it is active, so a publisher can see it is not
    ready yet.
    """

    def __init__(self, **node_kwargs):
        super().__init__(NODE_NAME, **node_kwargs)
        self.SlamStatus, self.SaveMap, self.LoadMap, self.TFMessage = _interfaces()
        try:
            self._start()
        except BaseException:
            # a node left undestroyed when the context shuts down can hang the process
            # at exit (seen once in CI: the message printed, the process never ended)
            self.destroy_node()
            raise

    def _start(self) -> None:
        """Read the parameters and, with ``autostart``, configure and activate."""
        self._values = declare_and_read(self)  # a value out of range or of a wrong type raises here
        self.pipeline: SlamPipeline | None = None
        self._io_subscriptions: list = []
        self._io_services: list = []
        self._io_publishers: list = []
        self._worker: threading.Thread | None = None
        self.finished = threading.Event()  # set by the shutdown transition
        self._configure_error = ""
        if self._values["autostart"]:
            if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                raise ParameterError(self._configure_error or "configure failed (see the log)")
            self.trigger_activate()

    # ---- lifecycle ------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            check_overrides(self)  # a misspelt name from --params-file or -p
            self.cfg, pipeline_cfg = build_configs(self._values)
        except ParameterError as err:
            self._configure_error = str(err)
            self.get_logger().error(f"cannot configure: {err}")
            return TransitionCallbackReturn.FAILURE
        if pipeline_cfg.loop.enabled:  # the global graph's solve runs the host sparse Cholesky
            try:
                backend = sparse_backend.resolve()  # DSG_JIT_ROS_SPARSE_BACKEND, else what imports
            except (ImportError, ValueError) as err:  # a backend named there that is not installed
                self._configure_error = str(err)
                self.get_logger().error(f"cannot configure: {err}")
                return TransitionCallbackReturn.FAILURE
            self.get_logger().info(f"global graph: sparse Cholesky backend {sparse_backend.describe(backend)}")
        try:
            self.pipeline = SlamPipeline(pipeline_cfg, background_loops=True)  # reads map_file
        except ValueError as err:  # MapFileError, or a map that does not fit the parameters
            self._configure_error = str(err)
            self.get_logger().error(f"cannot configure: {err}")
            return TransitionCallbackReturn.FAILURE
        if self.pipeline.loaded_keyframes:
            self.get_logger().info(f"map {pipeline_cfg.map_file}: {self.pipeline.loaded_keyframes} keyframes, "
                                   f"{len(self.pipeline.window.local.frozen)} voxels; mode {pipeline_cfg.mode}")
        self._last_log: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()
        # per keyframe, cloud in -> status out (wall, ms); the newest LATENCY_HISTORY (bounded memory)
        self.latencies_ms: deque[float] = deque(maxlen=LATENCY_HISTORY)
        self.received: Counter[str] = Counter()  # messages per input, whatever became of them
        self.warmup_s = 0.0
        self.published_keyframes = 0
        if self.cfg.compile_cache:
            try:
                cache = enable_persistent_cache(None if self.cfg.compile_cache == "auto" else self.cfg.compile_cache)
                self.get_logger().info(f"compile cache: {cache}")
            except OSError as err:  # an unwritable directory costs start-up time, not the node
                self.get_logger().warning(f"compile cache {self.cfg.compile_cache!r} not used: {err}")
        if self.cfg.warmup:  # the prefix solve and the global graph's compile later, once active (on_activate)
            self.warmup_s = self.pipeline.warm_up(defer=True)
            self.get_logger().info(self.pipeline.warmup_message(self.warmup_s))
        # what exists now (compiled programs, modules) lives as long as the node: keep
        # it out of full garbage collections, which caused the worst latency spikes
        gc.collect()
        gc.freeze()
        self.outputs = SlamOutputs(self, self.cfg, self.SlamStatus, self.TFMessage)
        self._io_publishers = self.outputs.publishers
        self._solve_lock = threading.Lock()  # the window: worker vs services
        self._work = threading.Condition()
        self._stopping = False
        self._worker = threading.Thread(target=self._solve_loop, name="dsg_jit_solver", daemon=True)
        self._worker.start()
        self._io_services = [self.create_service(self.SaveMap, "~/save_map", self._on_save_map),
                             self.create_service(self.LoadMap, "~/load_map", self._on_load_map),
                             self.create_service(Trigger, "~/reset", self._on_reset)]
        self.get_logger().info("configured (inactive): not subscribed yet")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        reliability = ReliabilityPolicy.RELIABLE if self.cfg.reliable_inputs else ReliabilityPolicy.BEST_EFFORT
        qos = lambda depth: QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST, reliability=reliability)  # noqa: E731
        result = super().on_activate(state)  # publishers first: a keyframe may follow at once
        self._io_subscriptions = [
            self.create_subscription(Odometry, "odom", self._on_odom, qos(self.cfg.odom_queue_depth)),
            self.create_subscription(PointCloud2, "points", self._on_points, qos(self.cfg.points_queue_depth)),
            self.create_subscription(PoseWithCovarianceStamped, "/initialpose", self._on_initial_pose, 1)]
        self.get_logger().info(
            f"active: listening on {self.resolve_topic_name('odom')} and {self.resolve_topic_name('points')} "
            f"({'reliable' if self.cfg.reliable_inputs else 'best effort'}); frames {self.cfg.map_frame} -> "
            f"{self.cfg.odom_frame} -> {self.cfg.base_frame}, clouds in {self.cfg.cloud_frame}")
        if self.pipeline.warm_up_background():  # not needed for the first keyframe
            warm = self.pipeline.warm
            parts = [(name, done) for name, done in (("the window's solve on its used prefix", warm.prefix_done),
                                                     ("the global graph's solve", warm.graph_ready)) if done]
            self.get_logger().info("compiling in the background: " + ", ".join(name for name, _ in parts))
            threading.Thread(target=self._log_background_ready, args=(warm, parts), name="dsg_jit_warmup_log",
                             daemon=True).start()
        return result

    def _log_background_ready(self, warm: WarmUp, parts: list[tuple[str, threading.Event]]) -> None:
        """Log the end of each background compile (``parts``: name, event set at its end),
        and keep what it built out of full garbage collections as on_configure does for
        the window's."""
        for name, done in parts:
            done.wait()
            gc.freeze()
            if done is warm.prefix_done and warm.prefix_error is not None:
                self.get_logger().error(f"{name} failed to compile ({warm.prefix_error!r}); the window solves on "
                                        "its whole capacity")
                continue
            seconds = warm.prefix_seconds if done is warm.prefix_done else warm.graph_seconds
            if seconds is not None:
                self.get_logger().info(f"{name} compiled in {seconds:.1f} s (background)")

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unsubscribe()
        self.get_logger().info("inactive: unsubscribed, outputs muted (the map is kept)")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("cleaned up: map and pipeline forgotten (unconfigured)")
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unsubscribe()
        self._release()
        self.finished.set()
        return super().on_shutdown(state)

    def _unsubscribe(self) -> None:
        for sub in self._io_subscriptions:
            self.destroy_subscription(sub)
        self._io_subscriptions = []

    def _release(self) -> None:
        """Stop the worker (after the keyframe it is solving); drop publishers, services, pipeline."""
        self._stop_worker()
        for srv in self._io_services:
            self.destroy_service(srv)
        for p in self._io_publishers:
            self.destroy_lifecycle_publisher(p)
        self._io_services, self._io_publishers = [], []
        if self.pipeline is not None:
            self.pipeline.close()
        self.pipeline = None

    def _stop_worker(self) -> None:
        worker = self._worker
        if worker is not None:
            with self._work:
                self._stopping = True
                self._work.notify_all()
            worker.join(timeout=60.0)
            self._worker = None

    # ---- logging ------------------------------------------------------------
    def _warn(self, rejection: Rejection) -> None:
        """Log a rejection, at most once per ``log_throttle`` seconds per reason."""
        now = time.monotonic()
        last = self._last_log.get(rejection.reason, -np.inf)
        if now - last < self.cfg.log_throttle:
            self._suppressed[rejection.reason] += 1
            return
        more = self._suppressed.pop(rejection.reason, 0)
        tail = f" ({more} more since the last report)" if more else ""
        total = self.pipeline.dropped_snapshot().get(rejection.reason, 0)
        head = f"[{rejection.reason}, total {total}]" if total else f"[{rejection.reason}]"
        self.get_logger().warning(f"{head} {rejection.detail}{tail}")
        self._last_log[rejection.reason] = now

    def _count(self, reason: str, detail: str) -> None:
        self.pipeline.count(reason)
        self._warn(Rejection(reason, detail))

    # ---- inputs -------------------------------------------------------------
    def _on_odom(self, msg: Odometry) -> None:
        self.received["odom"] += 1
        if msg.header.frame_id != self.cfg.odom_frame or msg.child_frame_id != self.cfg.base_frame:
            self._count("odom_unknown_frame", f"odometry {msg.header.frame_id!r} -> {msg.child_frame_id!r}, "
                        f"expected {self.cfg.odom_frame!r} -> {self.cfg.base_frame!r}")
            return
        try:
            stamp, t_odom_body = convert.odometry_to_matrix(msg)
        except convert.ConversionError as err:
            self._count(err.reason, str(err))
            return
        rejection = self.pipeline.add_odometry(stamp, t_odom_body)
        if rejection is not None:
            self._warn(rejection)
            return
        cov = self.pipeline.covariance if self.cfg.publish_covariance else None
        self.outputs.odometry_in_map(msg, self.pipeline.t_map_odom, t_odom_body, cov)
        self._queued(self.pipeline.select_ready())

    def _on_initial_pose(self, msg: PoseWithCovarianceStamped) -> None:
        """RViz's "2D Pose Estimate": re-localize on the loaded map from this pose (its
        covariance, when given, sets the registration prior)."""
        if msg.header.frame_id != self.cfg.map_frame:
            self._count("initialpose_unknown_frame", f"/initialpose in {msg.header.frame_id!r}, "
                        f"expected {self.cfg.map_frame!r}")
            return
        try:
            t_map_body = convert.pose_to_matrix(msg.pose.pose)
            cov = np.asarray(msg.pose.covariance, dtype=np.float64).reshape(6, 6)
            var = np.diag(cov)
            sigmas = None
            if np.all(np.isfinite(var)) and var[[0, 1, 5]].min() > 0:
                st, sr = float(np.sqrt(var[:3].max())), float(np.sqrt(var[3:].max()))
                sigmas = np.array([st] * 3 + [sr] * 3)
            with self._solve_lock:
                self.pipeline.relocalize(t_map_body, sigmas)
        except (ValueError, convert.ConversionError) as err:
            self._count("initialpose_rejected", f"/initialpose not used: {err}")
            return
        self.published_keyframes = 0
        x, y = t_map_body[0, 3], t_map_body[1, 3]
        self.get_logger().info(f"re-localizing from /initialpose at ({x:.2f}, {y:.2f}) m on the loaded map")

    def _on_points(self, msg: PointCloud2) -> None:
        self.received["points"] += 1
        if msg.header.frame_id != self.cfg.cloud_frame:
            self._count("cloud_unknown_frame", f"cloud in {msg.header.frame_id!r}, expected {self.cfg.cloud_frame!r}")
            return
        try:
            points = convert.pointcloud2_to_xyz(msg)
        except convert.ConversionError as err:
            self._count(err.reason, str(err))
            return
        self._queued(self.pipeline.ingest_cloud(convert.stamp_to_sec(msg.header.stamp), points))

    def _queued(self, rejections: list[Rejection]) -> None:
        for r in rejections:
            self._warn(r)
        if self.pipeline.queued_work:  # keyframes, and clouds to track as they come
            with self._work:
                self._work.notify()

    def _solve_loop(self) -> None:
        """Worker thread: solve queued keyframes one at a time and publish each."""
        while True:
            with self._work:
                while not self._stopping and not self.pipeline.queued_work:
                    if not self._work.wait(timeout=1.0):
                        break  # a second without keyframes: apply a loop solve that finished meanwhile
                if self._stopping:
                    return
            try:
                with self._solve_lock:
                    updates = self.pipeline.process_ready(max_keyframes=1, covariance=False, maintenance=False)
                    for update in updates:
                        self._publish_keyframe(update)
                    # after publishing, off the keyframe's latency: the covariance (for ~/odometry),
                    # the map's upkeep (a loop closure's re-base, the tracking horizon) and the
                    # local map at the solved poses (the next registration's target)
                    if updates:
                        self.pipeline.refresh_covariance()
                    self._map_maintained(*self.pipeline.maintain_map())
                    self.pipeline.prepare_registration()
            except Exception as err:  # never die silently: count, log, go on with the next keyframe
                self.pipeline.count("solver_error")
                self.get_logger().error(f"keyframe update failed: {err!r}\n{traceback.format_exc()}")
            backlog = self.pipeline.queued_keyframes
            if backlog > 10:
                self._warn(Rejection("backlog", f"{backlog} keyframes wait to be solved (the solver is behind)"))

    def _map_maintained(self, notices, closed: int) -> None:
        """Log the upkeep's notices; after a loop closure, the corrected path, the moved map
        frame on /tf and the loop markers (stamped as the newest keyframe)."""
        for notice in notices:
            self.get_logger().info(notice)
        newest = self.pipeline.keyframe_odometry
        if closed and newest:
            stamp = convert.sec_to_stamp(newest[-1][0])
            self.outputs.trajectory(self.pipeline, stamp)
            self.outputs.transform(self.pipeline.t_map_odom, stamp)
            self.outputs.loop_closures(self.pipeline, stamp)

    def destroy_node(self) -> None:
        """Stop the worker (after the keyframe it is solving) and the loop-closure thread,
        then the node."""
        if getattr(self, "_work", None) is not None:
            self._stop_worker()
        if getattr(self, "pipeline", None) is not None:
            self.pipeline.close()
        super().destroy_node()

    # ---- outputs (ros.outputs builds and publishes them) -----------------------
    def _publish_keyframe(self, update: KeyframeUpdate) -> None:
        self.latencies_ms.append(self.outputs.keyframe(self.pipeline, update))
        self.published_keyframes += 1
        if update.compilations_after_warmup:
            self.get_logger().error(f"the solver recompiled after warm-up ({update.compilations_after_warmup} times)")
        for notice in update.notices:
            self.get_logger().info(notice)
        self._log_registration(update.stats.registration)

    def _log_registration(self, reg) -> None:
        """Say when a keyframe's registration was not used (throttled per kind, with totals)."""
        if reg is None or not (reg.rejected or not reg.used):
            return
        totals = self.pipeline.window.registrations
        if reg.rejected:
            self._warn(Rejection("registration_rejected", (
                f"scan-to-map registration moved the odometry prediction by {reg.correction_sigma:.1f} odometry "
                f"sigmas (> registration.max_correction_sigma): kept the prediction "
                f"({totals['rejected']} of {sum(totals.values())} keyframes so far)")))
        else:
            self._warn(Rejection("registration_few_matches", (
                f"only {reg.matched} of {reg.points} scan points matched the map: kept the odometry prediction "
                f"({totals['few_matches']} of {sum(totals.values())} keyframes so far)")))

    # ---- services -----------------------------------------------------------
    def _on_save_map(self, request, response):
        directory = request.directory or self.cfg.save_directory
        try:
            with self._solve_lock:
                for notice in self.pipeline.flush_loops():  # keyframes still queued for the graph
                    self.get_logger().info(notice)
                files = save_outputs(self.pipeline, directory)
        except (OSError, ValueError) as err:
            response.success, response.message = False, f"could not save into {directory!r}: {err}"
            self.get_logger().error(response.message)
            return response
        response.success = True
        response.files = [str(f) for f in files]
        response.message = f"wrote {len(files)} files into {files[0].parent}"
        self.get_logger().info(response.message)
        return response

    def _on_load_map(self, request, response):
        """Replace the map by ``request.path`` (a map.npz); on any failure keep the current one."""
        mode = request.mode or self.pipeline.cfg.mode
        try:
            cfg = dataclasses.replace(self.pipeline.cfg, map_file=request.path, mode=mode)
            with self._solve_lock:
                new = SlamPipeline(cfg, background_loops=True)  # reads and checks the file
                new.adopt_warm_state(self.pipeline)
                old, self.pipeline = self.pipeline, new
                old.close(wait_warm_up=False)  # its background compile, if running, is the new one's
                self.published_keyframes = 0
        except (OSError, ValueError) as err:  # MapFileError is a ValueError
            response.success, response.message = False, f"could not load {request.path!r}: {err} (map kept)"
            self.get_logger().error(response.message)
            return response
        self.outputs.map_changed()
        response.success, response.keyframes = True, int(new.loaded_keyframes)
        response.message = (f"loaded {request.path}: {new.loaded_keyframes} keyframes, "
                            f"{len(new.window.local.frozen)} voxels; mode {mode}")
        self.get_logger().info(response.message)
        return response

    def _on_reset(self, request, response):
        with self._solve_lock:
            keyframes = self.pipeline.keyframes
            self.pipeline.reset()
            self.published_keyframes = 0
        self.outputs.map_changed()
        response.success = True
        response.message = f"reset: forgot {keyframes} keyframes, the map and the odometry buffer"
        self.get_logger().info(response.message)
        return response


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``slam_node``; takes the usual ``--ros-args``."""
    argv = sys.argv if argv is None else argv
    if any(a in ("-h", "--help") for a in argv[1:]) and "--ros-args" not in argv:
        print(__doc__)
        print("usage: slam_node [--ros-args --params-file FILE -p name:=value -r odom:=/my/odom ...]\n"
              "Parameters (name, default, description):")
        from dsg_jit_ros.ros.params import PARAMS
        for spec in PARAMS:
            rng = f" [{spec.low}, {spec.high}]" if spec.low is not None else ""
            print(f"  {spec.name} = {spec.default!r}{rng}\n      {spec.description}")
        return 0
    # SIGINT/SIGTERM only set a flag: a KeyboardInterrupt raised inside JAX's
    # compile (the warm-up) is swallowed, and a solve should not be cut mid-way.
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    except RuntimeError as err:  # rcl refuses the arguments (e.g. an unreadable --params-file)
        print(f"[{NODE_NAME}] cannot start: {arguments_error(err)}", file=sys.stderr)
        return 2
    try:
        node = SlamNode()
    except (ParameterError, RuntimeError) as err:
        print(f"[{NODE_NAME}] cannot start: {err}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not stop.is_set() and not node.finished.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except ExternalShutdownException:
        pass
    finally:
        executor.shutdown(timeout_sec=30.0)  # lets a running solve finish and publish
        pipe = node.pipeline
        keyframes = pipe.keyframes if pipe is not None else 0
        on_prefix = f" ({pipe.window.prefix_solves} of {pipe.window.solves} solves on the used prefix)" if pipe else ""
        node.get_logger().info(f"stopping after {keyframes} keyframes{on_prefix}")
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
