"""Anisotropic loop edges: a loop carries the information its registration has.

Oracles: a straight corridor, whose walls (normals across it) say nothing about the
position along it: the registration's information has a zero along-corridor
eigenvalue and the edge's information is exactly the isotropic loop information on
lateral position and heading, nothing along the corridor (closed form); the loop
factor's whitened residual ``W log(Z^-1 T_i^-1 T_j)`` and its Jacobian against a
matrix-logarithm reference and central differences; and a corridor loop in the global
graph that corrects the lateral drift but leaves the along-corridor coordinate to the
chain (a look-alike place metres along the corridor does not move the map)."""

import numpy as np
import pytest
from scipy.linalg import expm, logm

import dsg_jit_ros  # noqa: F401  (float64)
from planar_helpers import planar_pose as _planar, wall_points
from dsg_jit_ros.mapping.association import associate
from dsg_jit_ros.mapping.global_graph import PLAIN_SCALE, GlobalGraph, LoopConfig
from dsg_jit_ros.mapping.local_map import placed_map
from dsg_jit_ros.mapping.loop_closure import LoopCloser
from dsg_jit_ros.mapping.loop_information import (corrections_agree, free_directions, isotropic_sqrt_info,
                                                  loop_sqrt_info)
from dsg_jit_ros.mapping.registration import RegistrationConfig, SurfaceTarget, register
from dsg_jit_ros.mapping.voxel_map import SurfaceConfig
from dsg_jit_ros.mapping.voxelize import VoxelConfig
from dsg_jit_ros.optimization.linearize import linearize

CFG = LoopConfig(enabled=True, partial=True)
SIGMAS = CFG.loop_sigmas()


def _walls(segments, step=0.02):
    xy = wall_points(segments, step)
    return np.column_stack([xy, np.zeros(len(xy))])


def _scan_and_target(world, pose_true, reach=4.0):
    """The world's points within ``reach`` of ``pose_true`` (seen from there), and the
    world's voxel surfaces (point-to-plane, as the loop closer's submap)."""
    voxel = 0.2
    cells = associate(world, np.eye(4), VoxelConfig(voxel, 0.0, 100.0))
    submap = placed_map([(cells, np.eye(4), np.eye(4))], voxel)
    surface = SurfaceConfig(slide=np.inf)
    target = SurfaceTarget.build(submap.keys, submap.means(), submap.surfaces(np.arange(len(submap)), surface), voxel)
    near = world[np.linalg.norm(world[:, :2] - pose_true[:2, 3], axis=1) <= reach]
    return (near - pose_true[:3, 3]) @ pose_true[:3, :3], target


PRIOR = np.array([1.0] * 3 + [0.2] * 3)


def _register(world, pose_true, pose_pred, reach=4.0):
    """Register the scan at ``pose_true`` from ``pose_pred`` (planar, as the loop closer does)."""
    scan, target = _scan_and_target(world, pose_true, reach)
    cfg = RegistrationConfig(degeneracy_ratio=0.0, max_correction_sigma=3.0)
    return register(scan, pose_pred, target, PRIOR, cfg, planar=True)


CORRIDOR = [((-15.0, -1.2), (15.0, -1.2)), ((-15.0, 1.2), (15.0, 1.2))]


