"""Tests for dsg_jit_ros.io: g2o (against GTSAM's reader), TUM and PLY round trips."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import transforms3d.quaternions as t3q

from dsg_jit_ros.io import atomic_write_text
from dsg_jit_ros.io.g2o import (
    REPAIR_EIGEN_FLOOR,
    PoseGraph,
    matrix_to_quat_xyzw,
    quat_xyzw_to_matrix,
    read_g2o,
    write_g2o,
)
from dsg_jit_ros.io.ply import read_ply, write_ply
from dsg_jit_ros.io.tum import read_tum, write_tum
from dsg_jit_ros.slam.pose_graph import world_model_from_pose_graph

DATA = Path("/work/shared/data/posegraph")
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="pose-graph data set not available")

# Our tangent order is [t, r]; GTSAM's Pose3 tangent order is [r, t].
TRANS_FIRST_TO_ROT_FIRST = np.array([3, 4, 5, 0, 1, 2])


def random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3, 3) uniformly random rotations, plus exact 180-degree turns mixed in."""
    q = rng.normal(size=(n, 4))
    rotations = quat_xyzw_to_matrix(q)
    rotations[:3] = [np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0]), np.diag([-1.0, -1.0, 1.0])]
    return rotations


def random_graph(rng: np.random.Generator, n: int = 12, m: int = 20) -> PoseGraph:
    """A 3D graph with random poses, measurements and SPD information matrices."""
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, :3, :3] = random_rotations(rng, n)
    poses[:, :3, 3] = rng.normal(scale=10.0, size=(n, 3))
    meas = np.tile(np.eye(4), (m, 1, 1))
    meas[:, :3, :3] = random_rotations(rng, m)
    meas[:, :3, 3] = rng.normal(size=(m, 3))
    factors = rng.normal(size=(m, 6, 6))
    info = factors @ np.transpose(factors, (0, 2, 1)) + 6 * np.eye(6)
    return PoseGraph(
        dim=3,
        ids=rng.permutation(1000)[:n].astype(np.int64),
        poses=poses,
        edge_i=rng.integers(0, n, size=m),
        edge_j=rng.integers(0, n, size=m),
        measurements=meas,
        information=info,
    )


def assert_graphs_equal(a: PoseGraph, b: PoseGraph, atol: float = 1e-12) -> None:
    """Identical topology and information; poses/measurements equal to ``atol``."""
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.edge_i, b.edge_i)
    np.testing.assert_array_equal(a.edge_j, b.edge_j)
    np.testing.assert_array_equal(a.information, b.information)
    np.testing.assert_allclose(a.poses, b.poses, rtol=0, atol=atol)
    np.testing.assert_allclose(a.measurements, b.measurements, rtol=0, atol=atol)


def empty_graph(n: int, m: int, edge_i: np.ndarray, edge_j: np.ndarray, n_meas: int | None = None) -> PoseGraph:
    """Zero-filled 3D graph with n vertices, m information matrices and ``n_meas`` measurements."""
    n_meas = m if n_meas is None else n_meas
    return PoseGraph(
        3, np.zeros(n, np.int64), np.zeros((n, 4, 4)), edge_i, edge_j, np.zeros((n_meas, 4, 4)), np.zeros((m, 6, 6))
    )


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------- quaternions


