"""The pieces of a pipeline's warm-up (``SlamPipeline.warm_up``): what it compiles on,
what it has compiled (``WarmUp``: the compile count baseline, the background compile
thread), and how it says so.

A node compiles before it subscribes: the window's solve and the covariance (on a
synthetic keyframe: capacities fix every shape, so no keyframe compiles later).  Two
programs are not needed for the first keyframe, so a node compiles them once active,
one after the other in a thread of its own: the window's solve on the used prefix of
its capacities (``window.prefix_fraction``: faster, used from when it is ready) and
the global graph's solve (loop closure, needed once a keyframe leaves the window).
Start-up time on a warm compile cache is mostly JAX tracing and lowering, redone in
every process, not XLA (``bench/startup_profile.py`` shows where it goes).
"""

from __future__ import annotations

import threading
import time
from typing import Callable

import numpy as np

from dsg_jit_ros.mapping.global_graph import GlobalGraph, LoopConfig
from dsg_jit_ros.mapping.voxelize import VoxelConfig
from dsg_jit_ros.optimization.compile_count import compile_count, compile_counts


def synthetic_cloud(voxel: VoxelConfig, n: int = 500) -> np.ndarray:
    """(n, 3) body-frame points in every direction within the sensor's range (m)."""
    rng = np.random.default_rng(0)
    lo = max(voxel.min_range, 1e-3)
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    return direction * rng.uniform(lo, voxel.max_range, size=(n, 1)) * 0.99


def compile_global_graph(cfg: LoopConfig) -> float:
    """Compile the global graph's solve (``GlobalGraph`` has fixed capacities, so any
    graph gives the same shapes) and import what loop verification needs
    (``mapping.correlative``: scipy.signal, ~0.4 s); returns the seconds it took."""
    start = time.perf_counter()
    import scipy.ndimage  # noqa: F401
    import scipy.signal  # noqa: F401

    graph = GlobalGraph(cfg)
    graph.add(0.0, np.eye(4), np.eye(4), None)
    graph.add(1.0, np.eye(4), np.eye(4), None)
    graph.add_loop(0, 1, np.eye(4))
    graph.optimize()
    return time.perf_counter() - start


def warmup_message(programs: dict[str, int], seconds: float) -> str:
    """The warm-up's log line: how many programs it built (compiled, or loaded from the
    persistent compile cache; each one traced and lowered in this process), which, and
    the seconds: ``warm-up: N programs built (name, ...) in S s; ...``."""
    names = ", ".join(f"{k} x{n}" if n > 1 else k for k, n in sorted(programs.items()))
    return f"warm-up: {sum(programs.values())} programs built ({names}) in {seconds:.1f} s; no compile after this"


def programs_since(before: dict[str, int]) -> dict[str, int]:
    """Programs compiled (or loaded from the persistent cache) since ``before`` (a
    ``compile_counts()`` snapshot), by entry name."""
    return {k: n - before.get(k, 0) for k, n in compile_counts().items() if n > before.get(k, 0)}


class WarmUp:
    """What a pipeline's warm-up has done, kept across resets and handed on to the
    pipeline that replaces it (``~/load_map``, ``SlamPipeline.adopt_warm_state``).

    The warm-up has parts (the window's solve and covariance; its solve on the
    prefix; the global graph's solve with loop closure; the last two may compile in a
    thread of their own, ``start_background``); when the last part is done the
    process-wide compile count is taken as ``baseline``, and ``compilations_after``
    counts from it (target 0).  Without a warm-up the first keyframe sets the
    baseline (``first_keyframe``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.baseline: int | None = None  # compile count once warm
        self._parts = 0  # warm-up parts still compiling
        self.graph_ready: threading.Event | None = None  # set when the global graph's solve is compiled
        self.prefix_ready: threading.Event | None = None  # set when the window's prefix solve is compiled
        self.prefix_done: threading.Event | None = None  # set when its compile ended, compiled or failed
        self.prefix_error: BaseException | None = None  # why it failed in the background (the window solves whole)
        self._prefix_job: Callable[[], float] | None = None  # that compile, until started
        self._graph_started = False  # its compile thread was started
        self._thread: threading.Thread | None = None  # the background compile (start_background)
        self.programs: dict[str, int] = {}  # programs compiled by the warm-up, by entry name
        self.graph_seconds: float | None = None  # seconds the global graph's compile took (in its thread)
        self.prefix_seconds: float | None = None  # seconds the prefix solve's compile took

    def begin(self, loop_closure: bool) -> None:
        """A warm-up starts: the window's part, and the graph's with ``loop_closure`` (its
        ``graph_ready`` event is created here: the loop worker built at the next reset
        waits for it)."""
        self._parts = 2 if loop_closure else 1
        if loop_closure:
            self.graph_ready = threading.Event()

    def add_prefix(self, job: Callable[[], float] | None) -> None:
        """The window's prefix solve is a part (``SlidingWindow.prefix_warm_up``'s job,
        run by ``compile_prefix`` or ``start_background``; None: no prefix, no part).
        Windows built afterwards take its ``prefix_ready``."""
        if job is None:
            return
        with self._lock:
            self._parts += 1
            self.prefix_ready, self.prefix_done, self._prefix_job = threading.Event(), threading.Event(), job

    def compile_prefix(self) -> None:
        """Run the prefix part now, in this thread (if added and not started)."""
        with self._lock:
            job, self._prefix_job = self._prefix_job, None
        if job is not None:
            self._run_prefix(job)

    def _run_prefix(self, job: Callable[[], float]) -> None:
        try:
            self.prefix_seconds = job()
            self.prefix_ready.set()  # not on failure: the window keeps its whole program
        finally:
            self.prefix_done.set()
            self.part_done()

    def part_done(self) -> None:
        """One warm-up part done; the last one fixes the compile count baseline."""
        with self._lock:
            self._parts -= 1
            if self._parts == 0:
                self.baseline = compile_count()

    def first_keyframe(self) -> None:
        """A keyframe was solved: without a warm-up (none done, none under way) its
        compile count is the baseline."""
        if self.baseline is None and not self._parts:
            self.baseline = compile_count()

    def compilations_after(self) -> int:
        """Compilations since the baseline (0 before there is one)."""
        if self.baseline is None:
            return 0
        return compile_count() - self.baseline

    def start_background(self, cfg: LoopConfig) -> bool:
        """Start a thread of its own that compiles the prefix part (if not run yet) and
        then the global graph's solve (if loop closure; not twice); returns whether it
        started one."""
        with self._lock:
            job, self._prefix_job = self._prefix_job, None
            graph = self.graph_ready is not None and not self._graph_started
            self._graph_started |= graph
        if job is None and not graph:
            return False
        self._thread = threading.Thread(target=self._background, args=(job, cfg if graph else None),
                                        name="dsg_jit_warmup", daemon=True)
        self._thread.start()
        return True

    def join(self, timeout: float = 300.0) -> None:
        """Wait for the background compile, if one runs (before the process exits: a
        thread stopped inside XLA's compiler at interpreter exit aborts the process)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _background(self, job: Callable[[], float] | None, cfg: LoopConfig | None) -> None:
        try:
            if job is not None:
                try:
                    self._run_prefix(job)
                except Exception as err:  # noqa: BLE001 - kept for the node to log; the window solves whole
                    self.prefix_error = err
        finally:
            if cfg is not None:
                self._compile_graph(cfg, self.graph_ready)

    def _compile_graph(self, cfg: LoopConfig, ready: threading.Event) -> None:
        try:
            self.graph_seconds = compile_global_graph(cfg)
        finally:
            ready.set()
            self.part_done()
