"""What robot.launch.py and sim_demo.launch.py share: their arguments, checked before anything
starts, and what launch does when one of their nodes dies.

Every argument is checked before the first node starts (a launch file that started the robot's
simulator and then failed on a mistyped argument would leave it running alone). A node that
exits on its own, which only happens on a failure, either stops the whole launch with a
non-zero exit status (``on_failure:=shutdown``, the default) or is started again
(``on_failure:=respawn``). The RTC nodes are managed nodes: with ``autostart:=true`` (the
default) each configures and then activates itself at start, and one that fails to configure
exits like a node that died; ``autostart:=false`` leaves them unconfigured for a supervisor.
"""

from __future__ import annotations

import enum
import os

import yaml
from launch.actions import DeclareLaunchArgument, EmitEvent
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration

from rtc_ros.nodes.parameters import DECLARATIONS, ControllerPlacement, check_device


class OnFailure(enum.Enum):
    SHUTDOWN = "shutdown"
    RESPAWN = "respawn"


ROBOT_ARGUMENTS = {
    "config": "Parameter file: joints, limits, RTC settings (default: the shipped bimanual.yaml)",
    "namespace": "Namespace of every node and topic",
    "device": "torch device: cpu, cuda or cuda:N; empty: as in config",
    "policy": "LeRobot save_pretrained folder (smolvla, pi0, pi05), .pt checkpoint or name "
    "(builtin-pi0); empty: as in config (the shipped bimanual.yaml: the demo policy)",
    "policy_type": "Overrides the policy kind detected from the path; empty: as in config",
    "task": "Language instruction for VLA policies; empty: as in config",
    "controller": "Where the composed node's control loop runs: process or thread; "
    "empty: as in config (ignored with split:=true)",
    "split": "true: separate inference and controller nodes over topics",
    "joint_states_topic": "Where the robot publishes sensor_msgs/JointState",
    "camera_name": "The camera in config's camera_names that camera_topic feeds",
    "camera_topic": "Where the robot publishes that camera's sensor_msgs/Image "
    "(default: <camera_name>/image_raw)",
    "commands_topic": "Command topic of the robot's controller (format: command_format)",
    "on_failure": "When a node dies: shutdown (stop everything, exit non-zero) "
    "or respawn (start it again)",
    "respawn_delay": "Seconds before a node is started again with on_failure:=respawn",
    "autostart": "true: configure and activate the nodes; false: leave them unconfigured for a "
    "supervisor (lifecycle services <node>/change_state)",
    "record": "true: record commands, joint states, chunks, status, holds and /diagnostics to an "
    "MCAP bag (recorder_node, a process of its own)",
    "record_output": "Bag file of record:=true; empty: rtc_ros_<UTC time>.mcap in the working "
    "directory",
    "record_camera": "true: record camera_topic too",
}
"""Name -> description of robot.launch.py's arguments; sim_demo.launch.py forwards them all."""

NODE_PARAMETER_ARGUMENTS = ("device", "policy", "policy_type", "task", "controller")
"""Arguments that set the node parameter of the same name over the config file's value; empty
(their default) leaves the file's value."""

_CHOICES = {
    "controller": ["", ControllerPlacement.PROCESS.value, ControllerPlacement.THREAD.value],
    "split": ["true", "false"],
    "autostart": ["true", "false"],
    "record": ["true", "false"],
    "record_camera": ["true", "false"],
    "on_failure": [m.value for m in OnFailure],
}


def parameter_overrides(values: dict[str, str]) -> dict[str, str]:
    """The node parameters the arguments set; they come after the config file, so they win."""
    return {name: values[name] for name in NODE_PARAMETER_ARGUMENTS if values[name]}


def lifecycle_parameters(values: dict[str, str]) -> dict[str, bool]:
    """``autostart``: a managed node configures and activates itself whenever its process
    starts (a respawned one too); a failed configure ends the process with status 2, which
    ``on_failure`` then handles like any other failure.
    """
    return {"autostart": values["autostart"] == "true"}


def share_path(*parts: str) -> str:
    """A file of the installed package: share/rtc_ros/<parts>."""
    from ament_index_python.packages import get_package_share_directory

    return os.path.join(get_package_share_directory("rtc_ros"), *parts)


def robot_remappings(values: dict[str, str]) -> list[tuple[str, str]]:
    """The robot's topics as the arguments name them (the simulator's and the nodes' alike)."""
    return [
        ("joint_states", values["joint_states_topic"]),
        (f"{values['camera_name']}/image_raw", values["camera_topic"]),
        ("commands", values["commands_topic"]),
    ]