def test_a_corridor_match_constrains_lateral_position_and_heading_only():
    truth = _planar(0.0, 0.3, 0.0)
    reg = _register(_walls(CORRIDOR), truth, truth @ _planar(0.05, 0.08, 0.02))
    assert reg.used and reg.converged
    h = reg.information[np.ix_([0, 1, 5], [0, 1, 5])]
    lam = np.linalg.eigvalsh(h * np.outer(SIGMAS[[0, 1, 5]], SIGMAS[[0, 1, 5]]))
    assert lam[0] < 1e-9 * lam[-1] and lam[1] > 1.0  # the axis is free, the rest well pinned
    # today's rule: degenerate; partial: the edge's information, in closed form
    assert loop_sqrt_info(reg.information, SIGMAS, True, allow_partial=False) is None
    w = loop_sqrt_info(reg.information, SIGMAS, True, allow_partial=True)
    info = w.T @ w
    expected = np.diag(1.0 / SIGMAS ** 2)
    expected[0, 0] = 0.0  # along the corridor (the body's x: it heads along it)
    np.testing.assert_allclose(info, expected, atol=1e-6 * expected.max())
    np.testing.assert_allclose(np.abs(free_directions(w, True)), [[1, 0, 0, 0, 0, 0]], atol=1e-5)
    # the match itself: lateral position and heading right, whatever it did along the corridor
    err = np.linalg.inv(truth) @ reg.t_map_body
    assert abs(err[1, 3]) < 0.01 and abs(np.arctan2(err[1, 0], err[0, 0])) < 0.002


def test_a_corner_pins_every_direction_and_keeps_the_isotropic_edge():
    room = CORRIDOR + [((3.0, -1.2), (3.0, 1.2))]  # the corridor's end wall
    truth = _planar(0.0, 0.3, 0.0)
    reg = _register(_walls(room), truth, truth @ _planar(0.05, 0.08, 0.02))
    assert reg.used and reg.converged
    for partial in (False, True):  # the same edge as before partial loops existed
        np.testing.assert_array_equal(loop_sqrt_info(reg.information, SIGMAS, True, partial),
                                      isotropic_sqrt_info(SIGMAS))


@pytest.mark.parametrize("partial", [False, True])
def test_the_loop_closer_accepts_a_corridor_match_as_a_partial_loop(partial):
    """The verification itself (``LoopCloser._register``): a corridor match is degenerate
    without ``loop.partial`` and a partial loop with it (free along the corridor, lateral
    position and heading right); the corridor's end wall makes it a full loop either way."""
    cfg = LoopConfig(enabled=True, partial=partial)
    closer = LoopCloser(cfg, 0.2, SurfaceConfig(), RegistrationConfig())
    truth = _planar(0.0, 0.3, 0.0)
    pred = truth @ _planar(0.15, 0.08, 0.02)
    scan, target = _scan_and_target(_walls(CORRIDOR), truth)
    got = closer._register(0, 1, scan, pred, pred, target, PRIOR, True, 0.0)
    assert got.accepted == partial and got.reason == ("accepted" if partial else "degenerate")
    if partial:
        assert got.partial and np.allclose(np.abs(free_directions(got.sqrt_info, True)), [1, 0, 0, 0, 0, 0], atol=1e-4)
        err = np.linalg.inv(truth) @ got.t_older_newer
        assert abs(err[1, 3]) < 0.01 and abs(np.arctan2(err[1, 0], err[0, 0])) < 0.002
    scan, target = _scan_and_target(_walls(CORRIDOR + [((3.0, -1.2), (3.0, 1.2))]), truth)
    got = closer._register(0, 1, scan, pred, pred, target, PRIOR, True, 0.0)
    assert got.accepted and not got.partial
    np.testing.assert_array_equal(got.sqrt_info, isotropic_sqrt_info(SIGMAS))


def test_a_loop_free_in_heading_is_refused():
    """A match that pins the position but not the heading (a round room) is no partial loop."""
    h = np.diag([1e6, 1e6, 0.0, 0.0, 0.0, 0.0])
    assert loop_sqrt_info(h, SIGMAS, True, allow_partial=True) is None
    h = np.diag([0.0, 0.0, 0.0, 0.0, 0.0, 1e8])  # two free translations: too little
    assert loop_sqrt_info(h, SIGMAS, True, allow_partial=True) is None


def _se3_log(t):
    """[rho, phi] of a 4x4 transform by the matrix logarithm (independent of geometry.se3)."""
    m = np.real(logm(t))
    return np.array([m[0, 3], m[1, 3], m[2, 3], m[2, 1], m[0, 2], m[1, 0]])


