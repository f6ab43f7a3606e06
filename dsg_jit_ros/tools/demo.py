"""The online SLAM demo: the demo bag replayed through the node, scored against ground truth.

``dsg_jit_ros_demo [--bag PATH] [--out DIR]`` creates the demo bag when PATH is
absent or an empty directory (``make_demo_bag``), starts the SLAM node in this
process (parameters from ``config/lidar_3d.yaml`` plus ``--ros-args`` overrides;
reliable inputs with deep queues and ``use_sim_time``, so nothing of the replay is
lost), replays the bag with ``bag_player --clock`` in a separate process, waits
until the node has consumed every cloud, and writes into DIR:

- ``trajectory.tum``, ``map.ply``, ``graph.g2o`` (as ``~/save_map`` does),
- ``metrics.json``: ``ate_odometry_m`` and ``ate_estimate_m`` (RMSE after SE(3)
  alignment, at the keyframe stamps, against ``/ground_truth``), ``keyframes``,
  ``latency_ms_p50``/``p95``/``max`` (cloud in -> status out), solve times,
  ``compilations_after_warmup``, dropped inputs, replay wall time and real-time factor,
- ``overview.png``: top view of the map, ground truth, odometry and estimate.

What stops it before the replay (PATH is not a rosbag2 bag, lacks /odom, /points
or ground_truth.tum, the node refuses its parameters) is one line on stderr and
exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DEFAULT_BAG = Path("out/demo_bag")
DEFAULT_OUT = Path("out/demo")
PARAMS_FILE = Path(__file__).resolve().parents[2] / "config" / "lidar_3d.yaml"  # the demo bag: a 3D LiDAR
# The replay must not lose data: reliable inputs, queues deep enough for the
# node to fall behind the player for a while.
DEMO_OVERRIDES = ("input_reliability:=reliable", "odom_queue_depth:=20000", "points_queue_depth:=2000",
                  "use_sim_time:=true")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dsg_jit_ros_demo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bag", type=Path, default=DEFAULT_BAG, help=f"demo bag directory (created if absent; default {DEFAULT_BAG})")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    p.add_argument("--rate", type=float, default=1.0, help="replay rate factor (default 1.0)")
    p.add_argument("--duration", type=float, default=None, help="duration of a newly created demo bag [s]")
    p.add_argument("--params-file", type=Path, default=PARAMS_FILE,
                   help="node parameters (default config/lidar_3d.yaml, the sensor class of the demo bag)")
    p.add_argument("--timeout", type=float, default=1800.0, help="give up after this many seconds of replay")
    return p


class DemoError(RuntimeError):
    """What stops the demo before its replay, as one sentence (printed without a traceback)."""


def _ensure_bag(bag: Path, duration: float | None) -> None:
    """Create the demo bag at ``bag`` when nothing (or an empty directory) is there."""
    if (bag / "metadata.yaml").exists():
        return
    if bag.exists() and not bag.is_dir():
        raise DemoError(f"--bag {bag} is a file, not a rosbag2 bag directory")
    if bag.is_dir() and any(bag.iterdir()):
        raise DemoError(f"--bag {bag} is not a rosbag2 bag (no metadata.yaml in it); give a bag directory, or a path "
                        "that does not exist yet to create the demo bag there")
    from dsg_jit_ros.tools.make_demo_bag import DemoConfig, generate_demo_bag

    try:
        cfg = DemoConfig() if duration is None else DemoConfig(duration_s=duration)
        summary = generate_demo_bag(bag, cfg, force=bag.is_dir())  # force only replaces an empty directory
    except (ValueError, OSError) as err:
        raise DemoError(f"cannot create the demo bag in {bag}: {err}") from err
    print(summary.describe(), flush=True)


def _bag_counts(bag: Path) -> dict[str, int]:
    """Messages per topic of ``bag``; DemoError unless it is a readable bag with what the demo needs."""
    from rosbags.rosbag2 import Reader, ReaderError

    try:
        with Reader(bag) as reader:
            counts = {c.topic: c.msgcount for c in reader.connections}
    except (ReaderError, OSError) as err:
        reason = " ".join(str(err).split())  # rosbags quotes the YAML parser over several lines
        raise DemoError(f"--bag {bag} is not a readable rosbag2 bag: {reason}") from err
    missing = [t for t in ("/odom", "/points") if not counts.get(t)]
    if missing:
        raise DemoError(f"--bag {bag} has no {' and no '.join(missing)} messages (the demo replays /odom and "
                        f"/points; the bag has {', '.join(sorted(counts)) or 'no topics'})")
    if not (bag / "ground_truth.tum").is_file():
        raise DemoError(f"--bag {bag} has no ground_truth.tum next to its metadata.yaml (the demo scores the estimate "
                        "against it; make_demo_bag writes one)")
    return counts


def _ros_env() -> None:
    """Keep a demo run on this machine unless the user chose otherwise."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="dsg_jit_ros_demo_log_"))


