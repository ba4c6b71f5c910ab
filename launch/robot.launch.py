"""Real-Time Chunking on a robot: the composed rtc_node (inference + 50 Hz controller).

    ros2 launch rtc_ros robot.launch.py config:=/path/robot.yaml namespace:=left \
        device:=cuda policy:=/path/to/pretrained_model task:="fold the towel" \
        commands_topic:=/left_arm_controller/joint_trajectory

With split:=true the controller runs as its own node (controller_node) and chunks travel on
the ``chunks`` topic, e.g. inference on a GPU server and the controller on the robot's computer.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, GroupAction
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node, PushROSNamespace

from launch import LaunchDescription


def generate_launch_description():
    default_config = os.path.join(
        get_package_share_directory("rtc_ros"), "config", "bimanual.yaml"
    )
    arguments = [
        DeclareLaunchArgument(
            "config",
            default_value=default_config,
            description="Parameter file: joints, limits, RTC settings",
        ),
        DeclareLaunchArgument(
            "namespace", default_value="", description="Namespace of every node and topic"
        ),
        DeclareLaunchArgument(
            "device", default_value="cpu", description="torch device: cpu, cuda or cuda:N"
        ),
        DeclareLaunchArgument(
            "policy",
            default_value="",
            description="LeRobot save_pretrained folder (smolvla, pi0, pi05), .pt checkpoint or "
            "name (builtin-pi0); empty for the shipped bimanual demo policy",
        ),
        DeclareLaunchArgument(
            "policy_type",
            default_value="",
            description="Overrides the policy kind detected from the path",
        ),
        DeclareLaunchArgument(
            "task", default_value="", description="Language instruction for VLA policies"
        ),
        DeclareLaunchArgument(
            "joint_states_topic",
            default_value="joint_states",
            description="Where the robot publishes sensor_msgs/JointState",
        ),
        DeclareLaunchArgument(
            "camera_name",
            default_value="top",
            description="The camera in config's camera_names that camera_topic feeds",
        ),
        DeclareLaunchArgument(
            "camera_topic",
            default_value=[LaunchConfiguration("camera_name"), "/image_raw"],
            description="Where the robot publishes that camera's sensor_msgs/Image",
        ),
        DeclareLaunchArgument(
            "commands_topic",
            default_value="commands",
            description="Command topic of the robot's controller (format: command_format)",
        ),
        DeclareLaunchArgument(
            "split",
            default_value="false",
            description="true: separate inference and controller nodes over topics",
        ),
    ]
    split = LaunchConfiguration("split")
    overrides = {
        name: LaunchConfiguration(name) for name in ("device", "policy", "policy_type", "task")
    }
    remappings = [
        ("joint_states", LaunchConfiguration("joint_states_topic")),
        ([LaunchConfiguration("camera_name"), "/image_raw"], LaunchConfiguration("camera_topic")),
        ("commands", LaunchConfiguration("commands_topic")),
    ]
    parameters = [LaunchConfiguration("config"), overrides]
    composed = Node(
        package="rtc_ros",
        executable="rtc_node",
        name="rtc",
        output="screen",
        parameters=parameters,
        remappings=remappings,
        condition=UnlessCondition(split),
    )
    inference = Node(
        package="rtc_ros",
        executable="inference_node",
        name="rtc_inference",
        output="screen",
        parameters=parameters,
        remappings=remappings,
        condition=IfCondition(split),
    )
    controller = Node(
        package="rtc_ros",
        executable="controller_node",
        name="rtc_controller",
        output="screen",
        parameters=[LaunchConfiguration("config")],
        remappings=remappings,
        condition=IfCondition(split),
    )
    return LaunchDescription(
        arguments
        + [
            GroupAction(
                [
                    PushROSNamespace(LaunchConfiguration("namespace")),
                    composed,
                    inference,
                    controller,
                ]
            )
        ]
    )
