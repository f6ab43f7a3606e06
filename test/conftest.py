"""Shared test set-up: float64 JAX via the package import, repo paths."""

import os
import tempfile
from pathlib import Path

import dsg_jit_ros  # noqa: F401  (enables float64)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
POSEGRAPH = SHARED / "data" / "posegraph"

# --- ROS 2 test environment (bag player / ROS tests; see ../shared/ROS_ENV.md) ---
# Set at import, before any test imports rclpy, and inherited by subprocesses:
# discovery stays on loopback, each pytest run gets its own DDS domain (1..100,
# from the pid, so parallel runs do not see each other) and rclpy logs to a temp dir.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="dsg_jit_ros_test_ros_log_"))
# nodes started by tests keep their compile cache (compile_cache: auto) out of the user's home
os.environ.setdefault("DSG_JIT_ROS_CACHE", tempfile.mkdtemp(prefix="dsg_jit_ros_test_xla_"))
