"""rtc_ros.launching: the launch files' argument checks and the parameters they set, without
starting launch (the launch tests and test_faults.py run them through ``ros2 launch``).
"""

import pathlib

import pytest
from test_launch_support import skip_without_launch_testing

skip_without_launch_testing()

from rtc_ros.launching import (  # noqa: E402
    ROBOT_ARGUMENTS,
    check_robot_arguments,
    configured_cameras,
    parameter_overrides,
)

CONFIG = pathlib.Path(__file__).resolve().parent.parent / "config" / "bimanual.yaml"


def _values(**changes: str) -> dict[str, str]:
    values = dict.fromkeys(ROBOT_ARGUMENTS, "")
    values.update(
        config=str(CONFIG),
        split="false",
        camera_name="top",
        on_failure="shutdown",
        respawn_delay="2.0",
        autostart="true",
        record="false",
        record_camera="false",
    )
    values.update(changes)
    return values


def test_the_default_arguments_pass_the_checks():
    check_robot_arguments(_values())


def test_empty_arguments_leave_the_config_files_values_and_given_ones_override_them():
    assert parameter_overrides(_values()) == {}
    assert parameter_overrides(_values(device="cuda:1", policy="/p.pt", controller="thread")) == {
        "device": "cuda:1",
        "policy": "/p.pt",
        "controller": "thread",
    }


def test_a_camera_name_the_config_does_not_list_is_refused_naming_the_configured_ones():
    with pytest.raises(ValueError, match=r"camera_name:='wrist' .* \['top'\]"):
        check_robot_arguments(_values(camera_name="wrist"))


def test_camera_names_come_from_any_node_entry_of_the_file_or_the_declared_default(tmp_path):
    per_node = tmp_path / "per_node.yaml"
    per_node.write_text("rtc:\n  ros__parameters:\n    camera_names: [left_wrist, top]\n")
    no_cameras = tmp_path / "no_cameras.yaml"
    no_cameras.write_text("/**:\n  ros__parameters:\n    beta: 2.0\n")
    assert configured_cameras(str(per_node)) == ("left_wrist", "top")
    assert configured_cameras(str(no_cameras)) == ("top",)


@pytest.mark.parametrize("text", ["just a string\n", "a: [unclosed\n"])
def test_a_config_that_is_not_a_parameter_file_is_refused_naming_it(tmp_path, text):
    config = tmp_path / "robot.yaml"
    config.write_text(text)
    with pytest.raises(ValueError, match=f"config:={config} is not a"):
        check_robot_arguments(_values(config=str(config)))


@pytest.mark.parametrize(
    "argument, value",
    [("device", "gpu9"), ("respawn_delay", "-1"), ("respawn_delay", "soon"), ("split", "maybe")],
)
def test_a_bad_value_is_refused_naming_the_argument(argument, value):
    with pytest.raises(ValueError, match=argument):
        check_robot_arguments(_values(**{argument: value}))
