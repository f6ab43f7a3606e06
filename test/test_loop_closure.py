"""Loop closure on a synthetic ring corridor (issue 8): ground truth is the oracle.

The ring (``tools.ring_world``: 40 x 14 m, a bare north corridor where the front
end drifts along the corridor, 1.3 laps) replayed with the shipped planar config:
without loop closure the drift stays; with it (``loop.enabled``: tracking horizon,
loop search, global graph, re-base) the ATE must drop well below, every accepted
loop must agree with ground truth, and the place seen on the first lap and again
after the loop must be mapped once (the relative pose of its keyframes right, not
off by the drift as without loop closure).  The loop worker in
its own thread (the node's mode) must reach the same quality.
"""

import numpy as np
import pytest

from conftest import REPO
from planar_helpers import wall_points as _wall_points
from dsg_jit_ros.config import load_pipeline_config
from dsg_jit_ros.mapping.export import keyframe_arrays, poses_at
from dsg_jit_ros.mapping.loop_closure import AMBIGUITY_LINE, COARSE_MAX_AMBIGUITY, COARSE_SEARCH_AMBIGUITY
from dsg_jit_ros.mapping.loop_information import free_directions
from dsg_jit_ros.mapping.pipeline import SlamPipeline
from dsg_jit_ros.geometry.poses import pose_values
from dsg_jit_ros.tools.planar_laser import PlanarLaserConfig
from dsg_jit_ros.tools.ring_world import RingConfig, simulate_ring

RING = RingConfig(length=40.0, width=14.0, alcove_spacing=10.0, pillars=3, bare_north=True)


@pytest.fixture(scope="module")
def ring():
    stamps, truth, odom, scans = simulate_ring(RING, laser=PlanarLaserConfig(max_range=10.0))
    return stamps, np.linalg.inv(truth[0]) @ truth, odom, scans  # truth in the map frame (= start pose)


def _run(ring, loops: bool, background: bool = False):
    stamps, _, odom, scans = ring
    cfg = load_pipeline_config(REPO / "config" / "planar_laser.yaml", overrides=[f"loop.enabled={str(loops).lower()}"])
    pipe = SlamPipeline(cfg, background_loops=background)
    pipe.warm_up()
    for t, o, c in zip(stamps, odom, scans):
        pipe.add_odometry(t, o)
        if background:  # as the node: publish first, then the covariance and the map's upkeep
            pipe.ingest_cloud(t, c)
            if pipe.process_ready(covariance=False, maintenance=False):
                pipe.refresh_covariance()
                pipe.maintain_map()
        else:
            pipe.add_cloud(t, c)
    pipe.finish()
    pipe.close()
    return pipe, poses_at(pipe, stamps, odom)


def _ate(est, truth):
    return float(np.sqrt(np.mean(np.sum((est[:, :2, 3] - truth[:, :2, 3]) ** 2, axis=1))))


@pytest.fixture(scope="module")
def open_loop(ring):
    return _run(ring, loops=False)


def _revisit_error(pipe, stamps, truth, lap_s: float) -> float:
    """Mean error (m) of the relative pose between each keyframe of the 15 s after the
    loop and the first-lap keyframe nearest to it (ground truth): how far apart the two
    copies of the same walls lie in the map (each keyframe's points are placed by its
    pose)."""
    ks, kp = keyframe_arrays(pipe)
    index = {float(t): k for k, t in enumerate(stamps)}
    first = np.flatnonzero(ks < 20.0)
    errors = []
    for j in np.flatnonzero((ks > lap_s) & (ks < lap_s + 15.0)):
        tj = truth[index[float(ks[j])]]
        i = first[np.argmin([np.linalg.norm(truth[index[float(ks[i])]][:2, 3] - tj[:2, 3]) for i in first])]
        ti = truth[index[float(ks[i])]]
        err = np.linalg.inv(np.linalg.inv(ti) @ tj) @ (np.linalg.inv(kp[i]) @ kp[j])
        errors.append(np.linalg.norm(err[:2, 3]))
    assert len(errors) > 20
    return float(np.mean(errors))


