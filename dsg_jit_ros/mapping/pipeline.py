"""The online SLAM data path without ROS: odometry + clouds in, keyframe updates out.

``SlamPipeline`` owns the intake (``mapping.input_queue``: odometry buffer, clouds
waiting for odometry, keyframe selection), the sliding window, the global mapping
(loop closure) and the warm-up state (``mapping.warm_up``).  The ROS node converts
messages to arrays and calls ``add_odometry`` / ``add_cloud``; the demo, the
benchmark and the tests call the same methods directly.  Every rejected input is
counted under a reason key (``dropped``) and described in the returned
``Rejection`` so the caller can log it: nothing is dropped silently.  Its
configuration (``PipelineConfig``, ``InputConfig``) lives in
``mapping.pipeline_config``; those names are re-exported here.

Threads: ingestion (``add_odometry``, ``ingest_cloud``, ``select_ready``,
``reset``) and counters are guarded by one lock, so a node may ingest in one
thread while another solves (``process_ready``); ``t_map_odom`` and
``covariance`` are snapshots replaced after each keyframe.  Keyframes leaving the
window go to the global graph through ``mapping.loop_worker``: in a thread of its
own with ``background_loops`` (the node), inline otherwise; a finished global
solve is applied (window and map re-based) at the next keyframe or by
``flush_loops``.

Frames: ``T_odom_body`` from odometry, clouds in the body frame (after the
optional sensor extrinsic ``T_body_sensor``), estimates ``T_map_body``.  Stamps
in seconds.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np

from dsg_jit_ros.io.map_file import read_map
from dsg_jit_ros.mapping import map_state
from dsg_jit_ros.mapping.global_graph import GlobalGraph
from dsg_jit_ros.mapping.global_mapping import GlobalMapping
from dsg_jit_ros.mapping.input_queue import InputQueue, PendingCloud, Rejection
from dsg_jit_ros.mapping.loop_closure import LoopCloser
from dsg_jit_ros.mapping.pipeline_config import MODES, PLANAR_MODES, InputConfig, PipelineConfig
from dsg_jit_ros.mapping.keyframe_covariance import newest_keyframe_covariance
from dsg_jit_ros.mapping.planar import is_planar_cloud
from dsg_jit_ros.mapping.tracked_scans import TrackedScans
from dsg_jit_ros.mapping.warm_up import WarmUp, programs_since, synthetic_cloud, warmup_message
from dsg_jit_ros.mapping.window import SlidingWindow, SolveStats
from dsg_jit_ros.optimization.compile_count import compile_counts

# re-exported: the node, config.py, benchmarks and tests import them from here
__all__ = ["MODES", "PLANAR_MODES", "InputConfig", "KeyframeUpdate", "PipelineConfig", "Rejection", "SlamPipeline"]


@dataclass(frozen=True)
class KeyframeUpdate:
    """One processed keyframe: its stamp, solver statistics, newest pose covariance."""

    stamp: float
    stats: SolveStats
    received: float  # time.perf_counter() when its cloud was taken in
    covariance: np.ndarray | None  # (6, 6) tangent [rho, phi] of T_map_body (body frame); None: not computed
    keyframes: int
    compilations_after_warmup: int
    notices: tuple[str, ...] = ()  # one-off events worth an info log line (e.g. planar mode chosen)
    loops_closed: int = 0  # loop closures applied to the map at this keyframe


class SlamPipeline:
    """Odometry and clouds in; keyframes into the sliding window; estimates out."""

    def __init__(self, cfg: PipelineConfig, background_loops: bool = False):
        """``background_loops``: loop closure and the global solve run in a thread of their
        own (the node); otherwise inside the keyframe update, deterministically (replays)."""
        self.cfg = cfg
        self.background_loops = bool(background_loops)
        self.dropped: Counter[str] = Counter()
        self._lock = threading.RLock()
        self.warm = WarmUp()  # kept across resets
        self.relocalizations = 0  # relocalize() calls (kept across resets)
        self.global_map: GlobalMapping | None = None
        self.reset()

    # ---- state ------------------------------------------------------------
    def reset(self) -> None:
        """Forget the map, trajectory and buffers (counters and compiled code stay)."""
        with self._lock:
            self._reset()

    def _reset(self) -> None:
        self.planar: bool | None = {"on": True, "off": False}.get(self.cfg.planar)  # None: not decided yet
        self.window = SlidingWindow(self.cfg.window, planar=bool(self.planar))
        self.window.prefix_ready = self.warm.prefix_ready
        if self.global_map is not None:
            self.global_map.worker.close()
        self.global_map = GlobalMapping(self.cfg, self.window, bool(self.planar), self.background_loops,
                                        self.graph_ready)
        self.input_queue = InputQueue(self.cfg, self.count)
        self.keyframes = 0  # solved
        self.keyframe_odometry: list[tuple[float, np.ndarray]] = []  # (stamp, T_odom_body) per keyframe
        self.tracked_scans = TrackedScans()  # keyframe.track_between: the clouds registered between keyframes
        self.covariance: np.ndarray | None = None
        self._t_map_odom = np.eye(4)
        self.loaded_keyframes = 0  # keyframes of map_file
        if self.cfg.map_file:
            try:
                self._load_map()
            except BaseException:
                self.global_map.worker.close()  # a failed construction must not leave its thread behind
                raise

    @property
    def graph(self) -> GlobalGraph:
        """The global pose graph (hold ``loop_lock`` to read it while a node runs)."""
        return self.global_map.graph

    @property
    def loops(self) -> LoopCloser:
        return self.global_map.worker.closer

    @property
    def loop_lock(self) -> threading.RLock:
        return self.global_map.worker.lock

    @property
    def loop_edges(self) -> tuple[np.ndarray, tuple[tuple[int, int], ...]]:
        """(node positions (n, 3) m, (older, newer) loop edges) after the last global solve."""
        return self.global_map.loop_edges

    def loop_counts(self) -> dict[str, float]:
        """Global graph and loop-closure counters (for ``~/status``)."""
        return self.global_map.counts()

    def map_centres(self) -> np.ndarray:
        """(M, 3) the whole map's points (m, map frame)."""
        return self.global_map.map_centres()

    def close(self, wait_warm_up: bool = True) -> None:
        """Stop the loop-closure thread (a node's cleanup) and, with ``wait_warm_up``, wait
        for a background compile still running (``WarmUp.join``; not when a pipeline that
        adopted this warm-up state lives on)."""
        self.global_map.worker.close()
        if wait_warm_up:
            self.warm.join()

    @property
    def selected_keyframes(self) -> int:
        """Keyframes selected since the last reset: solved + queued + being solved."""
        return self.input_queue.selected_keyframes

    @property
    def skipped_clouds(self) -> int:
        """Valid clouds that were not keyframes (by design, not dropped) since the last reset."""
        return self.input_queue.skipped_clouds

    @property
    def graph_ready(self) -> threading.Event | None:
        """Set when the global graph's solve is compiled (None: no loop closure warm-up)."""
        return self.warm.graph_ready

    @property
    def warmup_programs(self) -> dict[str, int]:
        """Programs compiled by ``warm_up``, by entry name."""
        return self.warm.programs

    @property
    def prefix_ready(self) -> threading.Event | None:
        """Set when the window's solve on its used prefix is compiled (None: no prefix)."""
        return self.warm.prefix_ready

    @property
    def prefix_warmup_s(self) -> float | None:
        """Seconds the prefix solve's compile took; None until done."""
        return self.warm.prefix_seconds

    @property
    def graph_warmup_s(self) -> float | None:
        """Seconds the global graph's compile took (in its thread); None until done."""
        return self.warm.graph_seconds

    def adopt_warm_state(self, other: "SlamPipeline") -> None:
        """Carry over what outlives a map from the pipeline this one replaces (``~/load_map``):
        the warm-up state (shared, so a graph compile still running completes it for
        both) and the dropped-input and relocalization counters."""
        self.warm = other.warm
        self.global_map.worker.ready = other.graph_ready
        self.window.prefix_ready = other.warm.prefix_ready
        self.dropped = other.dropped.copy()
        self.relocalizations = other.relocalizations

    def warm_up(self, defer: bool = False) -> float:
        """Compile the solver (and covariance) on a synthetic keyframe, then reset.

        Capacities fix every compiled shape, so after this no keyframe compiles
        again.  Two more programs: the window's solve on the used prefix of its
        capacities (``window.prefix_fraction``), compiled here, and with loop closure
        the global graph's solve (~10 s, not kept by the persistent cache: it calls the
        host), compiled in a thread of its own, still running on return; the loop
        worker waits for it before its first solve, and the compile count after
        warm-up is taken when every part is done.  ``defer=True`` leaves both to
        ``warm_up_background`` (a node starts it once subscribed, so the start-up does
        not wait for them nor compete with them for the cores; the window solves on
        its whole capacity until the prefix program is ready).
        ``warmup_programs`` records the programs compiled (or loaded from the
        persistent cache) before return, by entry name.
        Returns the seconds it took.
        """
        start = time.perf_counter()
        before = compile_counts()
        self.warm.begin(self.cfg.loop.enabled)
        # (compiling the covariance in a second thread meanwhile was measured slower, warm
        # 2.6 vs 2.3 s, and no faster cold: both traces want the GIL)
        self.window.add_keyframe(0.0, np.eye(4), synthetic_cloud(self.cfg.window.voxel))
        self.warm.add_prefix(self.window.prefix_warm_up())
        if self.cfg.inputs.compute_covariance:
            self._newest_covariance()
        if not defer:
            self.warm.compile_prefix()
        self.warm.programs = programs_since(before)
        self.reset()  # after begin() and add_prefix(): the new window and loop worker take their events
        if not defer:
            self.warm_up_background()
        self.warm.part_done()
        return time.perf_counter() - start

    def warm_up_background(self) -> bool:
        """Start compiling what ``warm_up(defer=True)`` left (the prefix solve, then the
        global graph's solve) in a thread of its own; returns whether it started it
        (not when nothing is left)."""
        return self.warm.start_background(self.cfg.loop)

    def warmup_message(self, seconds: float) -> str:
        """The warm-up's log line (``mapping.warm_up.warmup_message``)."""
        return warmup_message(self.warmup_programs, seconds)

    @property
    def t_map_odom(self) -> np.ndarray:
        """The current correction ``T_map_odom`` (identity before the first keyframe).

        A snapshot replaced (never mutated) after each keyframe, so another thread
        may read it while a solve runs."""
        return self._t_map_odom

    def compilations_after_warmup(self) -> int:
        """Compilations since ``warm_up`` (or the first keyframe without it); target 0.
        The global graph's recompiles when its capacity doubles are planned, not counted."""
        after = self.warm.compilations_after()
        grown = self.global_map.graph.growth_compiles if self.global_map is not None else 0
        return max(after - grown, 0) if after else 0

    def count(self, reason: str, n: int = 1) -> None:
        """Add ``n`` to the dropped-input counter ``reason`` (thread-safe)."""
        if n:
            with self._lock:
                self.dropped[reason] += n

    def dropped_snapshot(self) -> dict[str, int]:
        """A copy of the non-zero dropped-input counters, sorted by reason."""
        with self._lock:
            return {k: int(v) for k, v in sorted(self.dropped.items()) if v}

    # ---- odometry -----------------------------------------------------------
    def add_odometry(self, stamp: float, t_odom_body: np.ndarray) -> Rejection | None:
        """Buffer one odometry pose; returns a Rejection when it is not used."""
        with self._lock:
            return self.input_queue.add_odometry(stamp, t_odom_body)

    # ---- clouds -------------------------------------------------------------
    def add_cloud(self, stamp: float, points_sensor: np.ndarray) -> tuple[list[KeyframeUpdate], list[Rejection]]:
        """Take one cloud and solve every keyframe that is ready (single-threaded use)."""
        rejections = self.ingest_cloud(stamp, points_sensor)
        return self.process_ready(), rejections

    def process_pending(self) -> tuple[list[KeyframeUpdate], list[Rejection]]:
        """After new odometry: select the clouds it covers and solve the keyframes."""
        rejections = self.select_ready()
        return self.process_ready(), rejections

    def ingest_cloud(self, stamp: float, points_sensor: np.ndarray) -> list[Rejection]:
        """Check one cloud (sensor frame, (N, 3)), queue it, select what odometry covers.

        Cheap (no solve): a node calls it from its subscription callback and
        solves in ``process_ready`` elsewhere, so odometry keeps flowing.
        """
        received = time.perf_counter()
        with self._lock:
            return self.input_queue.add_cloud(stamp, points_sensor, received)

    def select_ready(self) -> list[Rejection]:
        """Move waiting clouds that odometry now covers to the keyframe queue (or skip
        them when they are not keyframes).  Clouds beyond the newest odometry wait."""
        with self._lock:
            return self.input_queue.select_ready()

    @property
    def queued_keyframes(self) -> int:
        """Selected keyframes not solved yet (clouds queued only to be tracked not counted)."""
        return sum(1 for entry in self.input_queue.ready if entry[2])

    @property
    def queued_work(self) -> int:
        """Clouds queued for ``process_ready``: keyframes and clouds to track."""
        return len(self.input_queue.ready)

    def process_ready(self, max_keyframes: int | None = None, covariance: bool = True,
                      maintenance: bool = True) -> list[KeyframeUpdate]:
        """Solve queued keyframes (all, or at most ``max_keyframes``) in order, and
        register the clouds queued between them (``keyframe.track_between``).

        ``covariance``: also compute each keyframe's covariance (when configured)
        before returning its update; ``maintenance``: also apply a finished loop-closure
        solve and trim the tracked map (``GlobalMapping.maintain``).  A node passes False
        for both, publishes, and then calls ``refresh_covariance``, ``maintain_map`` and
        ``prepare_registration``, so that none of them is on the keyframe's latency.
        """
        updates = []
        ready = self.input_queue.ready
        while ready and (max_keyframes is None or len(updates) < max_keyframes):
            cloud, t_odom_body, is_keyframe = ready.popleft()
            if not is_keyframe:
                self._track(cloud, t_odom_body)
                continue
            update = self._keyframe(cloud, t_odom_body, maintenance)
            if covariance and self.refresh_covariance():
                update = dataclasses.replace(update, covariance=self.covariance)
            updates.append(update)
        return updates

    def maintain_map(self) -> tuple[tuple[str, ...], int]:
        """The map's upkeep left by ``process_ready(maintenance=False)``: a finished
        loop-closure solve re-bases the window and map (``t_map_odom`` moves), keyframes
        beyond the tracking horizon leave the tracked map.  Returns (notices, loops closed)."""
        closed_before = self.global_map.loops_closed
        notices = self.global_map.maintain()
        self._t_map_odom = self.window.t_map_odom
        return notices, self.global_map.loops_closed - closed_before

    def refresh_covariance(self) -> bool:
        """Compute the newest keyframe's covariance into the ``covariance`` snapshot (when
        ``inputs.compute_covariance``); returns whether it did."""
        if not self.cfg.inputs.compute_covariance or self.window.newest_keyframe_var is None:
            return False
        self.covariance = self._newest_covariance()
        return True

    def prepare_registration(self) -> None:
        """Place the window's observations at its solved poses and build the window's
        part of the registration target now, for the next registration (which would do
        both first thing): a node calls this after publishing and after ``maintain_map``,
        so they are off the next keyframe's latency (nothing with registration off).
        Nothing else changes: the same statistics at the same poses."""
        self.window.prepare_registration()

    def set_planar(self, planar: bool) -> None:
        """Choose planar mode before the first keyframe (window and graph)."""
        self.planar = bool(planar)
        self.window.set_planar(self.planar)
        self.graph.set_planar(self.planar)

    def relocalize(self, t_map_body: np.ndarray, sigmas: np.ndarray | None = None) -> None:
        """Start tracking again on the loaded map from ``t_map_body`` (4x4) with prior
        ``sigmas`` ((6,) [m, rad]; default ``initial_pose_sigma``): the trajectory and
        buffers are forgotten, the loaded map is kept.  ValueError without a map."""
        if not self.cfg.map_file:
            raise ValueError("no map_file loaded: nothing to localize in")
        t = np.asarray(t_map_body, dtype=np.float64)
        if t.shape != (4, 4) or not np.all(np.isfinite(t)):
            raise ValueError("the initial pose must be a finite 4x4 transform")
        if sigmas is None:
            st, sr = self.cfg.initial_pose_sigma
            sigmas = np.array([st] * 3 + [sr] * 3)
        with self._lock:
            self._reset()
            self.window.set_initial_pose(t, np.asarray(sigmas, dtype=np.float64))
            self.relocalizations += 1

    def _load_map(self) -> None:
        """Start from ``map_file`` (read once, kept for resets): its keyframes are the frozen
        map and the graph; in localization mode the map is not extended.  The first
        keyframe is registered from ``initial_pose``.  MapFileError / ValueError when the
        file cannot be used."""
        if getattr(self, "_map_state", None) is None:
            self._map_state = read_map(self.cfg.map_file)
        frozen = map_state.restore(self, self._map_state)
        self.global_map.loaded(frozen, self._map_state.stamps)
        self.window.grow_map = self.cfg.mode != "localization"
        t, r = self.cfg.initial_pose_sigma
        self.window.set_initial_pose(self.cfg.initial_transform(), np.array([t] * 3 + [r] * 3))
        self.loaded_keyframes = len(self._map_state)

    def _decide_planar(self, points: np.ndarray) -> tuple[str, ...]:
        """``planar: auto``: planar mode iff the first keyframe's cloud lies in z = 0."""
        if self.planar is not None:
            return ()
        self.set_planar(is_planar_cloud(points))
        if self.planar:
            return ("planar clouds (all points at z = 0): planar mode, estimating x, y and yaw; "
                    "z, roll and pitch follow the odometry",)
        return ("3D clouds: estimating full SE(3) poses",)

    def _keyframe(self, cloud: PendingCloud, t_odom_body: np.ndarray, maintain: bool) -> KeyframeUpdate:
        """One keyframe through the window; the loop thread holds back meanwhile."""
        worker = self.global_map.worker
        worker.window_busy()
        try:
            return self._solve_keyframe(cloud, t_odom_body, maintain)
        finally:
            worker.window_done()

    def _track(self, cloud: PendingCloud, t_odom_body: np.ndarray) -> None:
        """A cloud between keyframes registered for the final trajectory (keyframe.track_between)."""
        worker = self.global_map.worker
        worker.window_busy()
        try:
            tracked = self.window.track(t_odom_body, cloud.points)
        finally:
            worker.window_done()
        if tracked is not None:
            self.tracked_scans.append(cloud.stamp, *tracked)

    def _solve_keyframe(self, cloud: PendingCloud, t_odom_body: np.ndarray, maintain: bool) -> KeyframeUpdate:
        notices = self._decide_planar(cloud.points)
        before = (self.window.dropped_capacity, self.window.dropped_points)
        stats = self.window.add_keyframe(cloud.stamp, t_odom_body, cloud.points)
        self.count("voxel_capacity", self.window.dropped_capacity - before[0])
        self.count("points_out_of_range", self.window.dropped_points - before[1])
        self.keyframes += 1
        self.keyframe_odometry.append((cloud.stamp, t_odom_body))
        self.global_map.after_keyframe(cloud.stamp)
        upkeep, closed = self.maintain_map() if maintain else ((), 0)
        self._t_map_odom = self.window.t_map_odom
        self.warm.first_keyframe()
        return KeyframeUpdate(cloud.stamp, stats, cloud.received, self.covariance, self.keyframes,
                              self.compilations_after_warmup(), notices + upkeep, closed)

    def finish(self) -> tuple[str, ...]:
        """End of a trajectory (end of a log, before a final save): every keyframe still
        in the window is frozen and joins the global graph, loops are searched from them
        and a last global solve re-bases the map (the loop back to the start is found
        here: its keyframes would otherwise never leave the window).  Keyframes may
        follow: they start a new window.  Keyframes queued are solved first.  Returns
        the notices."""
        self.process_ready(covariance=False)
        self.window.freeze_all()
        last = self.keyframe_odometry[-1][0] if self.keyframe_odometry else 0.0
        self.global_map.after_keyframe(last)
        notices = self.flush_loops()  # the upkeep (GlobalMapping.maintain) first, then what the worker finishes
        self._t_map_odom = self.window.t_map_odom
        return notices

    def flush_loops(self) -> tuple[str, ...]:
        """Wait for the loop-closure thread and apply what it finished (end of a log,
        before saving the map); returns the notices."""
        return self.global_map.flush()

    def _newest_covariance(self) -> np.ndarray:
        """(6, 6) covariance of the newest keyframe's T_map_body, tangent [rho, phi], body
        frame (``mapping.keyframe_covariance``)."""
        return newest_keyframe_covariance(self.window)
