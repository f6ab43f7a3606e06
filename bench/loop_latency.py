"""Window latency with the loop thread running (issue 8 target: keyframe p95 up by <= 10 %).

The ring corridor of ``test/test_loop_closure.py`` (``tools.ring_world``: a bare north
corridor where the front end drifts, 1.3 laps) replayed through ``SlamPipeline`` in the
node's mode (``background_loops=True``: candidates, verification and the global solve in
a thread of their own) with the shipped planar-laser parameters, loop closure on and
off, in the same process.  Latency = wall time from taking a cloud to a keyframe's
update (what the node spends before publishing), in ms; as in the node, the covariance
and the map's upkeep (a loop closure's re-base, the tracking horizon) come after.  Prints one JSON line: p50 /
p95 / max for each setting, their ratio (on / off) and the loops closed.  ``--rate 1``
(default) feeds the scans at the log's pace, as a robot does (the loop thread works in
the gaps between keyframes: ``mapping.loop_worker``); ``--rate 0`` as fast as the
pipeline runs, so the loop thread competes for the cores with every keyframe: an upper
bound.  At rate 1 the run takes twice the log's duration (~280 s).  ``--log NAME`` replays
a real log of ``../shared/data/real/`` instead of the ring (``--max-scans`` of it; at rate
1 mit-csail takes ~15 min, so ``--rate 2`` halves it).

    .venv/bin/python bench/loop_latency.py [--laps 1.3] [--rate 1.0]
    .venv/bin/python bench/loop_latency.py --log mit-csail --rate 2
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
import dsg_jit_ros  # noqa: E402,F401  (float64)
from dsg_jit_ros.config import load_pipeline_config  # noqa: E402
from dsg_jit_ros.mapping.pipeline import SlamPipeline  # noqa: E402
from dsg_jit_ros.tools.planar_laser import PlanarLaserConfig  # noqa: E402
from dsg_jit_ros.tools.ring_world import RingConfig, simulate_ring  # noqa: E402
from real_logs import REAL_LOGS  # noqa: E402


def keyframe_latency(data, loops: bool, rate: float = 0.0) -> tuple[np.ndarray, int]:
    """(ms of each keyframe-making ``add_cloud``, loops closed) for one replay; ``rate`` > 0
    paces the scans at ``rate`` times the log's speed (0: no pacing)."""
    stamps, odom, scans = data
    cfg = load_pipeline_config(REPO / "config" / "planar_laser.yaml", overrides=[f"loop.enabled={str(loops).lower()}"])
    pipe = SlamPipeline(cfg, background_loops=True)
    pipe.warm_up()
    if loops:
        pipe.graph_ready.wait(600)  # the graph's solve compiles after the window's (as in the node)
    ms = []
    wall0 = time.perf_counter()
    for t, o, c in zip(stamps, odom, scans):
        if rate > 0:
            time.sleep(max(0.0, wall0 + (t - stamps[0]) / rate - time.perf_counter()))
        pipe.add_odometry(t, o)
        start = time.perf_counter()
        pipe.ingest_cloud(t, c)  # as the node does: solve and publish, then the upkeep
        updates = pipe.process_ready(covariance=False, maintenance=False)
        if updates:
            ms.append(1000.0 * (time.perf_counter() - start))
            pipe.refresh_covariance()
            pipe.maintain_map()
            pipe.prepare_registration()
    pipe.finish()
    closed = int(pipe.loop_counts()["loop_closures"])
    pipe.close()
    return np.array(ms), closed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--laps", type=float, default=1.3)
    parser.add_argument("--rate", type=float, default=1.0, help="replay speed (x real time); 0: unpaced")
    parser.add_argument("--log", choices=sorted(REAL_LOGS), default=None, help="a real log instead of the ring")
    parser.add_argument("--max-scans", type=int, default=None, help="only the first N scans of --log")
    args = parser.parse_args(argv)
    if args.log is None:
        ring = RingConfig(length=40.0, width=14.0, alcove_spacing=10.0, pillars=3, bare_north=True, laps=args.laps)
        stamps, _, odom, scans = simulate_ring(ring, laser=PlanarLaserConfig(max_range=10.0))
        row = {"bench": "loop_latency", "laps": args.laps, "scans": len(stamps), "rate": args.rate}
    else:
        from dsg_jit_ros.tools.log_reader import read_laser_log

        log = read_laser_log(REAL_LOGS[args.log], max_scans=args.max_scans)
        stamps, odom, scans = log.cloud_stamps, log.odometry_at_clouds(), log.clouds
        row = {"bench": "loop_latency", "log": args.log, "scans": len(stamps), "rate": args.rate}
    for loops in (False, True):
        ms, closed = keyframe_latency((stamps, odom, scans), loops, args.rate)
        key = "loops_on" if loops else "loops_off"
        row[key] = {"keyframes": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 1),
                    "p95_ms": round(float(np.percentile(ms, 95)), 1), "max_ms": round(float(ms.max()), 1),
                    "loops_closed": closed}
    row["p95_ratio_on_off"] = round(row["loops_on"]["p95_ms"] / row["loops_off"]["p95_ms"], 2)
    row["p50_ratio_on_off"] = round(row["loops_on"]["p50_ms"] / row["loops_off"]["p50_ms"], 2)
    print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
