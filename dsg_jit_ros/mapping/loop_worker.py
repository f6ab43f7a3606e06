"""Loop closing beside the window: the global graph, its loop search and its solve.

The window's owner (``SlamPipeline``) hands every keyframe that leaves the window to
``LoopWorker.submit`` and, once per keyframe, takes a finished global solve from
``poll`` (a ``GraphUpdate``) to re-base the window and the frozen map on it.
``background=True`` (the node): a thread of its own adds the nodes, searches and
verifies loops (``mapping.loop_closure``) and solves the graph
(``mapping.global_graph``), so a loop closure never delays a keyframe.
``background=False`` (replays, tests, benchmarks): the same work runs inside
``submit``, deterministically.

Sharing the cores: the owner marks each keyframe it processes (``window_busy`` /
``window_done``); the thread starts each step (a node and its loop search, a solve)
only while the window is idle, waiting at most ``YIELD_TIMEOUT`` seconds, so on a
robot (keyframes every few hundred ms) loop closing fills the gaps between
keyframes rather than competing with them for the GIL and the cores.

Frames: each applied update moves the map, starting a new map-frame *generation*.
At most one update is in flight: the worker waits until the owner has taken it
before it processes more keyframes, and a keyframe that left the window before
the owner applied update ``g`` (its poses in the older frame) is moved by that
update's correction before it joins the graph.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

from dsg_jit_ros.mapping.global_graph import GlobalGraph
from dsg_jit_ros.mapping.loop_closure import LoopAttempt, LoopCloser

YIELD_TIMEOUT = 0.25  # s: the longest the loop thread waits for an idle window before a step


@dataclass(frozen=True)
class Departure:
    """A keyframe that left the window (``window.FrozenKeyframe``) and the map-frame
    generation its poses are in."""

    keyframe: object  # FrozenKeyframe: stamp, t_map_body, level, cells, t_key
    generation: int


@dataclass(frozen=True)
class GraphUpdate:
    """A finished global solve, for the owner to apply.

    ``placed``: every node's (cells, T_map_body, keying pose), oldest first (the frozen
    map's contents; retired nodes have none: their submaps are ``retired_map``),
    ``stamps`` their stamps (s); ``trajectory``: (stamp, T_map_body of the body) of the nodes after
    the loaded map's; ``correction``: T_new @ T_old^-1 of the newest node (map frame),
    which moves the window and keyframes frozen since; ``rekey``: the newest node moved
    by a quarter voxel or more, so the window's observations are re-keyed.
    """

    generation: int
    nodes: int
    placed: list
    retired_map: object  # VoxelMap of the retired nodes' submaps (not modified afterwards)
    stamps: np.ndarray
    trajectory: list
    correction: np.ndarray
    rekey: bool
    accepted: tuple[LoopAttempt, ...]
    loops: tuple[tuple[int, int], ...]  # (older, newer) node indices of every loop edge in the graph
    positions: np.ndarray  # (nodes, 3) node positions after the solve (map frame, m)
    solve_ms: float


def moved_little(before: np.ndarray, after: np.ndarray, voxel_size: float, max_range: float) -> np.ndarray:
    """(n,) whether each pose's points within ``max_range`` moved by less than a quarter
    voxel between ``before`` and ``after`` ((n, 4, 4)): such a keyframe keeps its voxel
    keys (re-keying re-cuts the map for nothing and measurably perturbs it)."""
    d = np.linalg.inv(before) @ after
    angle = np.arccos(np.clip((np.trace(d[:, :3, :3], axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0))
    shift = np.linalg.norm(d[:, :3, 3], axis=1) + angle * max_range
    return shift < 0.25 * voxel_size


class LoopWorker:
    """Owns the global graph and the loop closer; see the module doc.

    ``lock`` guards the graph: hold it to read the graph from another thread
    (``map_state.capture``).  Counters (``attempts``, ``reasons``, ``in_place``, ``solves``,
    ``last_solve_ms``) are plain ints/Counters updated by the worker.
    """

    def __init__(self, graph: GlobalGraph, closer: LoopCloser, voxel_size: float, max_range: float,
                 background: bool = False, loaded: int = 0, ready: threading.Event | None = None):
        """``ready``: set once the graph's solve is compiled (a warm-up in another thread):
        the first solve waits for it rather than compiling the same program again."""
        self.graph, self.closer = graph, closer
        self.voxel_size, self.max_range = float(voxel_size), float(max_range)
        self.background = bool(background)
        self.loaded = int(loaded)  # nodes of a loaded map (not in the trajectory)
        self.ready = ready
        self.lock = threading.RLock()
        self.generation = 0  # updates posted
        self._corrections: dict[int, np.ndarray] = {}  # generation -> its correction
        self._queue: deque[Departure] = deque()
        self._pending: GraphUpdate | None = None
        self._busy = False
        self._stop = False
        self._window_idle = threading.Event()  # cleared while the owner processes a keyframe
        self._window_idle.set()
        self._cond = threading.Condition()
        self.attempts = 0  # loop candidates verified
        self.reasons: Counter[str] = Counter()  # their outcomes
        self.in_place = 0  # accepted partial loops measured again where they are (``LoopAttempt.in_place``)
        self.solves = 0
        self.last_solve_ms = 0.0
        self.error: BaseException | None = None  # the worker thread's failure, re-raised by poll
        self._thread = None
        if self.background:
            self._thread = threading.Thread(target=self._run, name="dsg_jit_loops", daemon=True)
            self._thread.start()

    # ---- owner side ----------------------------------------------------------
    def submit(self, keyframes, generation: int) -> None:
        """Keyframes that left the window (``FrozenKeyframe``s, poses in ``generation``)."""
        items = [Departure(k, generation) for k in keyframes]
        if not items:
            return
        with self._cond:
            self._queue.extend(items)
            self._cond.notify_all()
        if not self.background:
            self._process()

    def window_busy(self) -> None:
        """The owner starts a keyframe: the thread holds back its next step."""
        self._window_idle.clear()

    def window_done(self) -> None:
        """The owner finished its keyframe."""
        self._window_idle.set()

    def poll(self) -> GraphUpdate | None:
        """The finished update not applied yet (taking it lets the worker go on)."""
        if self.error is not None:
            err, self.error = self.error, None
            raise RuntimeError(f"the loop-closure thread failed: {err!r}") from err
        with self._cond:
            update, self._pending = self._pending, None
            if update is not None:
                self._cond.notify_all()
            return update

    def flush(self, timeout: float = 60.0) -> GraphUpdate | None:
        """Wait until every submitted keyframe is in the graph (and a loop it closed is
        solved); returns the pending update, if any.  With an update in flight, its
        keyframes are processed only after ``poll``: call again after applying it."""
        if not self.background:
            self._process()
            return self.poll()
        deadline = time.monotonic() + timeout
        with self._cond:
            while (self._busy or (self._queue and self._pending is None)) and self.error is None:
                if not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"the loop-closure thread did not finish within {timeout:.0f} s")
        return self.poll()

    @property
    def idle(self) -> bool:
        """Nothing queued, being processed or waiting to be applied."""
        with self._cond:
            return not (self._queue or self._busy or self._pending)

    def close(self) -> None:
        """Stop the thread (after the step it is in)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=60.0)
            self._thread = None

    # ---- worker side ---------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and not (self._queue and self._pending is None):
                    self._cond.wait(timeout=1.0)
                if self._stop:
                    return
            try:
                self._process()
            except BaseException as err:  # surfaced to the owner by poll()
                with self._cond:
                    self.error, self._busy = err, False
                    self._queue.clear()
                    self._cond.notify_all()

    def _process(self) -> None:
        """Add the queued keyframes as nodes, try loops from each, solve when one closed."""
        with self._cond:
            if self._pending is not None or not self._queue:
                return
            items = list(self._queue)
            self._queue.clear()
            self._busy = True
        closed: list[LoopAttempt] = []
        with self.lock:
            graph = self.graph
            for item in items:
                self._yield_to_window()
                kf, c = item.keyframe, self._correction_since(item.generation)
                index = graph.add(kf.stamp, c @ kf.t_map_body, kf.level, kf.cells, c @ kf.t_key)
                for attempt in self.closer.process(graph, index):
                    self.attempts += 1
                    self.reasons[attempt.reason] += 1
                    if attempt.accepted:
                        self.in_place += attempt.in_place
                        closed.append(attempt)
            if closed:
                self._yield_to_window()
            update = self._solve(closed) if closed else None
        with self._cond:
            self._busy = False
            if update is not None:
                self._pending = update
                self.generation = update.generation
                self._corrections[update.generation] = update.correction
            self._cond.notify_all()

    def _yield_to_window(self) -> None:
        """In the thread: wait (up to ``YIELD_TIMEOUT``) until no keyframe is being processed."""
        if self.background:
            self._window_idle.wait(YIELD_TIMEOUT)

    def _correction_since(self, generation: int) -> np.ndarray:
        """The map correction from frame ``generation`` to the graph's current frame."""
        c = np.eye(4)
        for g in range(generation + 1, self.generation + 1):
            c = self._corrections[g] @ c
        return c

    def _solve(self, closed: list[LoopAttempt]) -> GraphUpdate:
        if self.ready is not None:
            self.ready.wait()
        graph = self.graph
        start = time.perf_counter()
        before = graph.optimize()
        after = graph.all_poses()
        keep = moved_little(before, after, self.voxel_size, self.max_range)
        keyed = np.where(keep[:, None, None], before, after)
        nodes = graph.nodes
        placed = [(n.cells, p, k @ n.key_offset) for n, p, k in zip(nodes, after, keyed)]
        trajectory = [(n.stamp, p @ n.level) for n, p in zip(nodes[self.loaded:], after[self.loaded:])]
        ms = 1e3 * (time.perf_counter() - start)
        self.solves += 1
        self.last_solve_ms = ms
        return GraphUpdate(
            generation=self.generation + 1, nodes=len(nodes), placed=placed, retired_map=graph.retired_map,
            stamps=np.array([n.stamp for n in nodes]), trajectory=trajectory,
            correction=after[-1] @ np.linalg.inv(before[-1]), rekey=not bool(keep[-1]), accepted=tuple(closed),
            loops=tuple((e.older, e.newer) for e in graph.loops), positions=after[:, :3, 3].copy(), solve_ms=ms)
