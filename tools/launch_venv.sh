#!/usr/bin/env bash
# Build a side venv in which the launch files and the launch test run without a ROS
# distribution: ROS 2 Kilted wheels from PyPI + the pure-Python upstream sources of
# launch / launch_ros / launch_testing / launch_testing_ros / rosidl_runtime_py, which
# have no wheel.  This script fetches no source itself: pass checkouts of
#   ros2/launch            (holds launch, launch_xml, launch_yaml, launch_testing)
#   ros2/launch_ros        (holds launch_ros, launch_testing_ros)
#   ros2/rcl_interfaces    (holds composition_interfaces: launch_ros imports it, no wheel)
#   ros2/rosidl_runtime_py (optional)
# Never `pip install launch`: PyPI's `launch` is an unrelated package.
#
# The side venv is separate from the project's .venv on purpose: the launch_testing
# pytest plugin needs pytest < 9, the project's suite runs pytest 9.
#
# Usage:
#   tools/launch_venv.sh --venv /work/launch-venv --launch SRC/launch \
#       --launch-ros SRC/launch_ros --rcl-interfaces SRC/rcl_interfaces \
#       [--rosidl-runtime-py SRC/rosidl_runtime_py]
# Then (see README, "Launch files"):
#   /work/launch-venv/bin/launch_test test/test_launch_slam.py
#
# What it makes the package look like to ament (as colcon would install it):
#   $VENV/share/ament_index/resource_index/packages/dsg_jit_ros   (marker)
#   $VENV/share/dsg_jit_ros/{package.xml,launch,config,msg}        (symlinks to the checkout)
#   $VENV/lib/dsg_jit_ros/<console script>                         (symlinks to $VENV/bin)
# and a .pth file that defaults AMENT_PREFIX_PATH to the venv, so
# get_package_share_directory('dsg_jit_ros') and launch_ros' Node(package=...,
# executable=...) resolve in every process the venv's python runs.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
VENV=""
LAUNCH_SRC=""
LAUNCH_ROS_SRC=""
RCL_INTERFACES_SRC=""
ROSIDL_RUNTIME_PY_SRC=""
PYTHON="${PYTHON:-python3}"

usage() { sed -n '2,25p' "$0"; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) VENV="$2"; shift 2 ;;
    --launch) LAUNCH_SRC="$2"; shift 2 ;;
    --launch-ros) LAUNCH_ROS_SRC="$2"; shift 2 ;;
    --rcl-interfaces) RCL_INTERFACES_SRC="$2"; shift 2 ;;
    --rosidl-runtime-py) ROSIDL_RUNTIME_PY_SRC="$2"; shift 2 ;;
    -h|--help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
done
[ -n "$VENV" ] && [ -n "$LAUNCH_SRC" ] && [ -n "$LAUNCH_ROS_SRC" ] && [ -n "$RCL_INTERFACES_SRC" ] || usage
for d in "$LAUNCH_SRC/launch" "$LAUNCH_SRC/launch_testing" "$LAUNCH_ROS_SRC/launch_ros" \
         "$LAUNCH_ROS_SRC/launch_testing_ros" "$RCL_INTERFACES_SRC/composition_interfaces"; do
  [ -d "$d" ] || { echo "missing source directory: $d" >&2; exit 1; }