def _se3_exp(d):
    m = np.zeros((4, 4))
    m[:3, 3] = d[:3]
    m[:3, :3] = [[0, -d[5], d[4]], [d[5], 0, -d[3]], [-d[4], d[3], 0]]
    return expm(m)


def test_the_anisotropic_loop_factor_against_finite_differences():
    rng = np.random.default_rng(5)
    # a 3D registration information with the body's x free (a corridor), coupled elsewhere
    a = rng.normal(size=(5, 5))
    h = np.zeros((6, 6))
    h[1:, 1:] = (a @ a.T / 5 + 5 * np.eye(5)) / np.outer(SIGMAS[1:], SIGMAS[1:])  # whitened: well above 1
    w = loop_sqrt_info(h, SIGMAS, False, allow_partial=True)
    assert w is not None and np.linalg.matrix_rank(w) == 5 and np.allclose(w[:, 0], 0.0)
    t_i = _se3_exp(rng.normal(size=6) * [1, 1, 1, 0.3, 0.3, 0.3])
    t_j = t_i @ _se3_exp(rng.normal(size=6) * [2, 2, 2, 0.3, 0.3, 0.3])
    z = np.linalg.inv(t_i) @ t_j @ _se3_exp(rng.normal(size=6) * 0.05)  # a measurement 5 % off
    g = GlobalGraph(CFG, planar=False)
    g.add(0.0, t_i, np.eye(4), None)
    g.add(1.0, t_j, np.eye(4), None)
    edge = g.add_loop(0, 1, z, w)
    np.testing.assert_array_equal(edge.sqrt_info, w)
    # the measurement says nothing along the free axis: it takes the estimate there
    slid = np.linalg.inv(z) @ edge.t_older_newer
    np.testing.assert_allclose(slid[:3, :3], np.eye(3), atol=1e-12)
    np.testing.assert_allclose(slid[1:3, 3], 0.0, atol=1e-12)
    z = edge.t_older_newer
    np.testing.assert_allclose(edge.information, w.T @ w)
    g.wm.set_factors([edge.factor], {"robust": ("cauchy", PLAIN_SCALE)})  # least squares: the raw whitened rows
    batch, rows = g.wm.table.factor_rows([edge.factor])
    number = g.wm.table.batches.index(batch)
    lins, _ = linearize(g.wm.fg, g.wm.state_vector())
    r = np.asarray(lins[number].r)[rows[0]]
    jac = [np.asarray(j)[rows[0]] for j in lins[number].jacobians]

    def residual(ti, tj):
        return w @ _se3_log(np.linalg.inv(z) @ np.linalg.inv(ti) @ tj)

    np.testing.assert_allclose(r, residual(t_i, t_j), atol=1e-9)
    eps = 1e-6
    for arg, base in enumerate((t_i, t_j)):
        fd = np.zeros((6, 6))
        for k in range(6):
            d = np.zeros(6)
            d[k] = eps
            moved = [base @ _se3_exp(d), base @ _se3_exp(-d)]
            pair = [(m, t_j) if arg == 0 else (t_i, m) for m in moved]
            fd[:, k] = (residual(*pair[0]) - residual(*pair[1])) / (2 * eps)
        np.testing.assert_allclose(jac[arg], fd, atol=1e-5 * np.abs(fd).max())


def _corridor_graph(loop, sqrt_info=None, cfg=CFG, yaw_bias=0.003):
    """41 nodes 0.5 m apart along a corridor (the x axis; truth y = 0, yaw = 0), the window's
    chain drifting in heading by ``yaw_bias`` per step (lateral drift), and a loop from the
    first node to the last."""
    n = 41
    truth = np.array([_planar(0.5 * k, 0.0, 0.0) for k in range(n)])
    est = [truth[0]]
    for k in range(1, n):
        est.append(est[-1] @ _planar(0.5, 0.0, yaw_bias))
    g = GlobalGraph(cfg, planar=True)
    for k, pose in enumerate(est):
        g.add(float(k), pose, np.eye(4), None)
    g.add_loop(0, n - 1, loop, sqrt_info)
    return g, truth, np.array(est)


