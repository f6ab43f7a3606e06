"""``~/path`` reuses the messages of frozen keyframes (``ros.outputs.SlamOutputs.trajectory``).

The oracle is the path built from scratch (``convert.path_msg`` of ``keyframe_poses``)
after every step of a run: keyframes freezing one by one, a re-base replacing the frozen
trajectory (loop closure), a reset to a shorter one.  A cache keyed on the length alone
(the counter-example ``_LengthKeyed``) publishes the pre-re-base poses."""

from types import SimpleNamespace

import numpy as np

from builtin_interfaces.msg import Time
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
    out._frozen = (None, [])
    out.published = []
    out.path = SimpleNamespace(publish=out.published.append)
    return out


class _LengthKeyed(SlamOutputs):
    """Counter-example: reuses the frozen messages whenever the frozen part is as long."""

    def trajectory(self, pipeline, stamp):
        frozen = pipeline.window.trajectory
        built = self._frozen[1][:len(frozen)]
        built += [convert.pose_stamped(m, "map", t) for t, m in frozen[len(built):]]
        self._frozen = (frozen, built)
        live = pipeline.window.keyframe_poses[len(frozen):]
        self.path.publish(convert.path_msg([t for t, _ in live], [m for _, m in live], "map", stamp, head=built))


def _pose(rng):
    return from_xyz_rpy(np.concatenate([rng.normal(size=3), rng.uniform(-1, 1, size=3)]))


def _flat(path):
    return [(p.header.stamp.sec, p.header.stamp.nanosec, p.header.frame_id,
             tuple(convert.pose_to_matrix(p.pose).reshape(-1))) for p in path.poses]


def _run(out) -> list[bool]:
    """Whether each published path equals the one built from scratch."""
    rng = np.random.default_rng(3)
    window = _Window()
    pipeline = SimpleNamespace(window=window)
    same = []

    def publish():
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


def test_path_reuses_frozen_messages_and_follows_re_bases():
    out = _outputs()
    assert all(_run(out))
    paths = out.published
    # built once: the 11th and 12th paths share the first 7 frozen keyframes' message objects
    assert all(a is b for a, b in zip(paths[10].poses[:7], paths[11].poses[:7]))
    assert paths[12].poses[0] is not paths[11].poses[0]  # rebuilt after the re-base


def test_a_cache_keyed_on_length_misses_the_re_base():
    out = _outputs()
    out.__class__ = _LengthKeyed
    same = _run(out)
    assert all(same[:12]) and not same[12]
