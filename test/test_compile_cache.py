"""The opt-in persistent compilation cache: a second process reuses the first's
executable (the cache directory gains no new entries) and gets the same result."""

import subprocess
import sys

from conftest import POSEGRAPH, REPO

SCRIPT = f"""
import sys
from dsg_jit_ros.optimization.compile_cache import enable_persistent_cache
enable_persistent_cache(sys.argv[1])
from dsg_jit_ros.io.g2o import read_g2o
from dsg_jit_ros.slam.pose_graph import world_model_from_pose_graph
from dsg_jit_ros.optimization.solvers import solve, LMConfig
wm, _ = world_model_from_pose_graph(read_g2o({str(POSEGRAPH / 'tinyGrid3D.g2o')!r}))
x0, _ = wm.pack_state()
print(repr(float(solve(wm.fg, x0, cfg=LMConfig(max_iters=9)).cost)))
"""


def run(cache_dir):
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(cache_dir)], capture_output=True, text=True,
                         cwd=REPO, timeout=300, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_second_process_reuses_cached_executables(tmp_path):
    first = run(tmp_path)
    entries = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert entries, "no executable was cached"
    second = run(tmp_path)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == entries
    assert first == second and abs(float(first) - 9.3139094335) < 1e-6
