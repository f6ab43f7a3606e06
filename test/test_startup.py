"""Start-up: iteration caps and tolerances are data of the compiled solve (changing them
never recompiles, and they still act), the node's warm-up log line says how many
programs it built, and the node does not import what only loop closure or the
tools need."""

import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from dsg_jit_ros.optimization.compile_count import compile_count
from dsg_jit_ros.optimization.solvers import RUNTIME_FIELDS, LMConfig, solve, split_config
from ros_helpers import SMALL_WINDOW
from test_solvers import chain_model


def test_tolerances_and_iteration_caps_do_not_recompile():
    wm, _, _ = chain_model(13, 0.3)  # a size no other test solves: the first solve compiles
    x0, _ = wm.pack_state()
    before = compile_count("levenberg_marquardt")
    ref = solve(wm.fg, x0, cfg=LMConfig())
    assert compile_count("levenberg_marquardt") == before + 1
    assert bool(ref.converged) and int(ref.iterations) > 3
    capped = solve(wm.fg, x0, cfg=LMConfig(max_iters=2))
    call_cap = solve(wm.fg, x0, cfg=LMConfig(), max_iters=3)
    loose = solve(wm.fg, x0, cfg=LMConfig(rel_tol=0.5, abs_tol=1e-3, step_tol=1e-3))
    damped = solve(wm.fg, x0, cfg=LMConfig(lambda_init=1e3, lambda_factor=3.0, lambda_max=1e20))
    assert compile_count("levenberg_marquardt") == before + 1, "a runtime field recompiled the solve"
    # ... and each one acted
    assert int(capped.iterations) == 2 and not bool(capped.converged) and float(capped.cost) > float(ref.cost)
    assert int(call_cap.iterations) == 3
    assert bool(loose.converged) and int(loose.iterations) < int(ref.iterations)
    assert bool(damped.converged) and int(damped.iterations) > int(ref.iterations)
    assert float(damped.cost) == pytest.approx(float(ref.cost), rel=1e-8)
    # a field that chooses the program does compile a new one
    solve(wm.fg, x0, cfg=LMConfig(linear_solver="pcg", pcg_tol=1e-12))
    assert compile_count("levenberg_marquardt") == before + 2
    solve(wm.fg, x0, cfg=LMConfig(linear_solver="pcg", pcg_tol=1e-6, pcg_max_iters=50))
    assert compile_count("levenberg_marquardt") == before + 2


def test_split_config_keys_the_program_by_its_static_fields_only():
    a, ra = split_config(LMConfig(rel_tol=1e-3, max_iters=7, linear_solver="schur"), max_iters=4)
    b, rb = split_config(LMConfig(rel_tol=1e-9, max_iters=70, linear_solver="schur"))
    assert a == b and hash(a) == hash(b) and a.linear_solver == "schur"
    assert set(ra) == set(RUNTIME_FIELDS) and int(ra["max_iters"]) == 4 and int(rb["max_iters"]) == 70
    assert ra["max_iters"].dtype == np.int32 and ra["rel_tol"].dtype == np.float64 and float(ra["rel_tol"]) == 1e-3


def _node_cmd(*extra):
    cmd = [sys.executable, "-m", "dsg_jit_ros.ros.slam_node", "--ros-args",
           "--params-file", str(REPO / "config" / "params.yaml")]
    for k, v in SMALL_WINDOW.items():
        cmd += ["-p", f"{k}:={v}"]
    return cmd + list(extra)


def test_warm_up_log_line_counts_the_programs_built():
    """The window's solve and the covariance (from its factor): two programs before the node is active
    (loop closure compiles its solve later, in the background)."""
    proc = subprocess.Popen(_node_cmd("-p", "loop.enabled:=false"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "active: listening" in line:
                break
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    text = "".join(lines)
    match = re.search(r"warm-up: (\d+) programs built \(([^)]*)\) in [\d.]+ s", text)
    assert match, text
    assert int(match.group(1)) == 2, text
    assert match.group(2).split(", ") == ["covariance_from_factor", "levenberg_marquardt"]  # sorted


def test_the_node_does_not_import_what_it_does_not_need_at_start():
    code = ("import sys, dsg_jit_ros.ros.slam_node; "
            "print(' '.join(m for m in ('scipy.signal', 'scipy.ndimage', 'matplotlib', 'gtsam') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == ""
