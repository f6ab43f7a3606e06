"""The loop thread gives way to the window (issue 8: window latency with loop closure).

While the owner processes a keyframe (``window_busy``) the loop thread must not start
a step (adding nodes, verifying loops); once the keyframe is done it goes on, and a
window that stays busy only delays it by ``YIELD_TIMEOUT`` per step (no starvation)."""

import time

import numpy as np

import dsg_jit_ros  # noqa: F401  (float64)
from dsg_jit_ros.mapping import loop_worker
from dsg_jit_ros.mapping.global_graph import GlobalGraph, LoopConfig
from dsg_jit_ros.mapping.loop_closure import LoopCloser
from dsg_jit_ros.mapping.loop_worker import LoopWorker
from dsg_jit_ros.mapping.registration import RegistrationConfig
from dsg_jit_ros.mapping.voxel_map import SurfaceConfig
from dsg_jit_ros.mapping.window import FrozenKeyframe


def _keyframes(n: int) -> list[FrozenKeyframe]:
    out = []
    for k in range(n):
        t = np.eye(4)
        t[0, 3] = 0.5 * k  # a straight line: no loop candidates, only nodes to add
        out.append(FrozenKeyframe(float(k), t, np.eye(4), None, t))
    return out


def _worker() -> LoopWorker:
    cfg = LoopConfig(enabled=True)
    return LoopWorker(GlobalGraph(cfg, planar=True),
                      LoopCloser(cfg, 0.2, SurfaceConfig(), RegistrationConfig()),
                      0.2, 30.0, background=True)


def _wait(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_the_loop_thread_waits_for_the_keyframe_then_catches_up(monkeypatch):
    monkeypatch.setattr(loop_worker, "YIELD_TIMEOUT", 30.0)
    worker = _worker()
    try:
        worker.window_busy()
        worker.submit(_keyframes(5), 0)
        time.sleep(0.5)
        assert len(worker.graph) == 0  # nothing added while the window works
        worker.window_done()
        assert _wait(lambda: len(worker.graph) == 5, 10.0)
        assert worker.flush() is None and worker.idle
    finally:
        worker.close()


def test_a_window_that_stays_busy_only_delays_the_loop_thread(monkeypatch):
    monkeypatch.setattr(loop_worker, "YIELD_TIMEOUT", 0.05)
    worker = _worker()
    try:
        worker.window_busy()  # never done: each step waits YIELD_TIMEOUT, then goes on
        start = time.monotonic()
        worker.submit(_keyframes(4), 0)
        assert _wait(lambda: len(worker.graph) == 4, 10.0)
        assert time.monotonic() - start >= 4 * 0.05
    finally:
        worker.close()


def test_without_a_thread_nothing_waits():
    cfg = LoopConfig(enabled=True)
    worker = LoopWorker(GlobalGraph(cfg, planar=True), LoopCloser(cfg, 0.2, SurfaceConfig(), RegistrationConfig()),
                        0.2, 30.0, background=False)
    worker.window_busy()  # replays run inline, deterministically: the owner is the worker
    start = time.monotonic()
    worker.submit(_keyframes(3), 0)
    assert len(worker.graph) == 3 and time.monotonic() - start < loop_worker.YIELD_TIMEOUT
