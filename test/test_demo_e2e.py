"""End to end: ``dsg_jit_ros_demo`` as a user runs it (a separate process) on a
20 s demo bag it creates, replayed by ``bag_player`` through the node; the
optimised trajectory must be much closer to ground truth than odometry, with
every cloud delivered and no compile after warm-up.  The ATE figures are checked
against our own computation from the written files."""

import json
import subprocess
import sys

import numpy as np

from dsg_jit_ros.io.ply import read_ply
from dsg_jit_ros.io.tum import read_tum
from dsg_jit_ros.tools.evaluate import ate_rmse


def test_demo_replays_the_bag_through_the_node_and_beats_odometry(tmp_path):
    bag, out = tmp_path / "bag", tmp_path / "out"
    cmd = [sys.executable, "-m", "dsg_jit_ros.tools.demo", "--bag", str(bag), "--out", str(out),
           "--duration", "20", "--rate", "2"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    for name in ("trajectory.tum", "map.ply", "graph.g2o", "overview.png"):
        assert (out / name).stat().st_size > 0
    assert metrics["clouds_received"] == metrics["clouds_in_bag"] == 201
    assert metrics["odometry_received"] == 1001
    assert metrics["compilations_after_warmup"] == 0
    assert metrics["keyframes"] > 20
    assert metrics["ate_estimate_m"] < 0.5 * metrics["ate_odometry_m"], metrics
    for key in ("latency_ms_p50", "latency_ms_p95"):
        assert metrics[key] > 0
    # recompute the estimate's ATE from the written trajectory and the bag's ground truth
    stamps, poses = read_tum(out / "trajectory.tum")
    assert len(stamps) == metrics["keyframes"]
    assert abs(ate_rmse(bag / "ground_truth.tum", out / "trajectory.tum") - metrics["ate_estimate_m"]) < 1e-9
    pts, _ = read_ply(out / "map.ply")
    assert len(pts) == metrics["voxels"] and np.all(np.isfinite(pts))