def test_loop_closure_removes_the_drift_and_the_second_copy(ring, open_loop):
    stamps, truth, odom, _ = ring
    pipe_open, est_open = open_loop
    pipe, est = _run(ring, loops=True)
    ate_odom, ate_open, ate_loop = _ate(odom, truth), _ate(est_open, truth), _ate(est, truth)
    counts = pipe.loop_counts()
    print("ATE odometry", ate_odom, "open loop", ate_open, "loop closure", ate_loop, counts)
    assert ate_open > 0.15  # the counter-example: the bare corridor's drift stays without loop closure
    assert counts["loop_closures"] >= 2 and pipe.compilations_after_warmup() == 0
    assert ate_loop < 0.6 * ate_open
    # every accepted loop agrees with ground truth (a partial one where it constrains: the
    # error's components along the directions it leaves free removed)
    index = {float(t): k for k, t in enumerate(stamps)}
    for a in (a for a in pipe.loops.attempts if a.accepted):
        t_old, t_new = (truth[index[pipe.graph.nodes[i].stamp]] for i in (a.older, a.newer))
        err = pose_values((np.linalg.inv(np.linalg.inv(t_old) @ t_new) @ a.t_older_newer)[None])[0]
        free = free_directions(a.sqrt_info, True)
        err -= free.T @ (free @ err)
        assert np.linalg.norm(err[:2]) < 0.05, (a.older, a.newer, err[:2], a.partial)
    print("partial loops", sum(a.partial for a in pipe.loops.attempts if a.accepted))
    # the place seen at the start and again after the loop: one copy of its walls, not two
    lap = 2 * (RING.length + RING.width) - (8 - 2 * np.pi) * RING.corner_radius
    apart_open = _revisit_error(pipe_open, stamps, truth, lap / RING.speed)
    apart = _revisit_error(pipe, stamps, truth, lap / RING.speed)
    print("the two copies of the start lie apart by", apart, "m; without loop closure", apart_open)
    assert apart_open > 0.2  # the counter-example: the window alone leaves the drift between the copies
    assert apart < 0.1


def test_loop_closure_in_its_own_thread(ring, open_loop):
    """The node's mode: the loop worker runs beside the window and the map's upkeep (a
    solve's re-base, the tracking horizon) follows each keyframe's update; at the end every
    keyframe is a graph node, loops were solved and applied, and the drift is gone as inline."""
    _, truth, _, _ = ring
    _, est_open = open_loop
    pipe, est = _run(ring, loops=True, background=True)
    counts = pipe.loop_counts()
    assert counts["global_solves"] >= 1 and counts["graph_nodes"] == pipe.keyframes
    assert pipe.global_map.worker.idle
    assert _ate(est, truth) < 0.6 * _ate(est_open, truth)