def run(bag: Path, out: Path, rate: float, params_file: Path, ros_args: Sequence[str] = (),
        timeout: float = 1800.0) -> dict:
    """Replay ``bag`` through an in-process node; write the outputs; return the metrics."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from dsg_jit_ros.ros.slam_node import SlamNode

    from dsg_jit_ros.ros.params import ParameterError, arguments_error

    counts = _bag_counts(bag)
    n_clouds, n_odom = counts["/points"], counts["/odom"]
    if not params_file.is_file():
        raise DemoError(f"--params-file {params_file} does not exist")
    args = ["dsg_jit_ros_demo", "--ros-args", "--params-file", str(params_file)]
    for o in DEMO_OVERRIDES:
        args += ["-p", o]
    args += list(ros_args)
    context = rclpy.Context()
    try:
        rclpy.init(args=args, context=context)
    except RuntimeError as err:  # rcl refuses the arguments (e.g. an unreadable parameters file)
        raise DemoError(f"the SLAM node cannot start: {arguments_error(err)}") from err
    try:
        node = SlamNode(context=context)
    except (ParameterError, RuntimeError) as err:  # a refused parameter; interfaces not built
        rclpy.shutdown(context=context)
        raise DemoError(f"the SLAM node cannot start: {err}") from err
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    player_cmd = [sys.executable, "-m", "dsg_jit_ros.ros.bag_player", str(bag), "--clock", "--rate", str(rate),
                  "--topics", "/odom", "/points", "--wait-subscribers", "1", "--wait-topics", "/odom", "/points",
                  "--wait-timeout", "60"]
    started = time.monotonic()
    player = subprocess.Popen(player_cmd)

    def done() -> bool:
        return (node.received["points"] >= n_clouds and node.received["odom"] >= n_odom
                and node.pipeline.queued_keyframes == 0
                and node.published_keyframes == node.pipeline.selected_keyframes)

    progress, last_change = None, time.monotonic()
    try:
        while not done():
            executor.spin_once(timeout_sec=0.1)
            now_progress = (sum(node.received.values()), node.published_keyframes)
            if now_progress != progress:
                progress, last_change = now_progress, time.monotonic()
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"replay not finished after {timeout} s: {dict(node.received)} of {counts}")
            code = player.poll()
            if code not in (None, 0):
                raise RuntimeError(f"bag_player failed with exit code {code}")
            if code == 0 and time.monotonic() - last_change > 30.0:
                # the player had everything acknowledged, so it reached the node's queues
                raise RuntimeError(f"the player finished; the node stalled at {dict(node.received)} of {counts}")
        wall = time.monotonic() - started
        metrics = _finish(node, bag, out, wall, n_clouds)
    finally:
        if player.poll() is None:
            player.terminate()
        player.wait(timeout=30)
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
    return metrics


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _finish(node, bag: Path, out: Path, wall: float, n_clouds: int) -> dict:
    from dsg_jit_ros.io.tum import read_tum
    from dsg_jit_ros.mapping.export import keyframe_arrays, save_outputs
    from dsg_jit_ros.tools.evaluate import evaluate

    pipeline = node.pipeline
    save_outputs(pipeline, out)
    gt = read_tum(bag / "ground_truth.tum")
    kf_stamps, est = keyframe_arrays(pipeline)
    odo = np.array([m for _, m in pipeline.keyframe_odometry])
    e_est = evaluate(gt, (kf_stamps, est), align="se3")
    e_odo = evaluate(gt, (kf_stamps, odo), align="se3")
    duration = float(gt[0][-1] - gt[0][0])
    lat = node.latencies_ms
    metrics = {
        "bag": str(bag),
        "keyframes": int(pipeline.keyframes),
        "clouds_received": int(node.received["points"]),
        "clouds_in_bag": int(n_clouds),
        "odometry_received": int(node.received["odom"]),
        "ate_odometry_m": e_odo.ate_rmse,
        "ate_estimate_m": e_est.ate_rmse,
        "rpe_odometry_per_m": e_odo.rpe_per_m,
        "rpe_estimate_per_m": e_est.rpe_per_m,
        "latency_ms_p50": _percentile(lat, 50),
        "latency_ms_p95": _percentile(lat, 95),
        "latency_ms_max": max(lat) if lat else float("nan"),
        "compilations_after_warmup": int(pipeline.compilations_after_warmup()),
        "warmup_s": node.warmup_s,
        "dropped": dict(sorted(pipeline.dropped.items())),
        "voxels": int(len(pipeline.map_centres())),
        "replay_wall_s": wall,
        "bag_duration_s": duration,
        "real_time_factor": duration / wall if wall > 0 else float("nan"),
        "window_size": int(pipeline.cfg.window.size),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    _overview(out / "overview.png", pipeline, gt, kf_stamps, est, odo, e_est, e_odo)
    return metrics


def _overview(path: Path, pipeline, gt, kf_stamps, est, odo, e_est, e_odo) -> None:
    """Top view: voxel map, ground truth, odometry and estimate (each SE(3)-aligned to truth)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def aligned(poses, evaluation):
        t = np.asarray(evaluation.T_ref_est)
        return poses[:, :3, 3] @ t[:3, :3].T + t[:3, 3]

    voxels = pipeline.map_centres()
    vmap = voxels @ np.asarray(e_est.T_ref_est)[:3, :3].T + np.asarray(e_est.T_ref_est)[:3, 3]
    fig, ax = plt.subplots(figsize=(9, 6.5), dpi=110)
    ax.scatter(vmap[:, 0], vmap[:, 1], s=1, c=vmap[:, 2], cmap="viridis", alpha=0.5, label="map (voxel centres)")
    ax.plot(gt[1][:, 0, 3], gt[1][:, 1, 3], "k-", lw=1.5, label="ground truth")
    o = aligned(odo, e_odo)
    ax.plot(o[:, 0], o[:, 1], "-", color="tab:orange", lw=1.0, label=f"odometry (ATE {e_odo.ate_rmse:.2f} m)")
    e = aligned(est, e_est)
    ax.plot(e[:, 0], e[:, 1], ".-", color="tab:red", lw=1.0, ms=3, label=f"estimate (ATE {e_est.ate_rmse:.2f} m)")
    ax.set_aspect("equal")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.set_title(f"dsg_jit_ros demo: {len(est)} keyframes, window {pipeline.cfg.window.size}")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dsg_jit_ros_demo``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ros_args: list[str] = []
    if "--ros-args" in argv:
        i = argv.index("--ros-args")
        argv, ros_args = argv[:i], argv[i + 1:]
    args = _parser().parse_args(argv)
    if not args.rate > 0:
        print("dsg_jit_ros_demo: --rate must be > 0", file=sys.stderr)
        return 2
    _ros_env()
    try:
        _ensure_bag(args.bag, args.duration)
        _bag_counts(args.bag)  # before the output directory is made
        args.out.mkdir(parents=True, exist_ok=True)
        metrics = run(args.bag, args.out, args.rate, args.params_file, ros_args, args.timeout)
    except DemoError as err:
        print(f"dsg_jit_ros_demo: {err}", file=sys.stderr)
        return 2
    print(json.dumps({k: metrics[k] for k in ("keyframes", "ate_odometry_m", "ate_estimate_m", "latency_ms_p50",
                                              "latency_ms_p95", "compilations_after_warmup", "real_time_factor")}))
    print(f"wrote {args.out}/trajectory.tum, map.ply, graph.g2o, metrics.json, overview.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
