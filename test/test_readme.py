"""The README's parameter and launch-argument tables say what the code declares."""

import pathlib
import re

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")
pytest.importorskip("rtc_ros.msg", reason="rtc_ros messages are not built (run scripts/setup.sh)")

from rtc_ros.nodes.parameters import DECLARATIONS  # noqa: E402
from rtc_ros.nodes.sim_node import SIM_DECLARATIONS  # noqa: E402

README = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()


def _section(heading: str) -> str:
    """The text under ``heading`` up to the next heading."""
    start = README.index(f"\n{heading}\n") + len(heading) + 2
    following = re.search(r"\n#{1,4} ", README[start:])
    return README[start : start + following.start()] if following else README[start:]


def _table(heading: str) -> list[tuple[list[str], list[str]]]:
    """The rows of the first table under ``heading``: (the names in
    the first cell, the other cells).
    """
    rows = []
    for line in _section(heading).splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip("|").split(" | ")]
            rows.append((re.findall(r"`([^`]+)`", cells[0]), cells[1:]))
    return rows


def test_the_parameter_table_lists_every_declared_parameter_in_order_with_its_mutability():
    rows = _table("### Parameters")
    names = [name for row_names, _ in rows for name in row_names]
    assert names == list(DECLARATIONS)
    for row_names, (mutability, _) in rows:
        for name in row_names:
            expected = "read-only" if DECLARATIONS[name][1].read_only else "tunable"
            assert mutability == expected, name


def test_the_simulators_parameters_are_all_named():
    text = _section("### Parameters").split("The simulator `bimanual_sim` takes")[1]
    assert re.findall(r"`([a-z_]+)`", text.split("read-only")[0]) == list(SIM_DECLARATIONS)


def test_the_launch_argument_table_lists_every_argument_in_order_with_its_default():
    pytest.importorskip(
        "launch_ros",
        reason="launch_ros is not installed (it comes with ROS 2, not scripts/setup.sh)",
    )
    from launch.utilities import perform_substitutions

    from launch import LaunchContext
    from rtc_ros.launching import declare_robot_arguments

    rows = _table("### Launch arguments")
    arguments = declare_robot_arguments()
    assert [names[0] for names, _ in rows] == [argument.name for argument in arguments]
    for (_, (default_cell, _)), argument in zip(rows, arguments, strict=True):
        default = perform_substitutions(LaunchContext(), argument.default_value)
        if argument.name == "config":
            assert f"`config/{pathlib.Path(default).name}`" in default_cell
        elif default == "":
            assert default_cell.startswith("empty"), argument.name
        else:
            assert default_cell == f"`{default}`", argument.name
