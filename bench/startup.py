"""Node start-up: process start -> active (subscribed), cold and warm compile cache.

Starts ``slam_node`` (``--params-file`` as given, default the shipped
config/params.yaml) three times: with the compile cache off, with an empty cache
directory (cold: compiles and fills it) and again with that directory (warm: loads
the compiled solver).  The time is from ``Popen`` to the node's "active: listening"
log line.  Prints JSON with the three times and the warm/off ratio (issue 8 target:
warm <= 5 s, cold <= 10 s), and the number of programs the warm-up built (from its
log line); ``prefix_compiled_s``: from ``Popen`` to the end of the window's prefix
solve's compile, which the node runs in the background once active.  ``--repeats N``: N rounds (a fresh cache directory each), medians and
every value (the machine is shared: compare runs made in the same session).

    .venv/bin/python bench/startup.py [--params-file config/planar_laser.yaml] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start_to_active(params_file: Path, cache: str, timeout: float = 300.0) -> tuple[float, int | None, float | None]:
    """Seconds from Popen to "active: listening", the programs the warm-up built, and the
    seconds from Popen to the end of the prefix solve's background compile (None: none)."""
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=str(50 + os.getpid() % 40),
               ROS_LOG_DIR=tempfile.mkdtemp(prefix="dsg_jit_ros_startup_log_"))
    cmd = [sys.executable, "-m", "dsg_jit_ros.ros.slam_node", "--ros-args", "--params-file", str(params_file),
           "-p", f"compile_cache:={cache or chr(39) * 2}"]  # '' (YAML empty string): cache off
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    programs = None
    try:
        for line in proc.stdout:
            found = re.search(r"warm-up: (\d+) programs built", line)
            if found:
                programs = int(found.group(1))
            if "active: listening" in line:
                active = time.perf_counter() - start
                return active, programs, _prefix_ready(proc, start, timeout)
            if time.perf_counter() - start > timeout:
                break
        raise RuntimeError(f"the node did not become active (exit {proc.poll()})")
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _prefix_ready(proc: subprocess.Popen, start: float, timeout: float) -> float | None:
    """After "active": seconds from Popen to "... used prefix compiled" when the node said
    it compiles the prefix solve in the background, else None."""
    waiting = False
    for line in proc.stdout:
        if "compiling in the background" in line:
            waiting = "used prefix" in line
            if not waiting:
                return None
        elif "used prefix" in line and ("compiled in" in line or "failed" in line):
            if "failed" in line:
                raise RuntimeError(line.strip())
            return time.perf_counter() - start
        elif not waiting or time.perf_counter() - start > timeout:
            return None
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params-file", type=Path, default=REPO / "config" / "params.yaml")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    runs = {"cache_off_s": [], "cold_s": [], "warm_s": []}
    prefix = {"cache_off_s": [], "cold_s": [], "warm_s": []}  # start -> the prefix solve compiled (background)
    programs = None
    for _ in range(args.repeats):
        cache = tempfile.mkdtemp(prefix="dsg_jit_ros_startup_cache_")
        for key, directory in (("cache_off_s", ""), ("cold_s", cache), ("warm_s", cache)):
            seconds, programs, ready = start_to_active(args.params_file, directory)
            runs[key].append(round(seconds, 2))
            prefix[key].append(None if ready is None else round(ready, 2))
    med = {k: round(statistics.median(v), 2) for k, v in runs.items()}
    print(json.dumps({"params_file": str(args.params_file), **med, "warm_over_off": round(med["warm_s"] / med["cache_off_s"], 3),
                      "programs": programs, "runs": runs, "prefix_compiled_s": prefix}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
