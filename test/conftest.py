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


# --- no test may leave a pipeline's or node's threads running --------------------
# A loop-closure or solver thread left behind keeps its pipeline alive after its owner
# is gone: closing what one opened is behaviour under test everywhere.  Counted, not
# compared by identity: a module-scoped node whose pipeline resets replaces its thread.
_OWNED_THREADS = ("dsg_jit_loops", "dsg_jit_solver")


def _owned_threads() -> int:
    import threading

    return sum(t.name in _OWNED_THREADS and t.is_alive() for t in threading.enumerate())


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _threads_closed():
    before = _owned_threads()
    yield
    after = _owned_threads()
    assert after <= before, f"{after - before} of the package's threads left running ({_OWNED_THREADS})"