def test_a_corridor_loop_corrects_the_lateral_drift_and_leaves_the_axis_free():
    """The loop's measurement is a look-alike 3 m further along the corridor: lateral
    position and heading right, the position along the corridor wrong.  The oracle: the
    partial edge gives the map a correct loop (the true relative pose, isotropic) gives:
    the lateral drift taken out the same way, the chain's along-corridor travel kept;
    the isotropic edge with the look-alike (counter-example) drags the map along by metres."""
    lookalike = _planar(23.0, 0.0, 0.0)  # truth: (20, 0, 0)
    h = np.diag([0.0, 1e6, 0.0, 0.0, 0.0, 1e8])  # the corridor's information: no x
    w = loop_sqrt_info(h, SIGMAS, True, allow_partial=True)
    g, truth, est = _corridor_graph(lookalike, w, yaw_bias=0.0008)
    correct, _, _ = _corridor_graph(np.linalg.inv(truth[0]) @ truth[-1], None, yaw_bias=0.0008)
    assert abs(est[-1][1, 3]) > 0.3  # the counter-example: the chain drifted sideways
    for graph in (g, correct):
        graph.optimize()
        assert len(graph.loops) == 1 and graph.rejected_loops == 0
    after, ref = g.all_poses(), correct.all_poses()
    assert abs(after[-1][1, 3]) < 0.5 * abs(est[-1][1, 3])  # the lateral drift largely corrected
    np.testing.assert_allclose(after[:, :2, 3], ref[:, :2, 3], atol=0.002)
    along = np.linalg.norm(after[-1][:2, 3] - after[0][:2, 3])
    assert abs(along - 20.0) < 0.02, along  # not 3 m further
    # counter-example: the same measurement as an isotropic edge drags the map along the axis
    iso, _, _ = _corridor_graph(lookalike, None, LoopConfig(enabled=True, kernel_scale=1e6, max_residual=1e6),
                                yaw_bias=0.0008)
    iso._chain_agrees = lambda edge: True
    iso.optimize()
    assert np.linalg.norm(iso.all_poses()[-1][:2, 3]) > 21.0


def test_partial_loops_agree_only_in_the_directions_both_pin():
    """Two corridor loops whose corrections differ by 2 m along the corridor agree (the
    axis is free in both); differing by 0.2 m across it, they do not."""
    at = _planar(10.0, 0.0, 0.0)
    # the second loop's node heads 0.01 rad off (two registrations in one corridor): one axis
    free = [(np.array([[1.0, 0, 0, 0, 0, 0]]), at), (np.array([[1.0, 0, 0, 0, 0, 0]]), _planar(9.0, 0.0, -0.01))]
    a = _planar(0.0, 0.0, 0.0)
    assert corrections_agree(a, _planar(2.0, 0.01, 0.002), at, free, SIGMAS, True)
    assert not corrections_agree(a, _planar(0.0, 0.2, 0.0), at, free, SIGMAS, True)
    assert not corrections_agree(a, _planar(0.0, 0.0, 0.05), at, free, SIGMAS, True)
    # without free directions the 2 m differ (as two full loops)
    assert not corrections_agree(a, _planar(2.0, 0.0, 0.0), at, [], SIGMAS, True)
    # loops free along different axes (two corridors at right angles) pin too little together
    cross = [(np.array([[1.0, 0, 0, 0, 0, 0]]), at), (np.array([[0.0, 1.0, 0, 0, 0, 0]]), at)]
    assert not corrections_agree(a, a, at, cross, SIGMAS, True)


