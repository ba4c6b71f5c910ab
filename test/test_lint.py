"""ruff (lint and format) over the package, tests and launch files, and mypy over the core and
the runtime, all configured in pyproject.toml.

On a robot with ament, ament_flake8 and ament_pep257 check the same line length (99) and
docstring conventions; ruff and mypy come from requirements/base.txt (scripts/setup.sh).
"""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Every Python file of the repository, as the pre-commit hooks see them: the package, tests,
# launch files, setup.py and the executables colcon installs (Python without a .py suffix).
TARGETS = [
    str(path.relative_to(REPO))
    for path in [REPO / "rtc_ros", REPO / "test", REPO / "launch", REPO / "setup.py"]
    + sorted((REPO / "scripts" / "colcon").glob("*"))
    if path.exists()
]


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *command], cwd=REPO, capture_output=True, text=True
    )


def test_ruff_finds_no_problems_in_package_tests_and_launch_files():
    pytest.importorskip("ruff", reason="ruff is not installed (scripts/setup.sh installs it)")
    result = _run("ruff", "check", *TARGETS)
    assert result.returncode == 0, "ruff found problems:\n" + result.stdout + result.stderr


def test_ruff_format_leaves_every_file_as_it_is():
    pytest.importorskip("ruff", reason="ruff is not installed (scripts/setup.sh installs it)")
    result = _run("ruff", "format", "--check", *TARGETS)
    assert result.returncode == 0, "run `ruff format`:\n" + result.stdout + result.stderr


def test_mypy_finds_no_type_errors_in_the_core_and_the_runtime():
    pytest.importorskip("mypy", reason="mypy is not installed (scripts/setup.sh installs it)")
    result = _run("mypy")
    assert result.returncode == 0, "mypy found problems:\n" + result.stdout + result.stderr