def test_correlative_search_finds_the_pose_metres_away_and_flags_a_corridor():
    """Oracle: the pose a scan was cut at.  A room with two boxes, the prediction 2.8 m and
    0.12 rad off: the search lands within a cell; in a featureless corridor (two parallel
    walls) the best pose is not unique and the ambiguity ratio says so."""
    from dsg_jit_ros.mapping.correlative import correlative_match_2d

    rng = np.random.default_rng(0)

    def pose(x, y, yaw):
        t = np.eye(4)
        t[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
        t[:2, 3] = x, y
        return t

    room = _wall_points([((0, 0), (12, 0)), ((12, 0), (12, 8)), ((12, 8), (0, 8)), ((0, 8), (0, 0)),
                         ((3, 3), (4, 3)), ((4, 3), (4, 4.5)), ((8, 5), (9.5, 5)), ((9.5, 5), (9.5, 6))])
    truth = pose(6.0, 4.0, 0.3)
    scan = ((room - truth[:2, 3]) @ truth[:2, :2])[rng.random(len(room)) < 0.6]
    scan += rng.normal(0.0, 0.02, scan.shape)
    found = correlative_match_2d(scan, room, truth @ pose(1.7, -2.2, 0.12), 3.0, 0.2, 0.2)
    err = np.linalg.inv(truth) @ found.t_target_scan
    assert np.linalg.norm(err[:2, 3]) < 0.2 and abs(np.arctan2(err[1, 0], err[0, 0])) < 0.02
    assert found.score > 0.8 and found.runner_up < 0.8 * found.score
    corridor = _wall_points([((-20, -1.2), (20, -1.2)), ((-20, 1.2), (20, 1.2))])
    scan = (corridor - [1.0, 0.0])[np.abs(corridor[:, 0] - 1.0) < 8.0]
    slide = correlative_match_2d(scan, corridor, pose(0.0, 0.0, 0.0), 3.0, 0.1, 0.2)
    assert slide.runner_up > COARSE_SEARCH_AMBIGUITY * slide.score  # not even registered by the loop closer
    # the look-alikes all lie along the corridor: off its line nothing comes close
    assert slide.runner_up_across(np.array([1.0, 0.0]), 0.5) < 0.6 * slide.score  # one wall onto the other: 0.5
    assert slide.runner_up_across(np.array([0.0, 1.0]), 0.5) > COARSE_SEARCH_AMBIGUITY * slide.score


def test_a_look_alike_door_along_is_refused_as_ambiguous():
    """Oracle: the pose a scan was cut at.  A corridor with a door recess every 4 m; a
    cabinet 1-1.2 m wide stands at the scan's place, and in the map one door further
    (moved since, or a second one).  The correlative search lands on the look-alike,
    4 m along, with the true place as runner-up: an ambiguity of 0.96-0.97, which the
    loop closer refuses for a full loop (``COARSE_MAX_AMBIGUITY``; counter-example: the
    0.97 used before accepted it).  The runner-up lies along the corridor, so a partial
    loop, free along it, would be kept (``runner_up_across``)."""
    from dsg_jit_ros.mapping.correlative import correlative_match_2d

    def pose(x, y, yaw):
        t = np.eye(4)
        t[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
        t[:2, 3] = x, y
        return t

    segments = []
    for k in range(-6, 6):
        x0 = 4.0 * k
        segments += [((x0, -1.2), (x0 + 3.0, -1.2)), ((x0, 1.2), (x0 + 3.0, 1.2)), ((x0 + 3.0, -1.2), (x0 + 3.0, -2.0)),
                     ((x0 + 3.0, -2.0), (x0 + 4.0, -2.0)), ((x0 + 4.0, -2.0), (x0 + 4.0, -1.2))]
    corridor = _wall_points(segments)
    truth = pose(0.3, 0.1, 0.0)
    for width in (1.0, 1.2):
        def cabinet(x):
            return _wall_points([((x, 0.6), (x + width, 0.6)), ((x + width, 0.6), (x + width, 1.2))])

        here = np.concatenate([corridor, cabinet(1.0)])
        scan = (here - truth[:2, 3]) @ truth[:2, :2]
        scan = scan[np.linalg.norm(scan, axis=1) < 8.0]
        found = correlative_match_2d(scan, np.concatenate([corridor, cabinet(5.0)]), truth @ pose(1.5, 0.0, 0.05),
                                     3.0, 0.2, 0.2)
        err = np.linalg.inv(truth) @ found.t_target_scan
        assert abs(err[0, 3] - 4.0) < 0.3  # the look-alike won
        ambiguity = found.runner_up / found.score
        assert COARSE_MAX_AMBIGUITY < ambiguity < 0.97 and ambiguity < COARSE_SEARCH_AMBIGUITY, ambiguity
        assert found.runner_up_across(np.array([1.0, 0.0]), AMBIGUITY_LINE) < COARSE_MAX_AMBIGUITY * found.score
