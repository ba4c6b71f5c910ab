#!/usr/bin/env bash
# Sets up .venv in the repository root: ROS 2 Kilted (rclpy from PyPI wheels), torch and the
# rest of requirements/, the messages in msg/ built with CMake into the venv, and rtc_ros.
# Idempotent: pip and the message build are skipped while their inputs are unchanged.
#
#   bash scripts/setup.sh [--torch cpu|cuda]
#
# --torch defaults to cuda where nvidia-smi exists, else cpu (README.md, "torch: cpu or cuda").
set -euo pipefail

usage() { sed -n '6,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

torch=""
while [ $# -gt 0 ]; do
  case "$1" in
    --torch) [ $# -ge 2 ] || { usage >&2; exit 2; }; torch=$2; shift 2 ;;
    --torch=*) torch=${1#--torch=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "setup.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
if [ -z "$torch" ]; then
  if command -v nvidia-smi > /dev/null 2>&1; then torch=cuda; else torch=cpu; fi
fi
case "$torch" in
  cpu | cuda) ;;
  *) echo "setup.sh: --torch must be cpu or cuda, got '$torch'" >&2; exit 2 ;;
esac

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
venv=$root/.venv
py=$venv/bin/python
site=$venv/lib/python3.11/site-packages
state=$venv/.rtc_ros_setup  # stamps, logs and the CMake build directory

log() { echo "[setup.sh] $*"; }
# Runs a command with its output in a log file; on failure shows the end of the log and exits.
run_logged() {
  local log_file=$1
  shift
  if ! "$@" > "$log_file" 2>&1; then
    tail -n 40 "$log_file" >&2
    echo "setup.sh: failed: $* (full log: $log_file)" >&2
    exit 1
  fi
}

for tool in cmake g++ make; do
  if ! command -v "$tool" > /dev/null; then
    echo "setup.sh: $tool not found (needed to build msg/); on Debian 12:" \
      "sudo apt-get install -y cmake g++ make" >&2
    exit 1
  fi
done

if [ ! -x "$py" ]; then
  base_python=${PYTHON:-python3.11}
  if ! "$base_python" -c 'import sys, venv; assert sys.version_info[:2] == (3, 11)' 2> /dev/null; then
    echo "setup.sh: needs Python 3.11 with venv (the ROS wheels are cp311);" \
      "set PYTHON=/path/to/python3.11" >&2
    exit 1
  fi
  log "creating .venv with $("$base_python" --version)"
  "$base_python" -m venv "$venv"
fi
mkdir -p "$state"

# 1. Pinned requirements, skipped while requirements/ and the torch choice are unchanged.
# lerobot itself goes in without its declared dependencies (requirements/lerobot.txt says why).
requirements=(requirements/ros.txt requirements/base.txt "requirements/torch-$torch.txt" requirements/lerobot.txt)
no_deps=requirements/lerobot-no-deps.txt
requirements_hash=$(sha256sum "${requirements[@]}" "$no_deps" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$state/requirements.sha256" 2> /dev/null)" != "$requirements_hash" ]; then
  # `torch==2.13.0` (cpu) is satisfied by an installed CUDA build: remove it when switching.
  if [ -f "$state/torch" ] && [ "$(cat "$state/torch")" != "$torch" ]; then
    run_logged "$state/pip-uninstall-torch.log" "$py" -m pip uninstall -y torch
  fi
  log "installing requirements/ with torch $torch (minutes the first time: torch, its CUDA libraries and lerobot; log: $state/pip.log)"
  pip_args=()
  for file in "${requirements[@]}"; do pip_args+=(-r "$file"); done
  run_logged "$state/pip.log" "$py" -m pip install "${pip_args[@]}"
  run_logged "$state/pip-no-deps.log" "$py" -m pip install --no-deps -r "$no_deps"
  echo "$torch" > "$state/torch"
  echo "$requirements_hash" > "$state/requirements.sha256"
else
  log "requirements unchanged (torch $torch): skipping pip"
fi

# 2. Messages: CMake with RTC_ROS_MSGS_ONLY=ON into the venv, skipped while msg/, the build
# files and the ROS and numpy pins are unchanged.
build=$state/msg-build
msgs_hash=$(sha256sum requirements/ros.txt requirements/base.txt CMakeLists.txt package.xml msg/*.msg \
  | sha256sum | cut -d' ' -f1)
if [ "$(cat "$state/msgs.sha256" 2> /dev/null)" != "$msgs_hash" ] \
  || [ ! -f "$site/rtc_ros/msg/__init__.py" ]; then
  log "building msg/ into .venv (logs: $state/cmake-*.log)"
  if [ -f "$build/install_manifest.txt" ]; then
    # Remove what the last build installed and build from scratch: rosidl would otherwise
    # keep installing the generated code of a message deleted from msg/.
    xargs rm -f < "$build/install_manifest.txt"
  fi
  rm -rf "$build"
  export AMENT_PREFIX_PATH=$venv CMAKE_PREFIX_PATH=$venv  # both needed at build time
  run_logged "$state/cmake-configure.log" cmake -S "$root" -B "$build" \
    -DCMAKE_INSTALL_PREFIX="$venv" -DPython3_EXECUTABLE="$py" -DCMAKE_BUILD_TYPE=Release \
    -DRTC_ROS_MSGS_ONLY=ON -DBUILD_TESTING=OFF
  run_logged "$state/cmake-build.log" cmake --build "$build" -j "$(nproc)"
  run_logged "$state/cmake-install.log" cmake --install "$build"
  # rosidl also installs an rtc_ros egg-info (ament_python_install_package). pip would take it
  # for an older rtc_ros and, uninstalling that, delete all of site-packages/rtc_ros/msg.
  rm -rf "$site"/rtc_ros-*.egg-info
  echo "$msgs_hash" > "$state/msgs.sha256"
else
  log "msg/ unchanged: skipping the message build"
fi

# 3. ament_index/ros2cli need AMENT_PREFIX_PATH; loopback-only discovery by default.
echo "import os, sys; os.environ.setdefault('AMENT_PREFIX_PATH', sys.prefix);" \
  "os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')" > "$site/zz_ros_env.pth"

# 4. rtc_ros itself, every time (a few seconds). setuptools' build/lib keeps modules deleted
# from the source tree, so start it empty.
log "installing rtc_ros (log: $state/pip-rtc_ros.log)"
rm -rf "$root/build/lib"
run_logged "$state/pip-rtc_ros.log" "$py" -m pip install --no-deps --no-build-isolation "$root"

(cd / && "$py" -c 'import rclpy, lerobot.policies.smolvla.modeling_smolvla
from rtc_ros.msg import ActionChunk, ControllerTick, RtcStatus') \
  || { echo "setup.sh: .venv is set up but rclpy, lerobot or rtc_ros.msg does not import" >&2; exit 1; }
log "done: .venv/bin/python has rclpy, torch ($torch), lerobot and rtc_ros"
