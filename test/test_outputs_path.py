"""``~/path``: serialised with numpy (``convert.path_cdr``), reusing the rows of frozen
keyframes (``ros.outputs.SlamOutputs.trajectory``).

Serialisation: the bytes deserialise (rclpy, the active RMW's type support) to the
message built from PoseStamped objects (``convert.path_msg``), for frame names of every
length modulo 8 (the CDR padding) and 0, 1, 2 or more poses.

Cache: the oracle is the path built from scratch (``convert.path_msg`` of
``keyframe_poses``) after every step of a run: keyframes freezing one by one, a re-base
replacing the frozen trajectory (loop closure), a reset to a shorter one.  A cache keyed
on the length alone (the counter-example ``_LengthKeyed``) publishes the pre-re-base poses."""

from types import SimpleNamespace

import numpy as np

import pytest
from builtin_interfaces.msg import Time
from nav_msgs.msg import Path
from rclpy.serialization import deserialize_message, serialize_message

from dsg_jit_ros.ros import outputs as outputs_module
from dsg_jit_ros.geometry.poses import from_xyz_rpy
from dsg_jit_ros.ros import convert
from dsg_jit_ros.ros.outputs import SlamOutputs


class _Window:
    """Stands in for ``SlidingWindow``: frozen ``trajectory`` + live keyframes."""

    def __init__(self):
        self.trajectory: list = []
        self.live: list = []

    @property
    def keyframe_poses(self):
        return self.trajectory + self.live


def _outputs():
    out = SlamOutputs.__new__(SlamOutputs)
    out.cfg = SimpleNamespace(map_frame="map")
    out._frozen = (None, *outputs_module._rows([]))
    out.published = []
    out.path = SimpleNamespace(publish=out.published.append)
    return out


class _LengthKeyed(SlamOutputs):
    """Counter-example: reuses the frozen messages whenever the frozen part is as long."""

    def trajectory(self, pipeline, stamp):
        frozen = pipeline.window.trajectory
        times, rows = self._frozen[1][:len(frozen)], self._frozen[2][:len(frozen)]
        new_times, new_rows = outputs_module._rows(frozen[len(times):])
        times, rows = np.concatenate([times, new_times]), np.concatenate([rows, new_rows])
        self._frozen = (frozen, times, rows)
        live_times, live_rows = outputs_module._rows(pipeline.window.keyframe_poses[len(frozen):])
        self.path.publish(convert.path_cdr(np.concatenate([times, live_times]), np.concatenate([rows, live_rows]),
                                           "map", stamp))


def _pose(rng):
    return from_xyz_rpy(np.concatenate([rng.normal(size=3), rng.uniform(-1, 1, size=3)]))


def _flat(path):
    if isinstance(path, bytes):
        path = deserialize_message(path, Path)
    return [(p.header.stamp.sec, p.header.stamp.nanosec, p.header.frame_id,
             tuple(convert.pose_to_matrix(p.pose).reshape(-1))) for p in path.poses]


def _run(out, marks: list | None = None) -> list[bool]:
    """Whether each published path equals the one built from scratch (``marks`` gets a
    None before each publication)."""
    rng = np.random.default_rng(3)
    window = _Window()
    pipeline = SimpleNamespace(window=window)
    same = []

    def publish():
        if marks is not None:
            marks.append(None)
        out.trajectory(pipeline, Time())
        stamps, poses = zip(*window.keyframe_poses) if window.keyframe_poses else ((), ())
        same.append(_flat(out.published[-1]) == _flat(convert.path_msg(list(stamps), list(poses), "map", Time())))

    for k in range(12):  # keyframes arrive; beyond 4 the oldest freezes
        window.live.append((0.5 * k, _pose(rng)))
        if len(window.live) > 4:
            window.trajectory.append(window.live.pop(0))
        publish()
    # a loop closure re-bases: the same number of frozen keyframes, all moved
    window.trajectory = [(t, _pose(rng)) for t, _ in window.trajectory]
    publish()
    window.live.append((6.0, _pose(rng)))
    window.trajectory.append(window.live.pop(0))
    publish()
    window.trajectory, window.live = window.trajectory[:2], []  # a reset / load: shorter
    publish()
    return same


@pytest.mark.parametrize("frame_id", ["", "m", "ma", "map", "odom", "world", "map_xyz", "earth_01", "utm_32N_x"])
@pytest.mark.parametrize("n", [0, 1, 2, 5])
def test_path_bytes_deserialise_to_the_message(frame_id, n):
    rng = np.random.default_rng(n + 10 * len(frame_id))
    stamps = rng.uniform(0.0, 2e9, n)
    poses = np.array([_pose(rng) for _ in range(n)]).reshape(n, 4, 4)
    poses[:, :3, 3] *= 1e3
    header = Time(sec=1_700_000_000, nanosec=123_456_789)
    oracle = convert.path_msg(list(stamps), list(poses), frame_id, header)
    data = convert.path_cdr(*convert.pose_rows(stamps, poses), frame_id, header)
    assert len(data) == len(serialize_message(oracle))
    assert deserialize_message(data, Path) == oracle


def test_path_reuses_frozen_rows_and_follows_re_bases(monkeypatch):
    calls: list = []  # None before each publication, then the rows converted for it
    rows = convert.pose_rows
    monkeypatch.setattr(convert, "pose_rows", lambda t, m: calls.append(len(t)) or rows(t, m))
    out = _outputs()
    assert all(_run(out, calls))
    per_path = []
    for c in calls:
        if c is None:
            per_path.append([])
        else:
            per_path[-1].append(c)
    assert per_path[:4] == [[1], [2], [3], [4]]  # live keyframes only
    assert per_path[4:12] == [[1, 4]] * 8  # one keyframe froze: its row, then the 4 live ones
    assert per_path[12] == [8, 4]  # the re-base replaced the frozen list: all 8 again
    assert per_path[13] == [1, 4] and per_path[14] == [2]  # then incremental; the reset: 2 frozen, none live


def test_a_cache_keyed_on_length_misses_the_re_base():
    out = _outputs()
    out.__class__ = _LengthKeyed
    same = _run(out)
    assert all(same[:12]) and not same[12]
