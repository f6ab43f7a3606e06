"""Per-keyframe latency on a real log with the shipped planar-laser parameters, no ROS.

``bench/node_latency.py`` measures a synthetic 3D world; this replays a real 2D laser log of
``../shared/data/real/`` (the robots people run this on) through ``SlamPipeline`` in bag
order and times each keyframe (``SlamPipeline._keyframe``: registration, window solve and
upkeep, what the node spends before publishing), with ``node_latency``'s per-phase
breakdown.  Loop closure is off by default (``--set loop.enabled=true`` runs it inline,
inside the keyframes, unlike the node's thread: ``bench/loop_latency.py --log`` measures
that).  Prints one JSON line: p50 / p95 / max (ms), the breakdown per keyframe and the
slowest keyframes' largest phases.

    .venv/bin/python bench/real_latency.py mit-csail [--max-scans 1200] [--set NAME=VALUE ...]
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
from dsg_jit_ros.config import load_pipeline_config  # noqa: E402
from dsg_jit_ros.mapping.pipeline import SlamPipeline  # noqa: E402
from dsg_jit_ros.tools.log_reader import read_laser_log  # noqa: E402
from node_latency import install_profiler  # noqa: E402
from real_logs import REAL_LOGS  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log", choices=sorted(REAL_LOGS))
    parser.add_argument("--max-scans", type=int, default=None, help="only the first N scans")
    parser.add_argument("--set", nargs="*", default=["loop.enabled=false"], metavar="NAME=VALUE",
                        help="overrides of config/planar_laser.yaml (default: loop.enabled=false)")
    args = parser.parse_args(argv)
    log = read_laser_log(REAL_LOGS[args.log], max_scans=args.max_scans)
    cfg = load_pipeline_config(REPO / "config" / "planar_laser.yaml", overrides=args.set)
    prof = install_profiler()
    pipe = SlamPipeline(cfg)
    pipe.warm_up()
    keyframe, ms, phases = pipe._keyframe, [], []

    def timed(*a, **kw):
        before = dict(prof.ms)
        start = time.perf_counter()
        out = keyframe(*a, **kw)
        ms.append(1e3 * (time.perf_counter() - start))
        phases.append({k: v - before.get(k, 0.0) for k, v in prof.ms.items()})
        if hasattr(pipe, "prepare_registration"):  # as the node does after publishing (off the latency)
            pipe.prepare_registration()
        return out

    pipe._keyframe = timed
    prof.enabled = True
    log.replay(pipe)
    prof.enabled = False
    lat = np.array(ms)
    slowest = [{"ms": round(float(lat[i]), 1),
                **{k: round(v, 1) for k, v in sorted(phases[i].items(), key=lambda kv: -kv[1])[:3]}}
               for i in np.argsort(lat)[-5:][::-1]]
    print(json.dumps({
        "bench": "real_latency", "log": args.log, "scans": len(log.clouds), "set": args.set,
        "keyframes": len(lat), "compilations_after_warmup": pipe.compilations_after_warmup(),
        "solves_on_prefix": f"{getattr(pipe.window, 'prefix_solves', 0)} of {getattr(pipe.window, 'solves', '?')}",
        "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 1), "p95": round(float(np.percentile(lat, 95)), 1),
                       "max": round(float(lat.max()), 1)},
        "breakdown_ms_per_keyframe": {k: round(v / len(lat), 2) for k, v in sorted(prof.ms.items(),
                                                                                   key=lambda kv: -kv[1])},
        "slowest": slowest}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