@pytest.mark.parametrize("partial", [False, True])
def test_the_chain_test_sees_only_the_constrained_directions(partial):
    """A loop 3 m off along the corridor: the isotropic edge is refused by the chain test
    (3 m beyond the drift window of 20 m travel), the partial edge is tested across only
    (and refused 1.5 m off across it, 5 sigma of the drift window)."""
    h = np.diag([0.0, 1e6, 0.0, 0.0, 0.0, 1e8])
    w = loop_sqrt_info(h, SIGMAS, True, allow_partial=True) if partial else None
    cfg = LoopConfig(enabled=True, partial=True, search_radius=0.5, drift_per_metre=0.02,
                     drift_rotation_per_metre=0.004)  # the drift window: 0.9 m, 0.08 rad at 20 m
    g, _, _ = _corridor_graph(_planar(23.0, 0.0, 0.0), w, cfg, yaw_bias=0.0)
    assert g._chain_agrees(g.loops[0]) == partial
    g, _, _ = _corridor_graph(_planar(20.0, 1.5, 0.0), w, cfg, yaw_bias=0.0)  # 1.5 m across: refused
    assert not g._chain_agrees(g.loops[0])


def _coupled_corridor_information(rotation_share):
    """A corridor scan's Hessian (6x6) whose free whitened direction is not a pure
    translation: ``rotation_share`` of it is heading, as a short or uneven corridor's
    weakest direction is (the scan's points are not symmetric about the body)."""
    dofs = np.array([0, 1, 5])
    free = np.array([1.0, 0.0, rotation_share])
    free /= np.linalg.norm(free)
    lateral = np.array([0.0, 1.0, 0.0])
    heading = np.cross(free, lateral)
    vec = np.column_stack([free, lateral, heading])
    white = vec @ np.diag([0.0, 400.0, 2500.0]) @ vec.T
    s = SIGMAS[dofs]
    h = np.zeros((6, 6))
    h[np.ix_(dofs, dofs)] = white / np.outer(s, s)
    return h


def test_a_partial_loop_is_free_along_a_pure_translation():
    """The direction a partial loop leaves free is the translation part of the scan's
    weakest direction: the heading the scan does pin stays pinned (a corridor's symmetry is
    a translation, whatever the linearised Hessian mixes in)."""
    w = loop_sqrt_info(_coupled_corridor_information(0.1), SIGMAS, True, allow_partial=True)
    free = free_directions(w, True)
    np.testing.assert_allclose(np.abs(free), [[1, 0, 0, 0, 0, 0]], atol=1e-12)
    info = w.T @ w  # full loop information in every other direction
    expected = np.diag(1.0 / SIGMAS ** 2)
    expected[0, 0] = 0.0
    np.testing.assert_allclose(info, expected, atol=1e-9 * expected.max())


def test_a_look_alike_metres_along_the_corridor_does_not_turn_the_map():
    """A partial loop matched 9 m further along the corridor (right laterally and in
    heading) leaves the map as a correct loop does.  Counter-example: with the weakest
    direction itself left free (10 % heading, whitened), add_loop's replacement of the free
    part by the estimate turned the 9 m slide into 0.18 rad of heading in the edge."""
    lookalike = _planar(29.0, 0.0, 0.0)  # truth: (20, 0, 0)
    w = loop_sqrt_info(_coupled_corridor_information(0.1), SIGMAS, True, allow_partial=True)
    g, truth, est = _corridor_graph(lookalike, w, yaw_bias=0.0008)
    correct, _, _ = _corridor_graph(np.linalg.inv(truth[0]) @ truth[-1], None, yaw_bias=0.0008)
    edge = g.loops[0].t_older_newer
    assert abs(np.arctan2(edge[1, 0], edge[0, 0])) < 1e-9  # the measured heading, untouched
    for graph in (g, correct):
        graph.optimize()
        assert len(graph.loops) == 1
    after, ref = g.all_poses(), correct.all_poses()
    np.testing.assert_allclose(after[:, :2, 3], ref[:, :2, 3], atol=0.002)
    np.testing.assert_allclose(np.arctan2(after[:, 1, 0], after[:, 0, 0]), np.arctan2(ref[:, 1, 0], ref[:, 0, 0]),
                               atol=1e-4)
