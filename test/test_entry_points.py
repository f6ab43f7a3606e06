"""The console entry points the team relies on are installed next to the
interpreter and each answers --help with exit code 0."""

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("name, expect", [
    ("slam_node", "--params-file"), ("bag_player", "--rate"), ("make_demo_bag", "--out"),
    ("dsg_jit_ros_demo", "--bag"), ("dsg_jit_ros_eval", "--align"),
])
def test_console_entry_point_help(name, expect):
    exe = BIN / name
    assert exe.exists(), f"{name} is not installed in {BIN} (pip install -e .)"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert expect in out.stdout
