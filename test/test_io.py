"""Tests for dsg_jit_ros.io: g2o (against GTSAM's reader), TUM and PLY round trips."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import transforms3d.quaternions as t3q

from dsg_jit_ros.io import atomic_write_text
from dsg_jit_ros.io.g2o import PoseGraph, matrix_to_quat_xyzw, quat_xyzw_to_matrix, read_g2o, write_g2o
from dsg_jit_ros.io.ply import read_ply, write_ply
from dsg_jit_ros.io.tum import read_tum, write_tum

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
def test_manhattan_without_vertices_is_rejected() -> None:
    # manhattan.g2o holds only EDGE_SE2 lines, so its first edge names an undeclared vertex.
    with pytest.raises(ValueError, match=r"line 1: edge references unknown vertex id 0"):
        read_g2o(DATA / "manhattan.g2o")


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
def test_planar_graph_round_trips_through_3d_format(tmp_path: Path) -> None:
    planar = read_g2o(DATA / "intel.g2o")
    write_g2o(tmp_path / "intel3d.g2o", planar)
    again = read_g2o(tmp_path / "intel3d.g2o")
    assert again.dim == 3 and not again.planar
    assert_graphs_equal(planar, again)


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
        (SE2_V0 + SE2_V1 + "EDGE_SE2 0 7 1 0 0" + SE2_INFO + "\n", r"line 3: edge references unknown vertex id 7"),
        (SE3_V0 + "VERTEX_SE3:QUAT 1 0 0 0 0 0 0 1.01\n", r"line 2: quaternion norm"),
        (SE3_V0 + "VERTEX_SE3:QUAT 1 0 0 0 0 0 0 0\n", r"line 2: quaternion norm"),
        (SE2_V0 + SE2_V1 + SE2_V0, r"line 3: duplicate vertex id 0"),
        (SE2_V0 + SE3_V0, r"line 2: VERTEX_SE3:QUAT in a 2D graph"),
    ],
)
def test_malformed_g2o_lines(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        read_g2o(write_text(tmp_path / "bad.g2o", text))


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
