"""The online SLAM data path without ROS: odometry + clouds in, keyframe updates out.

``SlamPipeline`` owns the odometry buffer, the clouds waiting for odometry, the
keyframe selector and the sliding window.  The ROS node converts messages to
arrays and calls ``add_odometry`` / ``add_cloud``; the demo, the benchmark and
the tests call the same methods directly.  Every rejected input is counted under
a reason key (``dropped``) and described in the returned ``Rejection`` so the
caller can log it: nothing is dropped silently.

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
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from dsg_jit_ros.mapping.global_graph import GlobalGraph, LoopConfig
from dsg_jit_ros.mapping.keyframes import KeyframeConfig, KeyframeSelector, relative_motion
from dsg_jit_ros.io.map_file import read_map
from dsg_jit_ros.mapping import map_state
from dsg_jit_ros.mapping.loop_closure import LoopCloser
from dsg_jit_ros.mapping.global_mapping import GlobalMapping
from dsg_jit_ros.mapping.odometry_buffer import OdometryBuffer
from dsg_jit_ros.mapping.planar import PLANAR_FIXED, adjoint_matrix, is_planar_cloud
from dsg_jit_ros.mapping.warm_up import compile_global_graph, synthetic_cloud, warmup_message
from dsg_jit_ros.mapping.window import SlidingWindow, SolveStats, WindowConfig
from dsg_jit_ros.optimization.compile_count import compile_count, compile_counts
from dsg_jit_ros.optimization.covariance import marginal_covariance


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
        t = np.eye(4)
        t[:3, :3] = Rotation.from_euler("xyz", self.initial_pose[3:]).as_matrix()
        t[:3, 3] = self.initial_pose[:3]
        return t

    def body_sensor(self) -> np.ndarray:
        return np.asarray(self.t_body_sensor, dtype=np.float64).reshape(4, 4)


@dataclass(frozen=True)
class Rejection:
    """An input that was not used: a reason key (counted) and a sentence (logged)."""

    reason: str
    detail: str


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


@dataclass
class _PendingCloud:
    stamp: float
    points: np.ndarray  # body frame
    received: float  # time.perf_counter() when it was taken in (for the latency)


class SlamPipeline:
    """Odometry and clouds in; keyframes into the sliding window; estimates out."""

    def __init__(self, cfg: PipelineConfig, background_loops: bool = False):
        """``background_loops``: loop closure and the global solve run in a thread of their
        own (the node); otherwise inside the keyframe update, deterministically (replays)."""
        self.cfg = cfg
        self.background_loops = bool(background_loops)
        self.dropped: Counter[str] = Counter()
        self._lock = threading.RLock()
        self._warm_compiles: int | None = None  # compile count once warm (kept across resets)
        self._warming = 0  # warm-up parts still compiling
        self.graph_ready: threading.Event | None = None  # set when the global graph's solve is compiled
        self._graph_warming = False  # its compile thread was started
        self.warmup_programs: dict[str, int] = {}  # programs compiled by warm_up, by entry name
        self.graph_warmup_s: float | None = None  # seconds the global graph's compile took (in its thread)
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
        if self.global_map is not None:
            self.global_map.worker.close()
        self.global_map = GlobalMapping(self.cfg, self.window, bool(self.planar), self.background_loops,
                                        self.graph_ready)
        self._odom = OdometryBuffer(self.cfg.inputs.odom_buffer)
        self._selector = KeyframeSelector(self.cfg.keyframe)
        self._pending: deque[_PendingCloud] = deque()  # waiting for odometry
        self._ready: deque[tuple[_PendingCloud, np.ndarray]] = deque()  # keyframes to solve, with T_odom_body
        self._last_cloud_stamp: float | None = None
        self._last_odom: tuple[float, np.ndarray] | None = None
        self.keyframes = 0  # solved
        self.selected_keyframes = 0  # solved + queued + being solved
        self.keyframe_odometry: list[tuple[float, np.ndarray]] = []  # (stamp, T_odom_body) per keyframe
        self.skipped_clouds = 0  # valid clouds that were not keyframes (by design, not dropped)
        self.covariance: np.ndarray | None = None
        self._t_map_odom = np.eye(4)
        self.loaded_keyframes = 0  # keyframes of map_file
        if self.cfg.map_file:
            self._load_map()

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

    def close(self) -> None:
        """Stop the loop-closure thread (a node's cleanup)."""
        self.global_map.worker.close()

    def adopt_warm_state(self, other: "SlamPipeline") -> None:
        """Carry over what outlives a map from the pipeline this one replaces (``~/load_map``):
        the warm compile count and the dropped-input and relocalization counters."""
        self._warm_compiles, self._warming = other._warm_compiles, other._warming
        self.graph_ready = self.global_map.worker.ready = other.graph_ready
        self._graph_warming, self.warmup_programs = other._graph_warming, other.warmup_programs
        self.dropped = other.dropped.copy()
        self.relocalizations = other.relocalizations

    def warm_up(self, graph: bool = True) -> float:
        """Compile the solver (and covariance) on a synthetic keyframe, then reset.

        Capacities fix every compiled shape, so after this no keyframe compiles
        again.  With loop closure the global graph's solve (~10 s, not kept by the
        persistent cache: it calls the host) then compiles in a thread of its own, still
        running on return (the node is active meanwhile); the loop worker waits for it
        before its first solve, and the compile count after warm-up is taken when both
        are done.  ``graph=False`` leaves that thread to ``warm_up_graph`` (a node
        starts it once subscribed, so it does not compete with the start-up for the
        cores; the graph is needed only when the first keyframe leaves the window).
        ``warmup_programs`` records the programs compiled (or loaded from the
        persistent cache) here, by entry name.
        Returns the seconds it took (the window's part).
        """
        start = time.perf_counter()
        before = compile_counts()
        self._warming = 2 if self.cfg.loop.enabled else 1
        # (compiling the covariance in a second thread meanwhile was measured slower, warm
        # 2.6 vs 2.3 s, and no faster cold: both traces want the GIL)
        self.window.add_keyframe(0.0, np.eye(4), synthetic_cloud(self.cfg.window.voxel))
        if self.cfg.inputs.compute_covariance:
            self._newest_covariance()
        self.warmup_programs = {k: n - before.get(k, 0) for k, n in compile_counts().items() if n > before.get(k, 0)}
        if self.cfg.loop.enabled:
            self.graph_ready = threading.Event()  # before the reset: the loop worker takes it
        self.reset()
        if graph:
            self.warm_up_graph()
        self._warmed()
        return time.perf_counter() - start

    def warm_up_graph(self) -> bool:
        """Start compiling the global graph's solve in a thread of its own (after
        ``warm_up(graph=False)``); returns whether it started it (not without loop
        closure, not twice)."""
        with self._lock:
            if self.graph_ready is None or self._graph_warming:
                return False
            self._graph_warming = True
        threading.Thread(target=self._warm_graph, args=(self.graph_ready,), name="dsg_jit_graph_warmup",
                         daemon=True).start()
        return True

    def warmup_message(self, seconds: float) -> str:
        """The warm-up's log line (``mapping.warm_up.warmup_message``)."""
        return warmup_message(self.warmup_programs, seconds)

    def _warm_graph(self, ready: threading.Event) -> None:
        try:
            self.graph_warmup_s = compile_global_graph(self.cfg.loop)
        finally:
            ready.set()
            self._warmed()

    def _warmed(self) -> None:
        """One warm-up part done; the last one fixes the compile count baseline."""
        with self._lock:
            self._warming -= 1
            if self._warming == 0:
                self._warm_compiles = compile_count()

    @property
    def t_map_odom(self) -> np.ndarray:
        """The current correction ``T_map_odom`` (identity before the first keyframe).

        A snapshot replaced (never mutated) after each keyframe, so another thread
        may read it while a solve runs."""
        return self._t_map_odom

    def compilations_after_warmup(self) -> int:
        """Compilations since ``warm_up`` (or the first keyframe without it); target 0.
        The global graph's recompiles when its capacity doubles are planned, not counted."""
        if self._warm_compiles is None:
            return 0
        grown = self.global_map.graph.growth_compiles if self.global_map is not None else 0
        return compile_count() - self._warm_compiles - grown

    def count(self, reason: str, n: int = 1) -> None:
        """Add ``n`` to the dropped-input counter ``reason`` (thread-safe)."""
        if n:
            with self._lock:
                self.dropped[reason] += n

    def dropped_snapshot(self) -> dict[str, int]:
        """A copy of the non-zero dropped-input counters, sorted by reason."""
        with self._lock:
            return {k: int(v) for k, v in sorted(self.dropped.items()) if v}

    def _reject(self, reason: str, detail: str) -> Rejection:
        self.count(reason)
        return Rejection(reason, detail)

    # ---- odometry -----------------------------------------------------------
    def add_odometry(self, stamp: float, t_odom_body: np.ndarray) -> Rejection | None:
        """Buffer one odometry pose; returns a Rejection when it is not used."""
        with self._lock:
            return self._add_odometry(stamp, t_odom_body)

    def _add_odometry(self, stamp: float, t_odom_body: np.ndarray) -> Rejection | None:
        t = np.asarray(t_odom_body, dtype=np.float64)
        if t.shape != (4, 4) or not np.all(np.isfinite(t)) or not np.isfinite(stamp):
            return self._reject("non_finite_pose", f"odometry at {stamp} is not a finite pose")
        if self._last_odom is not None:
            last_stamp, last_t = self._last_odom
            if stamp == last_stamp:
                return self._reject("odom_duplicate_stamp", f"odometry stamp {stamp:.9f} repeats the previous one")
            if stamp < last_stamp:
                return self._reject("odom_out_of_order",
                                    f"odometry stamp {stamp:.9f} is older than the newest {last_stamp:.9f}")
            dist, angle = relative_motion(last_t, t)
            dt = stamp - last_stamp
            if dist > self.cfg.inputs.max_linear_speed * dt or angle > self.cfg.inputs.max_angular_speed * dt:
                return self._reject(
                    "odom_jump", f"odometry jumped {dist:.3f} m / {angle:.3f} rad in {dt:.3f} s at {stamp:.3f} "
                    "(above max_linear_speed / max_angular_speed); call ~/reset if the odometry was re-initialised")
        try:
            self._odom.add(stamp, t)
        except ValueError as err:
            return self._reject("bad_pose", str(err))
        self._last_odom = (float(stamp), t)
        return None

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
            return self._ingest_cloud(stamp, points_sensor, received)

    def _ingest_cloud(self, stamp: float, points_sensor: np.ndarray, received: float) -> list[Rejection]:
        rejections: list[Rejection] = []
        pts = np.asarray(points_sensor, dtype=np.float64)
        if not np.isfinite(stamp):
            return [self._reject("bad_stamp", f"cloud stamp {stamp} is not finite")]
        if self._last_cloud_stamp is not None and stamp <= self._last_cloud_stamp:
            kind = "cloud_duplicate_stamp" if stamp == self._last_cloud_stamp else "cloud_out_of_order"
            return [self._reject(kind, f"cloud stamp {stamp:.9f} is not after the previous {self._last_cloud_stamp:.9f}")]
        if pts.ndim != 2 or pts.shape[1] != 3:
            return [self._reject("malformed", f"cloud points have shape {pts.shape}, expected (N, 3)")]
        self._last_cloud_stamp = float(stamp)
        if pts.shape[0] == 0:
            return [self._reject("empty_cloud", f"cloud at {stamp:.3f} has no points")]
        finite = np.all(np.isfinite(pts), axis=1)
        n_bad = int((~finite).sum())
        if n_bad:
            self.count("points_non_finite", n_bad)
            rejections.append(Rejection("points_non_finite", f"{n_bad} of {len(pts)} points at {stamp:.3f} are NaN/inf"))
            pts = pts[finite]
        if pts.shape[0] < self.cfg.inputs.min_points:
            rejections.append(self._reject(
                "too_few_points", f"cloud at {stamp:.3f} has {pts.shape[0]} valid points (< min_points)"))
            return rejections
        t_bs = self.cfg.body_sensor()
        self._pending.append(_PendingCloud(float(stamp), pts @ t_bs[:3, :3].T + t_bs[:3, 3], received))
        rejections += self._select_ready()
        while len(self._pending) > self.cfg.inputs.max_pending_clouds:
            old = self._pending.popleft()
            rejections.append(self._reject(
                "cloud_queue_full", f"cloud at {old.stamp:.3f} dropped: more than max_pending_clouds = "
                f"{self.cfg.inputs.max_pending_clouds} clouds wait for odometry covering their stamps"))
        return rejections

    def select_ready(self) -> list[Rejection]:
        """Move waiting clouds that odometry now covers to the keyframe queue (or skip
        them when they are not keyframes).  Clouds beyond the newest odometry wait."""
        with self._lock:
            return self._select_ready()

    def _select_ready(self) -> list[Rejection]:
        rejections: list[Rejection] = []
        span = self._odom.span
        while self._pending and span is not None and self._pending[0].stamp <= span[1]:
            cloud = self._pending.popleft()
            if cloud.stamp < span[0]:
                rejections.append(self._reject(
                    "cloud_before_odometry", f"cloud at {cloud.stamp:.3f} is older than the buffered odometry ({span[0]:.3f})"))
                continue
            t_odom_body = self._odom.interpolate(cloud.stamp)
            if not self._selector.is_keyframe(t_odom_body):
                self.skipped_clouds += 1
                continue
            self._selector.accept(t_odom_body)
            self.selected_keyframes += 1
            self._ready.append((cloud, t_odom_body))
        return rejections

    @property
    def queued_keyframes(self) -> int:
        """Selected keyframes not solved yet."""
        return len(self._ready)

    def process_ready(self, max_keyframes: int | None = None, covariance: bool = True,
                      maintenance: bool = True) -> list[KeyframeUpdate]:
        """Solve queued keyframes (all, or at most ``max_keyframes``) in order.

        ``covariance``: also compute each keyframe's covariance (when configured)
        before returning its update; ``maintenance``: also apply a finished loop-closure
        solve and trim the tracked map (``GlobalMapping.maintain``).  A node passes False
        for both, publishes, and then calls ``refresh_covariance`` and ``maintain_map``,
        so that neither is on the keyframe's latency.
        """
        updates = []
        while self._ready and (max_keyframes is None or len(updates) < max_keyframes):
            cloud, t_odom_body = self._ready.popleft()
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

    def _keyframe(self, cloud: _PendingCloud, t_odom_body: np.ndarray, maintain: bool) -> KeyframeUpdate:
        """One keyframe through the window; the loop thread holds back meanwhile."""
        worker = self.global_map.worker
        worker.window_busy()
        try:
            return self._solve_keyframe(cloud, t_odom_body, maintain)
        finally:
            worker.window_done()

    def _solve_keyframe(self, cloud: _PendingCloud, t_odom_body: np.ndarray, maintain: bool) -> KeyframeUpdate:
        notices = self._decide_planar(cloud.points)
        before = (self.window.dropped_capacity, self.window.dropped_points)
        stats = self.window.add_keyframe(cloud.stamp, t_odom_body, cloud.points)
        self.count("voxel_capacity", self.window.dropped_capacity - before[0])
        self.count("points_out_of_range", self.window.dropped_points - before[1])
        self.keyframes += 1
        self.keyframe_odometry.append((cloud.stamp, t_odom_body))
        closed_before = self.global_map.loops_closed
        notices += self.global_map.after_keyframe(cloud.stamp, maintain)
        self._t_map_odom = self.window.t_map_odom
        if self._warm_compiles is None and not self._warming:
            self._warm_compiles = compile_count()
        return KeyframeUpdate(cloud.stamp, stats, cloud.received, self.covariance, self.keyframes,
                              self.compilations_after_warmup(), notices, self.global_map.loops_closed - closed_before)

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
        notices = self.global_map.after_keyframe(last) + self.flush_loops()
        self._t_map_odom = self.window.t_map_odom
        return notices

    def flush_loops(self) -> tuple[str, ...]:
        """Wait for the loop-closure thread and apply what it finished (end of a log,
        before saving the map); returns the notices."""
        return self.global_map.flush()

    def _newest_covariance(self) -> np.ndarray:
        """(6, 6) covariance of the newest keyframe's T_map_body, tangent [rho, phi], body
        frame, from the window's last solve (``SlidingWindow.newest_covariance``: at its last
        linearisation point; the Hessian at the current state when the solver keeps no
        factor).  Planar mode: the window's pose is the planar part P of T = P L; fixed
        components (z, roll, pitch) have zero variance, and the block is moved to the
        body by Ad(L^-1) (T = P exp(d) L = T exp(Ad(L^-1) d))."""
        cov = self.window.newest_covariance()  # from the last solve's reduced system
        if cov is None:
            wm = self.window.wm
            x, _ = wm.pack_state()
            graph = wm.fg
            pos = graph.layout.position("pose_se3")
            cov = np.array(marginal_covariance(graph, x, pos, wm.variable_slot(self.window.newest_keyframe_var)))
        if self.window.planar:
            cov[PLANAR_FIXED] = 0.0
            cov[:, PLANAR_FIXED] = 0.0
            ad = adjoint_matrix(np.linalg.inv(self.window.newest_level))
            cov = ad @ cov @ ad.T
        return cov
