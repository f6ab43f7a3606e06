"""A partial loop matched metres along a corridor is measured again where it is.

Oracle: a straight corridor (closed form: the walls pin the lateral position and the
heading exactly, nothing along the axis).  A look-alike match 10 m further along is right
across the corridor and in heading; the loop edge leaves free the scan's weakest
direction, which real scans know to a degree or so.  Carried 10 m along a direction one
degree off the axis, the match is 10 sin(1 deg) = 0.17 m off across the corridor (the
office's end loop: 0.17 m, three loop sigmas).  Registered again at the place the
estimate gives, the lateral position and heading come from the walls there."""

import numpy as np

import dsg_jit_ros  # noqa: F401  (float64)
from planar_helpers import planar_pose as _planar
from test_loop_information import CORRIDOR, PRIOR, SIGMAS, _scan_and_target, _walls
from dsg_jit_ros.mapping.global_graph import LoopConfig
from dsg_jit_ros.mapping.loop_closure import IN_PLACE_SLIDE, LoopAttempt, LoopCloser
from dsg_jit_ros.mapping.loop_information import free_directions, loop_sqrt_info, slide_along_free
from dsg_jit_ros.mapping.registration import RegistrationConfig
from dsg_jit_ros.mapping.voxel_map import SurfaceConfig

LONG_CORRIDOR = [((-30.0, y), (30.0, y)) for (_, y), _ in CORRIDOR]
TILT = np.radians(1.0)  # the free direction's error against the corridor's axis
TRUTH = _planar(0.0, 0.3, 0.0)  # the newer node in the candidate's frame
ESTIMATE = _planar(0.12, 0.25, 0.004)  # what the graph believes: 5 cm and 4 mrad off


def _tilted_sqrt_info(tilt):
    """A corridor edge's square-root information whose free direction is ``tilt`` rad off
    the x axis (the scan's weakest direction, as a noisy Hessian gives it)."""
    dofs = np.array([0, 1, 5])
    free = np.array([np.cos(tilt), np.sin(tilt), 0.0])
    across = np.array([-np.sin(tilt), np.cos(tilt), 0.0])
    vec = np.column_stack([free, across, [0.0, 0.0, 1.0]])
    white = vec @ np.diag([0.0, 400.0, 2500.0]) @ vec.T
    h = np.zeros((6, 6))
    h[np.ix_(dofs, dofs)] = white / np.outer(SIGMAS[dofs], SIGMAS[dofs])
    w = loop_sqrt_info(h, SIGMAS, True, allow_partial=True)
    np.testing.assert_allclose(np.abs(free_directions(w, True))[0, :2], np.abs(free[:2]), atol=1e-12)
    return w


def _attempt(match):
    return LoopAttempt(0, 1, True, "accepted", t_older_newer=match, sqrt_info=_tilted_sqrt_info(TILT), partial=True)


def _closer():
    return LoopCloser(LoopConfig(enabled=True, partial=True), 0.2, SurfaceConfig(), RegistrationConfig())


def _lateral_and_heading(t):
    """(across-corridor error m, heading error rad) of a relative pose against the truth."""
    err = np.linalg.inv(TRUTH) @ t
    return abs(err[1, 3]), abs(np.arctan2(err[1, 0], err[0, 0]))


def _carried(attempt, estimate):
    """The match moved along its free direction to the estimate (``GlobalGraph.add_loop``)."""
    return slide_along_free(attempt.t_older_newer, np.linalg.inv(attempt.t_older_newer) @ estimate,
                            free_directions(attempt.sqrt_info, True))[1]


def test_a_look_alike_ten_metres_along_is_measured_again_in_place():
    scan, target = _scan_and_target(_walls(LONG_CORRIDOR), TRUTH)
    attempt = _attempt(TRUTH @ _planar(10.0, 0.0, 0.0))  # right across and in heading, 10 m along
    # counter-example: carried 10 m along the tilted direction, 0.17 m across
    lateral, heading = _lateral_and_heading(_carried(attempt, ESTIMATE))
    assert 0.15 < lateral < 0.19 and heading < 1e-9
    got = _closer()._measure_in_place(attempt, scan, ESTIMATE, target, PRIOR, True)
    assert got.accepted and got.partial and got.in_place and got.reason == "accepted"
    np.testing.assert_array_equal(got.sqrt_info, attempt.sqrt_info)
    lateral, heading = _lateral_and_heading(got.t_older_newer)
    assert lateral < 0.005 and heading < 5e-4
    # near the estimate along the corridor: what the graph carries it by is a few centimetres
    assert abs((np.linalg.inv(ESTIMATE) @ got.t_older_newer)[0, 3]) < 0.2
    lateral, heading = _lateral_and_heading(_carried(got, ESTIMATE))
    assert lateral < 0.008 and heading < 5e-4


def test_a_match_near_the_estimate_is_left_as_it_is():
    scan, target = _scan_and_target(_walls(LONG_CORRIDOR), TRUTH)
    attempt = _attempt(TRUTH @ _planar(0.8 * IN_PLACE_SLIDE, 0.0, 0.0))
    assert _closer()._measure_in_place(attempt, scan, ESTIMATE, target, PRIOR, True) is attempt


def test_a_full_loop_is_left_as_it_is():
    scan, target = _scan_and_target(_walls(LONG_CORRIDOR), TRUTH)
    attempt = LoopAttempt(0, 1, True, "accepted", t_older_newer=TRUTH @ _planar(10.0, 0.0, 0.0),
                          sqrt_info=np.eye(6), partial=False)
    assert _closer()._measure_in_place(attempt, scan, ESTIMATE, target, PRIOR, True) is attempt


def test_a_look_alike_with_no_map_at_the_place_is_refused():
    """The submap holds only the look-alike stretch: nothing to measure the place against."""
    far = [((6.0, y0), (30.0, y1)) for (_, y0), (_, y1) in LONG_CORRIDOR]
    scan, _ = _scan_and_target(_walls(LONG_CORRIDOR), TRUTH)
    _, target = _scan_and_target(_walls(far), TRUTH)
    got = _closer()._measure_in_place(_attempt(TRUTH @ _planar(10.0, 0.0, 0.0)), scan, ESTIMATE, target, PRIOR,
                                      True)
    assert not got.accepted and got.reason == "not_in_place" and got.t_older_newer is None

