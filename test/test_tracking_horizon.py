"""The tracking horizon with loop closure on (``mapping.global_mapping``): the window
keeps tracking keyframes that are recent in time **or** in travel.

A stand-in window records what is taken out of its tracked map.  The route: 60 s of
slow wandering in one room (0.1 m/s), then 40 s of driving straight away at 1 m/s.  The
oracle is the rule written out independently: a keyframe leaves once it is older than
``min_interval`` and more than ``horizon_travel`` metres of travel behind the newest
that left the window.  The room must stay tracked for all of the wandering (the time rule
alone drops it after 30 s: the counter-example)."""

import dataclasses

import numpy as np
import pytest

import dsg_jit_ros  # noqa: F401  (float64)
from dsg_jit_ros.mapping.global_graph import LoopConfig
from dsg_jit_ros.mapping.global_mapping import GlobalMapping
from dsg_jit_ros.mapping.pipeline import PipelineConfig
from dsg_jit_ros.mapping.window import FrozenKeyframe


class _Window:
    """Stands in for ``SlidingWindow``: hands over ``leaving``, records ``forget_frozen``."""

    def __init__(self):
        self.leaving: list[FrozenKeyframe] = []
        self.forgotten: list[tuple[np.ndarray, float]] = []  # (T_map_body, stamp when it left)
        self.now = 0.0

    def forget_frozen(self, frozen) -> None:
        self.forgotten += [(pose, self.now) for _, pose in frozen]


def _route() -> list[FrozenKeyframe]:
    out = []
    for k in range(100):
        t = np.eye(4)
        if k < 60:  # wandering: a circle of radius 1 m at 0.1 m/s
            a = 0.1 * k
            t[:2, 3] = np.cos(a), np.sin(a)
        else:  # straight away at 1 m/s
            t[:2, 3] = 1.0 + (k - 59), 0.0
        out.append(FrozenKeyframe(float(k), t, np.eye(4), None, t))
    return out


def _forgotten_stamps(horizon_travel: float) -> list[tuple[float, float]]:
    """(keyframe stamp, stamp of the keyframe after which it left the tracked map)."""
    loop = LoopConfig(enabled=True, min_interval=30.0, horizon_travel=horizon_travel,
                      search_radius=1e-6, drift_per_metre=0.0)  # no loop candidates: only the horizon acts
    cfg = dataclasses.replace(PipelineConfig(), loop=loop)
    window = _Window()
    mapping = GlobalMapping(cfg, window, planar=True, background=False)
    route = _route()
    stamps = {id(k.t_map_body): k.stamp for k in route}
    for k in route:
        window.leaving, window.now = [k], k.stamp
        mapping.after_keyframe(k.stamp)
        mapping.maintain()
    return [(stamps[id(p)], now) for p, now in window.forgotten]


def _oracle(horizon_travel: float) -> list[float]:
    route = _route()
    xy = np.array([k.t_map_body[:2, 3] for k in route])
    travel = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))])
    out = set()
    for now in range(len(route)):  # after each keyframe, what has left so far
        out |= {j for j in range(now + 1) if route[j].stamp < now - 30.0 and travel[j] <= travel[now] - horizon_travel}
    return sorted(route[j].stamp for j in out)


@pytest.mark.parametrize("horizon_travel", [0.0, 15.0])
def test_keyframes_leave_the_tracked_map_by_time_and_travel(horizon_travel):
    got = _forgotten_stamps(horizon_travel)
    stamps = [t for t, _ in got]
    assert stamps == sorted(stamps)  # oldest first
    assert stamps == _oracle(horizon_travel)
    during_wandering = [t for t, now in got if now < 60.0]
    if horizon_travel:  # 6 m of wandering: the room stays tracked while the robot is in it
        assert not during_wandering
        assert 0.0 in stamps  # and leaves once the robot has driven 15 m away
    else:  # counter-example: time alone drops the room while the robot is still in it
        assert len(during_wandering) > 20
