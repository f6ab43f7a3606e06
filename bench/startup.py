"""Node start-up: process start -> active (subscribed), cold and warm compile cache.

Starts ``slam_node`` (``--params-file`` as given, default the shipped
config/params.yaml) three times: with the compile cache off, with an empty cache
directory (cold: compiles and fills it) and again with that directory (warm: loads
the compiled solver).  The time is from ``Popen`` to the node's "active: listening"
log line.  Prints JSON with the three times and the warm/off ratio (issue 8 target:
warm <= 5 s).

    .venv/bin/python bench/startup.py [--params-file config/planar_laser.yaml]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start_to_active(params_file: Path, cache: str, timeout: float = 300.0) -> float:
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=str(50 + os.getpid() % 40),
               ROS_LOG_DIR=tempfile.mkdtemp(prefix="dsg_jit_ros_startup_log_"))
    cmd = [sys.executable, "-m", "dsg_jit_ros.ros.slam_node", "--ros-args", "--params-file", str(params_file),
           "-p", f"compile_cache:={cache or chr(39) * 2}"]  # '' (YAML empty string): cache off
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        for line in proc.stdout:
            if "active: listening" in line:
                return time.perf_counter() - start
            if time.perf_counter() - start > timeout:
                break
        raise RuntimeError(f"the node did not become active (exit {proc.poll()})")
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params-file", type=Path, default=REPO / "config" / "params.yaml")
    args = parser.parse_args(argv)
    cache = tempfile.mkdtemp(prefix="dsg_jit_ros_startup_cache_")
    off = start_to_active(args.params_file, "")
    cold = start_to_active(args.params_file, cache)
    warm = start_to_active(args.params_file, cache)
    print(json.dumps({"params_file": str(args.params_file), "cache_off_s": round(off, 2), "cold_s": round(cold, 2),
                      "warm_s": round(warm, 2), "warm_over_off": round(warm / off, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
