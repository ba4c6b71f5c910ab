"""The colcon path: ``colcon build`` of this package from CMakeLists.txt against the ROS 2 prefix
Python runs in (the venv's ament/rosidl wheels, or a ROS install), then a node run from
install/.

Skips where colcon is not installed (``pip install colcon-core colcon-ros colcon-cmake``, or a
ROS 2 install's python3-colcon-common-extensions). About a minute on 2 cores.
"""

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

COLCON = shutil.which("colcon") or (
    str(pathlib.Path(sys.executable).parent / "colcon")
    if (pathlib.Path(sys.executable).parent / "colcon").exists()
    else None
)
REPO = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(COLCON is None, reason="colcon is not installed")


def _package_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout: cannot list the package's files")
    return [f for f in listed.stdout.splitlines() if (REPO / f).is_file()]


def _installed_env(workspace: pathlib.Path) -> dict[str, str]:
    """The environment install/setup.sh gives, as a shell that sources it prints it."""
    printed = subprocess.run(
        ["sh", "-c", f". {workspace}/install/setup.sh && env -0"],
        capture_output=True,
        check=True,
    )
    return dict(
        entry.split("=", 1) for entry in printed.stdout.decode().split("\0") if "=" in entry
    )


def test_colcon_builds_the_package_and_a_node_runs_from_install(tmp_path):
    workspace = tmp_path / "ws"
    source = workspace / "src" / "rtc_ros"
    for name in _package_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    prefix = os.environ.get("AMENT_PREFIX_PATH") or sys.prefix
    env = dict(
        os.environ,
        AMENT_PREFIX_PATH=prefix,
        CMAKE_PREFIX_PATH=prefix.replace(os.pathsep, ";"),
        PATH=f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    )
    built = subprocess.run(
        [
            COLCON,
            "build",
            "--cmake-args",
            f"-DPython3_EXECUTABLE={sys.executable}",
        ],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-2000:]
    install = workspace / "install" / "rtc_ros"
    for node in ("rtc_node", "controller_node", "inference_node", "sim_node", "recorder_node"):
        assert os.access(install / "lib" / "rtc_ros" / node, os.X_OK), node
    assert (install / "share" / "rtc_ros" / "config" / "aloha_command_groups.yaml").is_file()
    assert (install / "share" / "rtc_ros" / "launch" / "robot.launch.py").is_file()

    run_env = dict(_installed_env(workspace), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    run_env["ROS_DOMAIN_ID"] = str(100 + os.getpid() % 100)
    # The executables' "#!/usr/bin/env python3" is this Python (a robot's is ROS's own).
    run_env["PATH"] = f"{pathlib.Path(sys.executable).parent}{os.pathsep}{run_env['PATH']}"
    # The messages and the Python package come from install/, not from this checkout.
    imported = subprocess.run(
        [
            sys.executable,
            "-P",
            "-c",
            "import rtc_ros.nodes.controller_node as n, rtc_ros.msg as m; "
            "print(n.__file__); print(m.ActionChunk.__module__)",
        ],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert imported.stdout.splitlines()[0].startswith(str(install)), imported.stdout
    node = subprocess.Popen(
        [
            str(install / "lib" / "rtc_ros" / "controller_node"),
            "--ros-args",
            "--params-file",
            str(install / "share" / "rtc_ros" / "config" / "bimanual.yaml"),
        ],
        env=run_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(8.0)  # it starts unconfigured and waits for a supervisor
    alive = node.poll() is None
    node.send_signal(signal.SIGINT)
    output, _ = node.communicate(timeout=30)
    assert alive and node.returncode == 0, output