done
case "$VENV" in "$REPO"|"$REPO"/*) echo "put the side venv outside the repository" >&2; exit 1 ;; esac
VENV="$(mkdir -p "$VENV" && cd "$VENV" && pwd)"

step() { echo "==> $*"; }
trap 'echo "launch_venv.sh: failed at line $LINENO" >&2' ERR

step "venv $VENV"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --quiet --disable-pip-version-check)

step "project requirements, ROS 2 wheels, launch's PyPI dependencies (pytest < 9 for launch_testing's plugin)"
"${PIP[@]}" -r "$REPO/requirements.txt" -r "$REPO/requirements-ros.txt" \
  'pytest<9' osrf-pycommon lark pyyaml packaging setuptools wheel \
  ros-ament-index-python ros-lifecycle-msgs
# gtsam as the Makefile installs it: launch_testing's pytest plugin imports every module of
# test/ while collecting, so `pytest test/test_launch_slam.py` needs all of them importable.
"${PIP[@]}" --no-deps "$(grep -o 'gtsam==[0-9.]*' "$REPO/Makefile" | head -n 1 || echo gtsam)"

# The node's own interfaces (dsg_jit_ros_msgs, tf2_msgs): the repo's recipe, into this venv.
# It also installs the build-only wheels (requirements-build.txt) used just below.
step "the node's interfaces (interfaces/build.sh)"
DSG_INTERFACES_BUILD_DIR="$VENV/build/interfaces" DSG_INTERFACES_JOBS="${JOBS:-1}" \
  bash "$REPO/interfaces/build.sh" "$VENV"

# composition_interfaces, built like interfaces/build.sh builds ours (same CMake fix-up of
# the wheels' manylinux include dirs).
step "composition_interfaces (launch_ros.actions imports it; no wheel)"
if (cd / && "$PY" -c "import composition_interfaces.srv") 2>/dev/null; then
  echo "    already installed"
else
  BLD="$VENV/build/composition_interfaces"
  rm -rf "$BLD" && mkdir -p "$BLD"
  if ! (
    export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
    cmake -S "$RCL_INTERFACES_SRC/composition_interfaces" -B "$BLD" -DCMAKE_BUILD_TYPE=Release \
      -DBUILD_TESTING=OFF -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$PY" \
      -DCMAKE_PROJECT_INCLUDE="$REPO/interfaces/cmake/wheel_python_paths.cmake" &&
    cmake --build "$BLD" --parallel "${JOBS:-1}" &&
    cmake --install "$BLD"
  ) > "$BLD/build.log" 2>&1; then
    tail -n 30 "$BLD/build.log" >&2; echo "composition_interfaces: build failed ($BLD/build.log)" >&2; exit 1
  fi
  (cd / && "$PY" -c "import composition_interfaces.srv") && echo "    built"
fi

step "launch, launch_xml, launch_yaml, launch_testing, launch_ros, launch_testing_ros (sources, --no-deps)"
SRCS=("$LAUNCH_SRC/launch" "$LAUNCH_SRC/launch_xml" "$LAUNCH_SRC/launch_yaml" "$LAUNCH_SRC/launch_testing"
      "$LAUNCH_ROS_SRC/launch_ros" "$LAUNCH_ROS_SRC/launch_testing_ros")
[ -n "$ROSIDL_RUNTIME_PY_SRC" ] && SRCS+=("$ROSIDL_RUNTIME_PY_SRC")
"${PIP[@]}" --no-deps --no-build-isolation "${SRCS[@]}"

step "dsg_jit_ros (editable) and its ament index entries"
"${PIP[@]}" --no-deps --no-build-isolation -e "$REPO"
SHARE="$VENV/share/dsg_jit_ros"
mkdir -p "$VENV/share/ament_index/resource_index/packages" "$SHARE" "$VENV/lib/dsg_jit_ros"
: > "$VENV/share/ament_index/resource_index/packages/dsg_jit_ros"
for item in package.xml launch config msg; do
  rm -rf "${SHARE:?}/$item"
  ln -s "$REPO/$item" "$SHARE/$item"
done
# launch_ros looks for executables in <prefix>/lib/<package>/ (ament_python's layout);
# pip puts console scripts in <venv>/bin.
"$PY" - "$VENV" <<'EOF'
import os, sys
from importlib.metadata import distribution
venv = sys.argv[1]
libexec = os.path.join(venv, "lib", "dsg_jit_ros")
for ep in distribution("dsg_jit_ros").entry_points:
    if ep.group != "console_scripts":
        continue
    target, link = os.path.join(venv, "bin", ep.name), os.path.join(libexec, ep.name)
    if os.path.exists(target):
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(target, link)
        print(f"    lib/dsg_jit_ros/{ep.name} -> bin/{ep.name}")
EOF
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "import os, sys; os.environ.setdefault('AMENT_PREFIX_PATH', sys.prefix)" > "$SITE/zz_ament_prefix_path.pth"

step "check"
env -u AMENT_PREFIX_PATH "$PY" - <<'EOF'
from ament_index_python.packages import get_package_share_directory
import launch, launch_ros, launch_testing, launch_testing_ros, composition_interfaces  # noqa: F401
import pytest
print("    share:", get_package_share_directory("dsg_jit_ros"), "| pytest", pytest.__version__)
EOF
echo "done: $VENV/bin/launch_test $REPO/test/test_launch_slam.py"