def declare_robot_arguments() -> list[DeclareLaunchArgument]:
    defaults = {
        "config": share_path("config", "bimanual.yaml"),
        "split": "false",
        "camera_name": "top",
        "joint_states_topic": "joint_states",
        "commands_topic": "commands",
        "on_failure": "shutdown",
        "respawn_delay": "2.0",
        "autostart": "true",
        "record": "false",
        "record_camera": "false",
    }
    return [
        DeclareLaunchArgument(
            name,
            default_value=defaults.get(name, ""),
            description=description,
            choices=_CHOICES.get(name),
        )
        for name, description in ROBOT_ARGUMENTS.items()
    ]


def robot_argument_values(context) -> dict[str, str]:
    """The arguments' values, checked; ValueError names the first bad one and what it must be."""
    values = {name: LaunchConfiguration(name).perform(context) for name in ROBOT_ARGUMENTS}
    if not values["camera_topic"]:
        values["camera_topic"] = f"{values['camera_name']}/image_raw"
    check_robot_arguments(values)
    return values


def configured_cameras(config_path: str) -> tuple[str, ...]:
    """camera_names as the parameter file sets them for the RTC nodes (the declared default where
    it does not); ValueError where the file is not a ROS 2 parameter file.
    """
    with open(config_path) as file:
        try:
            content = yaml.safe_load(file)
        except yaml.YAMLError as error:
            raise ValueError(f"config:={config_path} is not a YAML file: {error}") from None
    if not isinstance(content, dict):
        raise ValueError(
            f"config:={config_path} is not a ROS 2 parameter file (node: ros__parameters)"
        )
    for node_entry in content.values():
        node_parameters = (
            node_entry.get("ros__parameters") if isinstance(node_entry, dict) else None
        )
        if isinstance(node_parameters, dict) and node_parameters.get("camera_names"):
            return tuple(node_parameters["camera_names"])
    return tuple(DECLARATIONS["camera_names"][0])


def check_robot_arguments(values: dict[str, str]) -> None:
    for name, choices in _CHOICES.items():
        if values[name] not in choices:
            raise ValueError(
                f"{name}:={values[name]!r} is not one of {', '.join(repr(c) for c in choices)}"
            )
    if not os.path.isfile(values["config"]):
        raise ValueError(f"config:={values['config']}: no such file")
    cameras = configured_cameras(values["config"])
    if values["camera_name"] not in cameras:
        raise ValueError(
            f"camera_name:={values['camera_name']!r} is not one of the config's camera_names "
            f"{list(cameras)}"
        )
    if values["device"]:
        check_device(values["device"])
    try:
        delay_s = float(values["respawn_delay"])
    except ValueError:
        delay_s = -1.0
    if not delay_s >= 0:
        raise ValueError(
            f"respawn_delay:={values['respawn_delay']!r} must be a number of seconds >= 0"
        )


def recorder(values: dict[str, str]) -> list:
    """The recorder node of record:=true, with the robot's remappings, or nothing."""
    from launch_ros.actions import Node

    from rtc_ros.nodes.recorder_node import recorded_topics

    if values["record"] != "true":
        return []
    topics = recorded_topics(
        values["config"],
        split=values["split"] == "true",
        camera=values["camera_name"] if values["record_camera"] == "true" else None,
    )
    parameters = {"topics": topics, "output": values["record_output"]}
    return [
        Node(
            package="rtc_ros",
            executable="recorder_node",
            name="rtc_recorder",
            namespace="",  # the caller's PushROSNamespace gives the namespace
            output="screen",
            parameters=[parameters],
            remappings=robot_remappings(values),
        )
    ]


def _stop_launch(event, context):
    """A required node ended: shut everything down; an error exit makes launch exit non-zero.

    Nodes that end while launch is already shutting down (Ctrl-C, or another node's failure)
    were told to: a second shutdown would only make launch fail on its own ROS node.
    """
    if context.is_shutdown:
        return None
    name = event.action.name
    if event.returncode == 0:
        return [EmitEvent(event=Shutdown(reason=f"{name} exited"))]
    raise RuntimeError(f"{name} exited with code {event.returncode}: shutting down")


def failure_handling(values: dict[str, str]) -> dict:
    """Keyword arguments for a launch_ros Node that the launch depends on."""
    if OnFailure(values["on_failure"]) is OnFailure.RESPAWN:
        return {"respawn": True, "respawn_delay": float(values["respawn_delay"])}
    return {"on_exit": _stop_launch}