def test_quaternion_helpers_match_transforms3d() -> None:
    rng = np.random.default_rng(0)
    q = rng.normal(size=(200, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    ours = quat_xyzw_to_matrix(q)
    ref = np.array([t3q.quat2mat(np.r_[x[3], x[:3]]) for x in q])  # transforms3d is w-first
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-14)
    back = matrix_to_quat_xyzw(ours)
    assert np.all(back[:, 3] >= 0)
    np.testing.assert_allclose(np.abs(np.sum(back * q, axis=1)), 1.0, rtol=0, atol=1e-14)
    flips = random_rotations(rng, 3)  # 180-degree turns: trace = -1
    np.testing.assert_allclose(quat_xyzw_to_matrix(matrix_to_quat_xyzw(flips)), flips, rtol=0, atol=1e-15)


# ---------------------------------------------------------------- g2o


@needs_data
def test_tiny_grid_contents() -> None:
    graph = read_g2o(DATA / "tinyGrid3D.g2o")
    assert (graph.dim, graph.num_poses, graph.num_edges, graph.planar) == (3, 9, 11, False)
    np.testing.assert_array_equal(graph.ids, np.arange(9))
    # First edge: translation info 100, rotation info 25 (translation first in the file).
    np.testing.assert_array_equal(np.diag(graph.information[0]), [100, 100, 100, 25, 25, 25])
    np.testing.assert_allclose(graph.measurements[0, :3, 3], [1.033099, 0.093536, -0.037961])
    rotations = graph.poses[:, :3, :3]
    gram = rotations @ np.transpose(rotations, (0, 2, 1))
    np.testing.assert_allclose(gram, np.broadcast_to(np.eye(3), rotations.shape), atol=1e-14)


@needs_data
@pytest.mark.parametrize(
    "name", ["tinyGrid3D.g2o", "smallGrid3D.g2o", "sphere2500.g2o", "parking-garage.g2o", "gtsam_pose3example.txt"]
)
def test_read_g2o_matches_gtsam_3d(name: str) -> None:
    gtsam = pytest.importorskip("gtsam")
    graph = read_g2o(DATA / name)
    factors, values = gtsam.readG2o(str(DATA / name), True)
    assert values.size() == graph.num_poses and factors.size() == graph.num_edges
    for k, vid in enumerate(graph.ids.tolist()):
        np.testing.assert_allclose(graph.poses[k], values.atPose3(vid).matrix(), rtol=0, atol=1e-12)
    perm = TRANS_FIRST_TO_ROT_FIRST
    for e in range(graph.num_edges):
        factor = factors.at(e)
        assert list(factor.keys()) == [graph.ids[graph.edge_i[e]], graph.ids[graph.edge_j[e]]]
        np.testing.assert_allclose(graph.measurements[e], factor.measured().matrix(), rtol=0, atol=1e-12)
        sqrt_info = factor.noiseModel().R()
        ours = graph.information[e][np.ix_(perm, perm)]
        np.testing.assert_allclose(sqrt_info.T @ sqrt_info, ours, rtol=0, atol=1e-9 * np.abs(ours).max())


@needs_data
def test_read_intel_se2() -> None:
    graph = read_g2o(DATA / "intel.g2o")
    assert (graph.dim, graph.planar, graph.num_poses, graph.num_edges) == (2, True, 1728, 2512)
    assert graph.ignored == {}
    np.testing.assert_array_equal(graph.poses[:, 2, 3], 0.0)
    np.testing.assert_array_equal(graph.poses[:, 2, :3], np.broadcast_to([0.0, 0.0, 1.0], (1728, 3)))
    unobserved = [2, 3, 4]
    assert not graph.information[:, unobserved, :].any() and not graph.information[:, :, unobserved].any()
    # First edge: 115.187 -9.86523 -7.085 347.418 185.36 224.616 over [x, y, theta].
    expected = np.array([[115.187, -9.86523, -7.085], [-9.86523, 347.418, 185.36], [-7.085, 185.36, 224.616]])
    np.testing.assert_array_equal(graph.information[0][np.ix_([0, 1, 5], [0, 1, 5])], expected)
    theta = np.arctan2(graph.measurements[1, 1, 0], graph.measurements[1, 0, 0])
    np.testing.assert_allclose([*graph.measurements[1, :2, 3], theta], [0.401014, -0.005076, -0.000984], atol=1e-15)


@needs_data
def test_read_intel_matches_gtsam_2d() -> None:
    gtsam = pytest.importorskip("gtsam")
    graph = read_g2o(DATA / "intel.g2o")
    factors, values = gtsam.readG2o(str(DATA / "intel.g2o"), False)
    assert values.size() == graph.num_poses and factors.size() == graph.num_edges
    for k in range(0, graph.num_poses, 97):
        pose = values.atPose2(int(graph.ids[k]))
        np.testing.assert_allclose(graph.poses[k, :2, 3], [pose.x(), pose.y()], atol=1e-12)
        np.testing.assert_allclose(graph.poses[k, :2, :2], pose.rotation().matrix(), atol=1e-12)
    for e in range(0, graph.num_edges, 53):
        sqrt_info = factors.at(e).noiseModel().R()
        ours = graph.information[e][np.ix_([0, 1, 5], [0, 1, 5])]
        np.testing.assert_allclose(sqrt_info.T @ sqrt_info, ours, rtol=0, atol=1e-9 * np.abs(ours).max())


@needs_data
def test_manhattan_without_vertices_rejected_by_strict_option() -> None:
    # manhattan.g2o holds only EDGE_SE2 lines, so its first edge names an undeclared vertex.
    with pytest.raises(ValueError, match=r"manhattan.g2o line 1: edge references unknown vertex id 0 .*compose"):
        read_g2o(DATA / "manhattan.g2o", missing_vertices="error")


@needs_data
def test_manhattan_composed_by_default_as_gtsam_reads_it() -> None:
    gtsam = pytest.importorskip("gtsam")
    graph = read_g2o(DATA / "manhattan.g2o")
    factors, values = gtsam.readG2o(str(DATA / "manhattan.g2o"), False)
    assert factors.size() == graph.num_edges == 5453 and values.size() == graph.num_poses == 3500
    assert graph.composed_vertices == 3500
    np.testing.assert_array_equal(graph.ids, np.arange(3500))
    # Oracle: GTSAM's readG2o fills in vertices of such a file itself by chaining k -> k+1.
    expected = np.array([[p.x(), p.y(), p.theta()] for p in map(values.atPose2, range(3500))])
    ours = np.stack([graph.poses[:, 0, 3], graph.poses[:, 1, 3], np.arctan2(graph.poses[:, 1, 0], graph.poses[:, 0, 0])], 1)
    np.testing.assert_allclose(ours[:, :2], expected[:, :2], rtol=0, atol=1e-9)
    np.testing.assert_allclose(np.angle(np.exp(1j * (ours[:, 2] - expected[:, 2]))), 0.0, atol=1e-12)


@needs_data
@pytest.mark.parametrize("name", ["tinyGrid3D.g2o", "intel.g2o"])
def test_edges_before_vertices_read_like_gtsam(tmp_path: Path, name: str) -> None:
    gtsam = pytest.importorskip("gtsam")
    lines = (DATA / name).read_text().splitlines()
    edges_first = [ln for ln in lines if ln.startswith("EDGE")] + [ln for ln in lines if ln.startswith("VERTEX")]
    shuffled = [lines[k] for k in np.random.default_rng(5).permutation(len(lines))]
    is3d = name != "intel.g2o"
    factors, values = gtsam.readG2o(str(DATA / name), is3d)
    for order, text in (("edges_first", edges_first), ("shuffled", shuffled)):
        graph = read_g2o(write_text(tmp_path / f"{order}.g2o", "\n".join(text) + "\n"), missing_vertices="error")
        assert (graph.num_poses, graph.num_edges) == (values.size(), factors.size())
        assert graph.composed_vertices == 0
        for k, vid in enumerate(graph.ids.tolist()):
            expected = values.atPose3(vid).matrix() if is3d else values.atPose2(vid)
            if is3d:
                np.testing.assert_allclose(graph.poses[k], expected, rtol=0, atol=1e-12)
            else:
                np.testing.assert_allclose(graph.poses[k, :2, 3], [expected.x(), expected.y()], rtol=0, atol=1e-12)
        # Edges keep file order: match them to GTSAM's by (id_i, id_j, measurement).
        edge_lines = [ln.split() for ln in text if ln.startswith("EDGE")]
        for e, tokens in enumerate(edge_lines):
            assert (graph.ids[graph.edge_i[e]], graph.ids[graph.edge_j[e]]) == (int(tokens[1]), int(tokens[2]))
            np.testing.assert_allclose(graph.measurements[e, :2, 3], [float(tokens[3]), float(tokens[4])], atol=1e-15)


def test_undeclared_vertices_composed_from_declared_ones(tmp_path: Path) -> None:
    # 5 declared at (1, 2, yaw 90 deg); 6 only via 5 -> 6, 7 only via 7 -> 6 (inverse needed);
    # 10 and 11 form a group with no declared vertex: 10 at the identity, 11 = Z(10 -> 11).
    text = (
        "EDGE_SE2 5 6 1 0 0" + SE2_INFO + "\n"
        "EDGE_SE2 7 6 0 2 1.5707963267948966" + SE2_INFO + "\n"
        "VERTEX_SE2 5 1 2 1.5707963267948966\n"
        "EDGE_SE2 10 11 3 0 0.5" + SE2_INFO + "\n"
    )
    with pytest.raises(ValueError, match=r"g.g2o line 1: edge references unknown vertex id 6"):
        read_g2o(write_text(tmp_path / "g.g2o", text), missing_vertices="error")
    graph = read_g2o(tmp_path / "g.g2o")
    np.testing.assert_array_equal(graph.ids, [5, 6, 7, 10, 11])  # declared first, then ascending
    assert graph.composed_vertices == 4
    xy_yaw = np.stack([graph.poses[:, 0, 3], graph.poses[:, 1, 3], np.arctan2(graph.poses[:, 1, 0], graph.poses[:, 0, 0])], 1)
    # Closed forms: T6 = T5 Z56 = (1, 3, 90 deg); T7 = T6 Z76^-1, Z76^-1 = (-2, 0, -90 deg) rotated by 90 deg.
    expected = [[1, 2, np.pi / 2], [1, 3, np.pi / 2], [1, 1, 0], [0, 0, 0], [3, 0, 0.5]]
    np.testing.assert_allclose(xy_yaw, expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(graph.edge_i, [0, 2, 3])
    np.testing.assert_array_equal(graph.edge_j, [1, 1, 4])


def test_read_g2o_rejects_unknown_options(tmp_path: Path) -> None:
    path = write_text(tmp_path / "g.g2o", SE2_V0)
    with pytest.raises(ValueError, match="repair_information must be one of"):
        read_g2o(path, repair_information="clip")
    with pytest.raises(ValueError, match="missing_vertices must be one of"):
        read_g2o(path, missing_vertices="skip")


@needs_data
def test_g2o_round_trip_tiny_grid(tmp_path: Path) -> None:
    original = read_g2o(DATA / "tinyGrid3D.g2o")
    out = tmp_path / "tiny.g2o"
    write_g2o(out, original)
    again = read_g2o(out)
    assert again.dim == 3 and not again.planar
    assert_graphs_equal(original, again)
    first = out.read_text()
    write_g2o(out, original)  # overwrite in place; output is deterministic
    assert out.read_text() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.g2o"], "temporary files left behind"


def test_g2o_round_trip_random_graph(tmp_path: Path) -> None:
    graph = random_graph(np.random.default_rng(1))
    write_g2o(tmp_path / "random.g2o", graph)
    assert_graphs_equal(graph, read_g2o(tmp_path / "random.g2o"))


@needs_data
def test_planar_graph_round_trips_through_se2_format(tmp_path: Path) -> None:
    planar = read_g2o(DATA / "intel.g2o")
    write_g2o(tmp_path / "intel.g2o", planar)
    assert (tmp_path / "intel.g2o").read_text().startswith("VERTEX_SE2 0 0.0 0.0 0.0\n")
    again = read_g2o(tmp_path / "intel.g2o")
    assert again.dim == 2 and again.planar
    assert_graphs_equal(planar, again, atol=1e-15)
    tilted = read_g2o(DATA / "intel.g2o")
    tilted.poses[3, 2, 3] = 0.1  # z = 10 cm cannot be written as SE(2)
    with pytest.raises(ValueError, match=r"planar graph.poses is off the plane by 0.1"):
        write_g2o(tmp_path / "tilted.g2o", tilted)


def test_empty_graph_round_trip(tmp_path: Path) -> None:
    no_index = np.zeros(0, np.int64)
    write_g2o(tmp_path / "empty.g2o", empty_graph(0, 0, no_index, no_index))
    assert read_g2o(tmp_path / "empty.g2o").num_poses == 0


def test_write_g2o_rejects_non_finite(tmp_path: Path) -> None:
    graph = random_graph(np.random.default_rng(2))
    graph.information[3, 0, 0] = np.nan
    with pytest.raises(ValueError, match="information"):
        write_g2o(tmp_path / "bad.g2o", graph)
    assert not any(tmp_path.iterdir())


def test_pose_graph_shape_validation() -> None:
    with pytest.raises(ValueError, match="measurements"):
        empty_graph(2, 1, np.zeros(1, np.int64), np.ones(1, np.int64), n_meas=2)
    with pytest.raises(ValueError, match="edge_j"):
        empty_graph(2, 1, np.zeros(1, np.int64), np.full(1, 2))


# Row-major upper triangle of the 6x6 identity (21 entries).
IDENTITY_UPPER = " ".join("1" if r == c else "0" for r in range(6) for c in range(r, 6))


def test_ignored_lines_are_counted(tmp_path: Path) -> None:
    text = (
        "# comment\n"
        "VERTEX_SE3:QUAT 4 0 0 0 0 0 0 1\n"
        "\n"
        "VERTEX_SE3:QUAT 9 1 2 3 0 0 0.7071 0.7071\n"  # norm 0.99999: accepted and normalised
        "FIX 4\n"
        "VERTEX_XY 3 1 2\n"
        "EDGE_SE3:QUAT 9 4 1 0 0 0 0 0 1 " + IDENTITY_UPPER + "\n"
    )
    graph = read_g2o(write_text(tmp_path / "g.g2o", text))
    assert graph.ignored == {"FIX": 1, "VERTEX_XY": 1}
    np.testing.assert_array_equal(graph.ids, [4, 9])
    assert (graph.edge_i[0], graph.edge_j[0]) == (1, 0)  # row indices, not ids
    np.testing.assert_array_equal(graph.information[0], np.eye(6))
    np.testing.assert_allclose(graph.poses[1, :3, :3], [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)


SE2_V0 = "VERTEX_SE2 0 0 0 0\n"
SE2_V1 = "VERTEX_SE2 1 1 0 0\n"
SE2_INFO = " 1 0 0 1 0 1"
SE3_V0 = "VERTEX_SE3:QUAT 0 0 0 0 0 0 0 1\n"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (SE3_V0 + "VERTEX_SE3:QUAT 1 0 0 0 0 0 0\n", r"line 2: VERTEX_SE3:QUAT needs 8 values, got 7"),
        (SE2_V0 + SE2_V1 + "EDGE_SE2 0 1 1 0 0" + SE2_INFO + " 7\n", r"line 3: EDGE_SE2 needs 11 values"),
        ("VERTEX_SE3:QUAT 0 0 0 abc 0 0 0 1\n", r"line 1: non-numeric"),
        (SE2_V0 + "VERTEX_SE2 1 nan 0 0\n", r"line 2: non-finite"),
        (SE2_V0 + SE2_V1 + "EDGE_SE2 0 1 1 0 0 1 0 0 inf 0 1\n", r"line 3: non-finite"),
        ("VERTEX_SE2 1.5 0 0 0\n", r"line 1: vertex ids must be integers"),
        (SE3_V0 + "VERTEX_SE3:QUAT 1 0 0 0 0 0 0 1.01\n", r"line 2: quaternion norm"),
        (SE3_V0 + "VERTEX_SE3:QUAT 1 0 0 0 0 0 0 0\n", r"line 2: quaternion norm"),
        (SE2_V0 + SE2_V1 + SE2_V0, r"line 3: duplicate vertex id 0"),
        (SE2_V0 + SE3_V0, r"line 2: VERTEX_SE3:QUAT in a 2D graph"),
    ],
)
def test_malformed_g2o_lines(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        read_g2o(write_text(tmp_path / "bad.g2o", text))


# ---------------------------------------------------------------- information not positive definite


def upper_text(matrix: np.ndarray) -> str:
    rows, cols = np.triu_indices(len(matrix))
    return " ".join(map(repr, matrix[rows, cols].tolist()))


def bad_information_6() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(information, eigenvectors, eigenvalues): one negative eigenvalue, random eigenbasis."""
    q, _ = np.linalg.qr(np.random.default_rng(11).normal(size=(6, 6)))
    eigenvalues = np.array([100.0, 80.0, 60.0, 25.0, 20.0, -5.0])
    info = (q * eigenvalues) @ q.T
    return 0.5 * (info + info.T), q, eigenvalues


def non_pd_3d_file(tmp_path: Path) -> Path:
    info, _, _ = bad_information_6()
    text = (
        "VERTEX_SE3:QUAT 4 0 0 0 0 0 0 1\n"
        "EDGE_SE3:QUAT 4 9 1 0 0 0 0 0 1 " + IDENTITY_UPPER + "\n"
        "# the next edge's information has eigenvalue -5\n"
        "EDGE_SE3:QUAT 9 4 -1 0 0 0 0 0 1 " + upper_text(info) + "\n"
        "VERTEX_SE3:QUAT 9 1 0 0 0 0 0 1\n"
    )
    return write_text(tmp_path / "nonpd.g2o", text)


def test_non_pd_information_names_file_edge_and_repair_option(tmp_path: Path) -> None:
    path = non_pd_3d_file(tmp_path)
    with pytest.raises(ValueError) as err:
        read_g2o(path)
    message = str(err.value)
    assert message.startswith(f"{path} line 4: EDGE_SE3:QUAT 9 4: information matrix is not positive definite")
    assert "eigenvalues -5 .. 100" in message and "1 of 2 edges" in message
    assert "repair_information='nearest_pd'" in message and "repair_information='isotropic'" in message


def test_nearest_pd_repair_clips_eigenvalues(tmp_path: Path) -> None:
    info, q, eigenvalues = bad_information_6()
    graph = read_g2o(non_pd_3d_file(tmp_path), repair_information="nearest_pd")
    np.testing.assert_array_equal(graph.repaired_edges, [1])
    np.testing.assert_array_equal(graph.information[0], np.eye(6))  # a good edge is untouched
    clipped = np.maximum(eigenvalues, REPAIR_EIGEN_FLOOR * 100.0)  # -5 -> 1e-4
    np.testing.assert_allclose(graph.information[1], (q * clipped) @ q.T, rtol=0, atol=1e-12)
    # Closed form check of "nearest": the change is exactly the clipped eigen-direction.
    change = graph.information[1] - info
    np.testing.assert_allclose(change, (5.0 + 1e-4) * np.outer(q[:, 5], q[:, 5]), rtol=0, atol=1e-12)
    wm, _ = world_model_from_pose_graph(graph)  # whitening (Cholesky) now succeeds
    assert wm.fg is not None


def test_isotropic_repair_uses_block_traces(tmp_path: Path) -> None:
    info, _, _ = bad_information_6()
    graph = read_g2o(non_pd_3d_file(tmp_path), repair_information="isotropic")
    np.testing.assert_array_equal(graph.repaired_edges, [1])
    expected = np.diag([np.trace(info[:3, :3]) / 3] * 3 + [np.trace(info[3:, 3:]) / 3] * 3)
    np.testing.assert_allclose(graph.information[1], expected, rtol=1e-14, atol=0)


def test_non_pd_se2_information(tmp_path: Path) -> None:
    # Over (x, y, theta): [[1, 2, 0], [2, 1, 0], [0, 0, 4]] has eigenvalues -1, 3, 4.
    text = SE2_V0 + SE2_V1 + "EDGE_SE2 0 1 1 0 0 1 2 0 1 0 4\n"
    path = write_text(tmp_path / "se2.g2o", text)
    with pytest.raises(ValueError, match=r"se2.g2o line 3: EDGE_SE2 0 1: information matrix is not positive "
                                         r"definite \(eigenvalues -1 \.\. 4;"):
        read_g2o(path)
    index = np.ix_([0, 1, 5], [0, 1, 5])
    iso = read_g2o(path, repair_information="isotropic")
    np.testing.assert_allclose(iso.information[0][index], np.diag([1.0, 1.0, 4.0]), rtol=0, atol=1e-15)
    near = read_g2o(path, repair_information="nearest_pd")
    plus, minus = np.array([1.0, 1.0, 0.0]) / np.sqrt(2), np.array([1.0, -1.0, 0.0]) / np.sqrt(2)
    expected = 3 * np.outer(plus, plus) + 4e-6 * np.outer(minus, minus) + np.diag([0.0, 0.0, 4.0])
    np.testing.assert_allclose(near.information[0][index], expected, rtol=0, atol=1e-14)
    assert near.planar and not np.any(near.information[0][[2, 3, 4]])  # unobserved rows stay zero


def test_unrepairable_information_is_an_error(tmp_path: Path) -> None:
    zero = " ".join(["0"] * 21)
    path = write_text(tmp_path / "zero.g2o", SE3_V0 + "VERTEX_SE3:QUAT 1 1 0 0 0 0 0 1\n"
                      "EDGE_SE3:QUAT 0 1 1 0 0 0 0 0 1 " + zero + "\n")
    with pytest.raises(ValueError, match=r"zero.g2o line 3: EDGE_SE3:QUAT 0 1: .*not positive definite"):
        read_g2o(path)
    for option, reason in (("nearest_pd", "no positive eigenvalue"), ("isotropic", "non-positive trace")):
        with pytest.raises(ValueError, match=rf"line 3: EDGE_SE3:QUAT 0 1: .*cannot be repaired.*{reason}"):
            read_g2o(path, repair_information=option)


# ---------------------------------------------------------------- TUM


def test_tum_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 25
    stamps = 1.7e9 + np.sort(rng.uniform(0, 100, size=n))
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, :3, :3] = random_rotations(rng, n)
    poses[:, :3, 3] = rng.normal(scale=50.0, size=(n, 3))
    write_tum(tmp_path / "traj.txt", stamps, poses)
    stamps2, poses2 = read_tum(tmp_path / "traj.txt")
    np.testing.assert_array_equal(stamps2, stamps)
    np.testing.assert_allclose(poses2, poses, rtol=0, atol=1e-12)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["traj.txt"]


def test_tum_reads_comments_and_rejects_bad_rows(tmp_path: Path) -> None:
    good = "# t x y z qx qy qz qw\n\n1.5 1 2 3 0 0 0 1\n"
    stamps, poses = read_tum(write_text(tmp_path / "a.txt", good))
    np.testing.assert_array_equal(stamps, [1.5])
    np.testing.assert_array_equal(poses[0], [[1, 0, 0, 1], [0, 1, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1]])
    with pytest.raises(ValueError, match=r"line 4: expected 8 values"):
        read_tum(write_text(tmp_path / "b.txt", good + "2.0 1 2 3 0 0 1\n"))
    with pytest.raises(ValueError, match=r"line 4: quaternion norm"):
        read_tum(write_text(tmp_path / "c.txt", good + "2.0 1 2 3 0 0 0 3\n"))
    with pytest.raises(ValueError, match="poses"):
        write_tum(tmp_path / "d.txt", np.zeros(2), np.zeros((3, 4, 4)))


# ---------------------------------------------------------------- PLY


def test_ply_round_trip_with_and_without_colors(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    points = rng.normal(scale=20.0, size=(50, 3))
    colors = rng.integers(0, 256, size=(50, 3)).astype(np.uint8)
    write_ply(tmp_path / "c.ply", points, colors)
    pts, cols = read_ply(tmp_path / "c.ply")
    np.testing.assert_array_equal(pts, points)
    assert cols is not None and cols.dtype == np.uint8
    np.testing.assert_array_equal(cols, colors)
    write_ply(tmp_path / "p.ply", points)
    pts, cols = read_ply(tmp_path / "p.ply")
    np.testing.assert_array_equal(pts, points)
    assert cols is None
    write_ply(tmp_path / "e.ply", np.zeros((0, 3)))
    assert read_ply(tmp_path / "e.ply")[0].shape == (0, 3)


def test_ply_validation(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        write_ply(tmp_path / "x.ply", np.zeros((2, 3)), np.full((2, 3), 0.5))
    with pytest.raises(ValueError):
        write_ply(tmp_path / "x.ply", np.zeros((2, 2)))
    header = "ply\nformat ascii 1.0\nelement vertex 2\n"
    header += "".join(f"property float {name}\n" for name in ("x", "y", "z", "intensity")) + "end_header\n"
    pts, cols = read_ply(write_text(tmp_path / "i.ply", header + "1 2 3 0.5\n4 5 6 0.7\n"))
    np.testing.assert_array_equal(pts, [[1, 2, 3], [4, 5, 6]])
    assert cols is None
    with pytest.raises(ValueError, match="line 10: expected 4 values"):
        read_ply(write_text(tmp_path / "j.ply", header + "1 2 3 0.5\n4 5 6\n"))
    with pytest.raises(ValueError, match="declares 2 vertices"):
        read_ply(write_text(tmp_path / "k.ply", header + "1 2 3 0.5\n"))
    with pytest.raises(ValueError, match="ASCII"):
        read_ply(write_text(tmp_path / "l.ply", header.replace("ascii", "binary_little_endian")))


# ---------------------------------------------------------------- atomic writes


def test_atomic_write_keeps_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "keep.txt"
    atomic_write_text(target, "old\n")
    os.chmod(target, 0o640)
    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(target, "caf\u00e9\n")  # not ASCII: fails while writing the temp file
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n" and (target.stat().st_mode & 0o777) == 0o640
