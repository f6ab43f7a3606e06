"""A verified loop joins the graph only with a second, nearby one implying the same correction.

Registration is replaced by a stand-in that reports a chosen relative pose, so the rule
itself is checked: the oracle is the correction each match implies (closed form)."""

import dataclasses

import numpy as np
import pytest

import dsg_jit_ros  # noqa: F401  (float64)
from dsg_jit_ros.mapping import loop_closure
from dsg_jit_ros.mapping.global_graph import GlobalGraph, LoopConfig
from dsg_jit_ros.mapping.loop_closure import CONFIRM_TRAVEL, LoopAttempt, LoopCloser
from dsg_jit_ros.mapping.registration import RegistrationConfig
from dsg_jit_ros.mapping.voxel_map import SurfaceConfig


def _along_x(x: float) -> np.ndarray:
    t = np.eye(4)
    t[0, 3] = x
    return t


class _Closer(LoopCloser):
    """Every candidate 'verifies' at the current estimate shifted by ``shift`` (m, x)."""

    shift = 0.0

    def verify(self, graph, older, newer):
        t_older, t_newer = graph.poses([older, newer])
        rel = np.linalg.inv(t_older) @ _along_x(self.shift) @ t_newer
        return LoopAttempt(older, newer, True, "accepted", overlap=1.0, t_older_newer=rel)


@pytest.fixture
def setup(monkeypatch):
    monkeypatch.setattr(loop_closure, "candidates", lambda graph, newest, cfg: [0] if newest else [])
    cfg = LoopConfig(enabled=True, min_spacing=0.0)
    graph = GlobalGraph(cfg, planar=True)
    closer = _Closer(cfg, 0.2, SurfaceConfig(), RegistrationConfig())
    return graph, closer


def _step(graph, closer, x):
    index = graph.add(float(len(graph.nodes)), _along_x(x), np.eye(4), None)
    return closer.process(graph, index)


def test_two_agreeing_loops_close_together(setup):
    graph, closer = setup
    _step(graph, closer, 0.0)
    assert [a.reason for a in _step(graph, closer, 1.0)] == ["unconfirmed"]
    got = _step(graph, closer, 2.0)
    assert [a.accepted for a in got] == [True, True] and len(graph.loops) == 2


def test_loops_far_apart_do_not_confirm_each_other(setup):
    graph, closer = setup
    _step(graph, closer, 0.0)
    _step(graph, closer, 1.0)  # pending
    # the next match comes after more than CONFIRM_TRAVEL of travel (one try later, so the
    # count of tries alone would pair them: two matches implying no correction always agree)
    got = _step(graph, closer, 1.0 + CONFIRM_TRAVEL + 1.0)
    assert [a.reason for a in got] == ["unconfirmed"] and not graph.loops


def test_loops_implying_different_corrections_do_not_confirm(setup):
    graph, closer = setup
    _step(graph, closer, 0.0)
    _step(graph, closer, 1.0)
    closer.shift = 5 * graph.cfg.sigma_translation  # the second match moves the map elsewhere
    got = _step(graph, closer, 2.0)
    assert [a.reason for a in got] == ["unconfirmed"] and not graph.loops


class _CorridorCloser(_Closer):
    """As ``_Closer``, but every match is a corridor's: free along x (partial loop edge)."""

    lateral = 0.0

    def verify(self, graph, older, newer):
        attempt = super().verify(graph, older, newer)
        shifted = attempt.t_older_newer @ _along_x(0.0)
        shifted[1, 3] += self.lateral
        w = np.diag(1.0 / graph.cfg.loop_sigmas())
        w[0] = 0.0
        return dataclasses.replace(attempt, t_older_newer=shifted, sqrt_info=w, partial=True)


@pytest.fixture
def corridor(monkeypatch):
    monkeypatch.setattr(loop_closure, "candidates", lambda graph, newest, cfg: [0] if newest else [])
    cfg = LoopConfig(enabled=True, min_spacing=0.0, partial=True)
    return GlobalGraph(cfg, planar=True), _CorridorCloser(cfg, 0.2, SurfaceConfig(), RegistrationConfig())


def test_partial_loops_confirm_each_other_across_the_corridor_only(corridor):
    """Two corridor matches 2 m apart along the corridor (look-alike doors) imply the same
    lateral position and heading: they confirm each other, and the edges keep their
    square-root informations.  0.25 m apart across it (5 sigma) they do not."""
    graph, closer = corridor
    _step(graph, closer, 0.0)
    assert [a.reason for a in _step(graph, closer, 1.0)] == ["unconfirmed"]
    closer.shift = 2.0  # along the free axis
    got = _step(graph, closer, 2.0)
    assert [a.accepted for a in got] == [True, True] and len(graph.loops) == 2
    assert all(e.sqrt_info[0, 0] == 0.0 and e.information[0, 0] == 0.0 for e in graph.loops)
    closer.lateral = 5 * graph.cfg.sigma_translation
    _step(graph, closer, 3.0)  # pending (the shift along x is its own)
    closer.lateral = 0.0
    got = _step(graph, closer, 4.0)
    assert [a.reason for a in got] == ["unconfirmed"] and len(graph.loops) == 2
