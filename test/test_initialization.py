"""Tests for dsg_jit_ros.optimization.initialization.chordal_initialization."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from dsg_jit_ros.io.g2o import PoseGraph, quat_xyzw_to_matrix, read_g2o
from dsg_jit_ros.optimization.initialization import chordal_initialization, project_to_so3

DATA = Path("/work/shared/data/posegraph")
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="pose-graph data set not available")


def synthetic_graph(rng: np.random.Generator, n: int = 40, loops: int = 30) -> tuple[PoseGraph, np.ndarray]:
    """Noise-free graph over random ground-truth poses; its ``poses`` are identity
    except where the caller later copies in the anchor.  Returns (graph, truth)."""
    truth = np.tile(np.eye(4), (n, 1, 1))
    truth[:, :3, :3] = quat_xyzw_to_matrix(rng.normal(size=(n, 4)))
    truth[:, :3, 3] = rng.normal(scale=5.0, size=(n, 3))
    edge_i = np.concatenate([np.arange(n - 1), rng.integers(0, n, size=loops)])
    edge_j = np.concatenate([np.arange(1, n), rng.integers(0, n, size=loops)])
    measurements = np.linalg.inv(truth[edge_i]) @ truth[edge_j]
    diag = rng.uniform(1.0, 100.0, size=(len(edge_i), 6))
    information = np.einsum("ek,kl->ekl", diag, np.eye(6))
    identity = np.tile(np.eye(4), (n, 1, 1))
    graph = PoseGraph(3, np.arange(n, dtype=np.int64), identity, edge_i, edge_j, measurements, information)
    return graph, truth


@pytest.mark.parametrize("anchor", [0, 17])
def test_noise_free_graph_is_recovered_exactly(anchor: int) -> None:
    graph, truth = synthetic_graph(np.random.default_rng(anchor))
    graph.poses[anchor] = truth[anchor]
    estimate = chordal_initialization(graph, anchor=anchor)
    np.testing.assert_array_equal(estimate[anchor], truth[anchor])
    np.testing.assert_allclose(estimate, truth, rtol=0, atol=1e-9)


def test_gauge_follows_the_anchor() -> None:
    # Anchor at the identity: the result is the truth expressed in the anchor's frame.
    graph, truth = synthetic_graph(np.random.default_rng(5))
    estimate = chordal_initialization(graph, anchor=3)
    np.testing.assert_allclose(estimate, np.linalg.inv(truth[3]) @ truth, rtol=0, atol=1e-9)


def test_project_to_so3() -> None:
    rng = np.random.default_rng(6)
    matrices = rng.normal(size=(100, 3, 3))
    rotations = project_to_so3(matrices)
    gram = rotations @ np.transpose(rotations, (0, 2, 1))
    np.testing.assert_allclose(gram, np.broadcast_to(np.eye(3), (100, 3, 3)), atol=1e-13)
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0, atol=1e-13)
    np.testing.assert_allclose(project_to_so3(rotations), rotations, atol=1e-13)


def test_invalid_inputs_are_rejected() -> None:
    graph, _ = synthetic_graph(np.random.default_rng(7), n=6, loops=0)
    with pytest.raises(ValueError, match="anchor"):
        chordal_initialization(graph, anchor=6)
    keep = [0, 2]
    split = PoseGraph(
        3, graph.ids, graph.poses, graph.edge_i[keep], graph.edge_j[keep],
        graph.measurements[keep], graph.information[keep],
    )
    with pytest.raises(ValueError, match="disconnected"):
        chordal_initialization(split)
    graph.information[2, 3:, 3:] = 0.0  # edge 2 carries no rotation information: 2 | 3 split
    with pytest.raises(ValueError, match="rotation constraints leave 2 disconnected"):
        chordal_initialization(graph)
    graph.information[2, 3, 3] = -1.0
    with pytest.raises(ValueError, match="negative"):
        chordal_initialization(graph)


# ---------------------------------------------------------------- real data vs GTSAM


def best_time(graph: PoseGraph, repeats: int = 3) -> tuple[np.ndarray, float]:
    """Chordal estimate and the best wall time (seconds) over ``repeats`` runs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        estimate = chordal_initialization(graph)
        times.append(time.perf_counter() - start)
    return estimate, min(times)


def gtsam_errors_3d(name: str) -> tuple[dict[str, float], float]:
    """GTSAM graph error at odometry / chordal / InitializePose3, plus chordal time [s]."""
    gtsam = pytest.importorskip("gtsam")
    path = str(DATA / name)
    graph = read_g2o(path)
    factors, odometry = gtsam.readG2o(path, True)
    estimate, seconds = best_time(graph)
    chordal = gtsam.Values()
    for k, vid in enumerate(graph.ids.tolist()):
        chordal.insert(vid, gtsam.Pose3(estimate[k]))
    anchored = gtsam.NonlinearFactorGraph(factors)  # InitializePose3 needs a prior to fix the gauge
    first = int(graph.ids[0])
    anchored.add(gtsam.PriorFactorPose3(first, odometry.atPose3(first), gtsam.noiseModel.Unit.Create(6)))
    reference = gtsam.InitializePose3.initialize(anchored)
    errors = {"odometry": factors.error(odometry), "chordal": factors.error(chordal), "gtsam": factors.error(reference)}
    return errors, seconds


@needs_data
@pytest.mark.parametrize("name", ["sphere2500.g2o", "parking-garage.g2o"])
def test_chordal_beats_odometry_on_real_graphs(name: str) -> None:
    errors, seconds = gtsam_errors_3d(name)
    report = (
        f"{name}: gtsam error at odometry {errors['odometry']:.6g}, chordal {errors['chordal']:.6g}, "
        f"gtsam.InitializePose3 {errors['gtsam']:.6g}; chordal time {seconds * 1e3:.1f} ms"
    )
    print(report)
    assert errors["chordal"] < errors["odometry"], report
    # Same relaxation family as GTSAM's; allow a factor 2 for the different weighting.
    assert errors["chordal"] < 2.0 * errors["gtsam"], report
    assert seconds < 1.0, report


@needs_data
def test_planar_graph_stays_planar_and_beats_odometry() -> None:
    gtsam = pytest.importorskip("gtsam")
    graph = read_g2o(DATA / "intel.g2o")
    estimate = chordal_initialization(graph)
    z_row = np.broadcast_to([0.0, 0.0, 1.0, 0.0], (graph.num_poses, 4))
    np.testing.assert_allclose(estimate[:, 2, :], z_row, atol=1e-9)
    factors, odometry = gtsam.readG2o(str(DATA / "intel.g2o"), False)
    chordal = gtsam.Values()
    for k, vid in enumerate(graph.ids.tolist()):
        yaw = np.arctan2(estimate[k, 1, 0], estimate[k, 0, 0])
        chordal.insert(vid, gtsam.Pose2(estimate[k, 0, 3], estimate[k, 1, 3], yaw))
    report = f"intel: gtsam error at odometry {factors.error(odometry):.6g}, chordal {factors.error(chordal):.6g}"
    print(report)
    assert factors.error(chordal) < factors.error(odometry), report
