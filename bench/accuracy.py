"""Accuracy on real and synthetic logs: one JSON row per (dataset, method).

    .venv/bin/python bench/accuracy.py [--datasets mit-csail fr079 office courtyard]
        [--methods odometry ours small_gicp] [--max-scans N] [--png DIR] [--set name=value ...]
        [--carmen LOG.clf[.bz2] ...]

Datasets: the real planar-laser bags of ../shared/data/real (no ground truth: the
map-consistency figure only), CARMEN logs given with ``--carmen LOG.clf[.bz2]`` (e.g.
the public Freiburg/Radish logs; scored against ``LOG.relations`` beside them when
present, relation times in the log's ipc time base), and the synthetic bags (``make_demo_bag --world
office`` / the courtyard demo, generated into out/ when missing), which carry
``ground_truth.tum`` and ``ground_truth.relations``.

Methods, all fed the same messages in bag order:
- ``odometry``: the raw wheel odometry at each scan;
- ``ours``: ``SlamPipeline`` with the parameter file of the sensor class
  (config/planar_laser.yaml or config/lidar_3d.yaml, ``--set`` overrides); the
  pose of every scan is the final trajectory's (``export.poses_at(final=True)``): its
  keyframe's final pose times its registration to the map when it was tracked
  (``keyframe.track_between``), else times the odometry since, with the next keyframe's
  correction spread over the interval;
- ``small_gicp``: the library baseline of bench/baselines.py (GICP scan-to-local-map
  seeded by the odometry increment).

Row fields: dataset, method, scans, relations (all / local / long: mean trans m,
mean rot deg, counts) and ATE (m) where ground truth exists, consistency (median
distance m and fraction within 5 cm of points to scans >= 30 s apart; and
``consistency_local``: to scans 1-10 s apart), ms per scan; for ``ours`` the loop counters and
``partial_loops`` (loop edges in the final graph that leave a direction free).
Run times are wall-clock on this machine: compare methods within one run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import dsg_jit_ros  # noqa: E402,F401  (float64)
from dsg_jit_ros.mapping.export import poses_at  # noqa: E402
from dsg_jit_ros.mapping.loop_information import is_partial  # noqa: E402
from dsg_jit_ros.mapping.pipeline import SlamPipeline  # noqa: E402
from dsg_jit_ros.config import load_pipeline_config  # noqa: E402
from dsg_jit_ros.tools.consistency import map_consistency, plot_map  # noqa: E402
from dsg_jit_ros.tools.carmen_log import read_carmen_log  # noqa: E402
from dsg_jit_ros.tools.log_reader import read_laser_log  # noqa: E402
from real_logs import REAL_LOGS  # noqa: E402

DATASETS = {
    **{name: (path, "planar_laser") for name, path in REAL_LOGS.items()},
    "office": (REPO / "out" / "office_bag", "planar_laser"),
    "courtyard": (REPO / "out" / "demo_bag", "lidar_3d"),
}


def _ensure_bag(name: str, path: Path) -> None:
    if path.exists() or name not in ("office", "courtyard"):
        return
    from dsg_jit_ros.tools.make_demo_bag import main as make_bag

    if make_bag(["--world", name, "--out", str(path)]) != 0:
        raise SystemExit(f"could not generate {path}")


def run_ours(log, cfg):
    pipe = SlamPipeline(cfg)
    pipe.warm_up()
    start = time.perf_counter()
    log.replay(pipe)
    pipe.finish()  # the last window joins the global graph (the loop back to the start closes here)
    elapsed = time.perf_counter() - start
    # the final trajectory (tracked clouds; elsewhere each keyframe's correction spread before it)
    poses = poses_at(pipe, log.cloud_stamps, log.odometry_at_clouds(), final=True)
    counts = pipe.loop_counts()
    info = {"keyframes": pipe.keyframes, "compilations_after_warmup": pipe.compilations_after_warmup(),
            "loops": {k: counts[k] for k in ("loop_closures", "loop_attempts", "loops_rejected", "loops_in_place",
                                             "global_solves")},
            "partial_loops": sum(is_partial(e.sqrt_info, pipe.graph.planar) for e in pipe.graph.loops),
            "dropped": pipe.dropped_snapshot(), "planar": bool(pipe.planar),
            "registrations": dict(pipe.window.registrations),
            "solves_on_prefix": f"{getattr(pipe.window, 'prefix_solves', 0)} of {getattr(pipe.window, 'solves', '?')}"}
    return poses, 1000.0 * elapsed / len(log.clouds), info


def carmen_dataset(path: Path) -> tuple[str, Path | None]:
    """(name, relations file or None) of a CARMEN log ``NAME.clf[.bz2]``: ``NAME.relations``
    beside it is its ground truth."""
    name = path.name.split(".clf")[0]
    rel = path.with_name(f"{name}.relations")
    return name, (rel if rel.exists() else None)


def metrics(bag: Path | None, log, poses: np.ndarray, rel_file: Path | None = None) -> dict:
    out = {}
    if rel_file is None and bag is not None:
        rel_file = bag / "ground_truth.relations"
    if rel_file is not None and rel_file.exists():
        from dsg_jit_ros.tools.relations import evaluate_relations

        res = evaluate_relations(rel_file, (log.cloud_stamps, poses), planar=True).to_dict()
        out["relations"] = {k: res[k] for k in ("all", "local", "long") if k in res}
        out["relations_missing"] = res.get("n_missing")
    gt_file = bag / "ground_truth.tum" if bag is not None else None
    if gt_file is not None and gt_file.exists():
        from dsg_jit_ros.tools.evaluate import ate_rmse

        out["ate_m"] = ate_rmse(str(gt_file), (log.cloud_stamps, poses), align="se3")
    cons = map_consistency(log.clouds, log.cloud_stamps, poses, local=True)
    for name, st in (("consistency", cons.revisit), ("consistency_local", cons.local)):
        out[name] = {"median_m": round(st.median_m, 4), "within_5cm": round(st.frac_within_5cm, 4),
                     "within_10cm": round(st.frac_within_10cm, 4), "overlap": round(st.overlap_fraction, 4)}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=None, choices=list(DATASETS),
                        help="default: all of them, or none when --carmen logs are given")
    parser.add_argument("--methods", nargs="+", default=["odometry", "ours", "small_gicp"],
                        choices=["odometry", "ours", "small_gicp"])
    parser.add_argument("--max-scans", type=int, default=None, help="only the first N scans of each log")
    parser.add_argument("--png", type=Path, default=None, help="write <dataset>_<method>.png map pictures here")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                        help="parameter overrides for 'ours' (names as in the parameter files)")
    parser.add_argument("--carmen", nargs="*", type=Path, default=[], metavar="LOG.clf",
                        help="CARMEN logs to replay as well (planar laser parameters)")
    args = parser.parse_args(argv)
    if args.datasets is None:
        args.datasets = [] if args.carmen else list(DATASETS)
    runs = [(name, *DATASETS[name], None) for name in args.datasets]
    for path in args.carmen:
        name, rel_file = carmen_dataset(path)
        runs.append((name, path, "planar_laser", rel_file))
    for name, bag, sensor, rel_file in runs:
        if bag.suffix in (".clf", ".bz2"):
            log = read_carmen_log(bag, max_scans=args.max_scans)
            bag = None
        else:
            _ensure_bag(name, bag)
            log = read_laser_log(bag, max_scans=args.max_scans)
        for method in args.methods:
            info: dict = {}
            if method == "odometry":
                start = time.perf_counter()
                poses = log.odometry_at_clouds()
                ms = 1000.0 * (time.perf_counter() - start) / len(log.clouds)
            elif method == "ours":
                cfg = load_pipeline_config(REPO / "config" / f"{sensor}.yaml", overrides=args.set)
                poses, ms, info = run_ours(log, cfg)
            else:
                from baselines import small_gicp_trajectory

                run = small_gicp_trajectory(log.cloud_stamps, log.odometry_at_clouds(), log.clouds)
                poses, ms = run.poses, float(np.mean(run.ms_per_scan))
                info = {"fallbacks": run.fallbacks}
            row = {"dataset": name, "method": method, "scans": len(log.clouds), "ms_per_scan": round(ms, 2)}
            row.update(metrics(bag, log, poses, rel_file))
            row.update(info)
            print(json.dumps(row), flush=True)
            if args.png is not None:
                args.png.mkdir(parents=True, exist_ok=True)
                plot_map(args.png / f"{name}_{method}.png", log.clouds, poses, log.cloud_stamps,
                         title=f"{name}: {method}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
