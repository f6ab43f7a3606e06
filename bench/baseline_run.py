"""Run the library baselines of ``bench/baselines.py`` on a laser + odometry bag and score them.

    python bench/baseline_run.py BAG_DIR [--method small_gicp|kiss_icp|odometry ...] [--max-scans N]
                                 [--set small_gicp.voxel=0.75 ...] [--png-dir out] [--no-png]

Prints one JSON line per method: dataset, method, scans, the ground-truth-free map
consistency (``dsg_jit_ros.tools.consistency.map_consistency``: for the points of every
``--scan-step``-th scan the distance to the nearest point of the scans at least
``--min-dt`` s apart; median over the points with such a point within ``--cap``, and the
fractions of *all* query points within 5 / 10 cm), time per scan, fallbacks to the
odometry prediction and the median inlier fraction.  Also writes a top-view map PNG
per method, ``<png-dir>/baseline_<bag>_<method>.png``.

Caveat: the figure rewards maps whose scans land on top of each other, whatever
the reason: KISS-ICP left to its constant-velocity model spins on the spot and
scores *better* than any correct trajectory (mit-csail: median 1.1 cm, 94 % within
5 cm, path 7.6 km against the odometry's 374 m).  Check the PNGs and ``path_m``
(path length; the odometry's is the reference).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import baselines  # noqa: E402

CONFIGS = {"small_gicp": baselines.SmallGicpConfig, "kiss_icp": baselines.KissIcpConfig}


def parse_overrides(items: list[str]) -> dict[str, dict]:
    """``method.field=value`` strings -> {method: {field: value}}, values typed by the config field."""
    out: dict[str, dict] = {m: {} for m in CONFIGS}
    for item in items:
        key, _, value = item.partition("=")
        method, _, name = key.partition(".")
        if method not in CONFIGS or not value:
            raise SystemExit(f"--set {item!r}: expected METHOD.FIELD=VALUE with METHOD in {sorted(CONFIGS)}")
        fields = {f.name: f for f in dataclasses.fields(CONFIGS[method])}
        if name not in fields:
            raise SystemExit(f"--set {item!r}: {method} has no field {name!r} ({', '.join(fields)})")
        default = getattr(CONFIGS[method](), name)
        if value.lower() == "none":
            out[method][name] = None
        elif isinstance(default, bool) or value.lower() in ("true", "false"):
            out[method][name] = value.lower() == "true"
        elif isinstance(default, int):
            out[method][name] = int(value)
        elif isinstance(default, float) or default is None:
            out[method][name] = float(value)
        else:
            out[method][name] = value
    return out


def consistency(clouds, stamps, poses, args) -> dict:
    """The consistency figure of ``dsg_jit_ros.tools.consistency`` as flat JSON fields."""
    from dsg_jit_ros.tools.consistency import map_consistency

    res = map_consistency(clouds, stamps, poses, min_dt=args.min_dt, cap=args.cap, scan_step=args.scan_step,
                          max_points=args.max_points or None, local=args.local)
    c = res.revisit
    out = {"consistency_median_m": c.median_m, "within_5cm": c.frac_within_5cm, "within_10cm": c.frac_within_10cm,
           "overlap_fraction": c.overlap_fraction, "query_points": c.n_query}
    if res.local is not None:
        out.update(local_median_m=res.local.median_m, local_within_5cm=res.local.frac_within_5cm)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bag", help="bag directory with /odom (nav_msgs/Odometry) and /points (PointCloud2)")
    parser.add_argument("--method", action="append", choices=sorted(baselines.METHODS),
                        help="method to run (repeatable; default: odometry, small_gicp, kiss_icp)")
    parser.add_argument("--max-scans", type=int, default=None, help="first N scans only (default: all)")
    parser.add_argument("--set", action="append", default=[], metavar="METHOD.FIELD=VALUE",
                        help="config override, e.g. small_gicp.voxel=0.75 or kiss_icp.fixed_threshold=0.2")
    parser.add_argument("--scan-step", type=int, default=5, help="consistency: query every n-th scan (default: 5)")
    parser.add_argument("--max-points", type=int, default=100,
                        help="consistency: query points per scan, 0 = all (default: 100)")
    parser.add_argument("--min-dt", type=float, default=30.0, help="consistency: revisit time [s] (default: 30)")
    parser.add_argument("--cap", type=float, default=1.0, help="consistency: revisit distance cap [m] (default: 1)")
    parser.add_argument("--local", action="store_true",
                        help="also the consistency of scans 1..10 s apart (local_median_m, local_within_5cm)")
    parser.add_argument("--png-dir", default=str(Path(__file__).resolve().parents[1] / "out"),
                        help="where to write baseline_<bag>_<method>.png (default: <repo>/out)")
    parser.add_argument("--tag", default="", help="suffix of the PNG name (for configuration sweeps)")
    parser.add_argument("--no-png", action="store_true", help="do not write map PNGs")
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.set)
    methods = args.method or ["odometry", "small_gicp", "kiss_icp"]

    from dsg_jit_ros.tools.log_reader import read_laser_log

    dataset = os.path.basename(os.path.normpath(args.bag))
    log = read_laser_log(args.bag, max_scans=args.max_scans)
    stamps, clouds, odom = log.cloud_stamps, list(log.clouds), log.odometry_at_clouds()
    for method in methods:
        cfg = CONFIGS[method](**overrides[method]) if method in CONFIGS else None
        started = time.perf_counter()
        run = baselines.METHODS[method](stamps, odom, clouds, cfg)
        run_s = time.perf_counter() - started
        record = {"dataset": dataset, "method": method, "scans": len(stamps), **consistency(clouds, stamps, run.poses, args),
                  "ms_per_scan": float(np.mean(run.ms_per_scan)), "ms_per_scan_p95": float(np.percentile(run.ms_per_scan, 95)),
                  "fallbacks": run.fallbacks,
                  "inlier_fraction_median": float(np.nanmedian(run.inlier_fraction)) if np.any(np.isfinite(run.inlier_fraction)) else None,
                  "path_m": float(np.sum(np.linalg.norm(np.diff(run.poses[:, :3, 3], axis=0), axis=1))),
                  "run_s": run_s, "config": dataclasses.asdict(cfg) if cfg is not None else None}
        if not args.no_png:
            from dsg_jit_ros.tools.consistency import plot_map

            os.makedirs(args.png_dir, exist_ok=True)
            png = os.path.join(args.png_dir, f"baseline_{dataset}_{method}{args.tag}.png")
            plot_map(png, clouds, run.poses, stamps, title=f"{dataset} {method}: median {record['consistency_median_m']:.3f} m, "
                     f"{100 * record['within_5cm']:.1f} % within 5 cm", point_size=0.3, dpi=110)
            record["png"] = png
        record = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in record.items()}
        print(json.dumps(record, default=float), flush=True)  # NaN (no revisit yet) -> null
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
