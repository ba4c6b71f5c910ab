"""flake8 over the package, tests and launch files, configured by setup.cfg [flake8].

Runs flake8 directly, so it needs no ament_flake8 (not on PyPI); on a robot, ament_flake8
applies the same checks.
"""
from pathlib import Path
import subprocess
import sys

import pytest

pytest.importorskip('flake8', reason='flake8 is not installed (scripts/setup.sh installs it)')

REPO = Path(__file__).resolve().parents[1]


def test_flake8_finds_no_problems_in_package_tests_and_launch_files():
    targets = [name for name in ('rtc_ros', 'test', 'launch') if (REPO / name).exists()]
    result = subprocess.run(
        [sys.executable, '-m', 'flake8', *targets],
        cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, 'flake8 found problems:\n' + result.stdout + result.stderr
