"""The simulated bimanual robot with Real-Time Chunking on it.

    ros2 launch rtc_ros sim_demo.launch.py [policy:=PATH] [task:=TEXT] [device:=cpu] \
        [controller:=process|thread] [split:=false] [namespace:=NAME] [config:=FILE] \
        [on_failure:=shutdown|respawn] [autostart:=true] [record:=false] [record_output:=FILE]

Starts bimanual_sim (joint_states, top/image_raw, commands) and includes robot.launch.py with
the same arguments, all checked before the simulator starts.
Watch it with ``ros2 topic echo /rtc/status`` or rqt's Runtime Monitor on /diagnostics.
"""

from launch.actions import IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch_ros.actions import Node

from launch import LaunchDescription
from rtc_ros.launching import (
    ROBOT_ARGUMENTS,
    declare_robot_arguments,
    failure_handling,
    robot_argument_values,
    robot_remappings,
    share_path,
)


def _simulator_and_robot(context):
    values = robot_argument_values(context)
    return [
        Node(
            package="rtc_ros",
            executable="sim_node",
            name="bimanual_sim",
            namespace=values["namespace"],
            output="screen",
            parameters=[values["config"]],
            remappings=robot_remappings(values),
            **failure_handling(values),
        ),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(share_path("launch", "robot.launch.py")),
            launch_arguments=[(name, values[name]) for name in ROBOT_ARGUMENTS],
        ),
    ]


def generate_launch_description():
    return LaunchDescription(
        declare_robot_arguments() + [OpaqueFunction(function=_simulator_and_robot)]
    )
