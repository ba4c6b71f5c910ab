"""The simulated bimanual robot with Real-Time Chunking on it.

    ros2 launch rtc_ros sim_demo.launch.py [policy:=PATH] [task:=TEXT] [device:=cpu]
    [controller:=process|thread] \
        [split:=false] [namespace:=NAME]

Starts bimanual_sim (joint_states, top/image_raw, commands) and includes robot.launch.py.
Watch it with ``ros2 topic echo /rtc/status`` or rqt's Runtime Monitor on /diagnostics.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node, SetParameter

from launch import LaunchDescription


def generate_launch_description():
    share = get_package_share_directory("rtc_ros")
    config = os.path.join(share, "config", "bimanual.yaml")
    forwarded = ("device", "policy", "policy_type", "task", "split", "namespace")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "policy",
                default_value="",
                description="LeRobot save_pretrained folder (smolvla, pi0, pi05), .pt checkpoint "
                "or name (builtin-pi0); empty for the shipped bimanual demo policy",
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
                "device", default_value="cpu", description="torch device: cpu, cuda or cuda:N"
            ),
            DeclareLaunchArgument(
                "controller",
                default_value="process",
                choices=["process", "thread"],
                description="Where the composed node's control loop runs "
                "(ignored with split:=true)",
            ),
            DeclareLaunchArgument(
                "split",
                default_value="false",
                description="true: separate inference and controller nodes over topics",
            ),
            DeclareLaunchArgument(
                "namespace", default_value="", description="Namespace of the robot and its nodes"
            ),
            SetParameter(name="controller", value=LaunchConfiguration("controller")),
            Node(
                package="rtc_ros",
                executable="sim_node",
                name="bimanual_sim",
                namespace=LaunchConfiguration("namespace"),
                output="screen",
                parameters=[config],
            ),
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(os.path.join(share, "launch", "robot.launch.py")),
                launch_arguments=[("config", config)]
                + [(name, LaunchConfiguration(name)) for name in forwarded],
            ),
        ]
    )
