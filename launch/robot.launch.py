"""Real-Time Chunking on a robot: the composed rtc_node (inference + 50 Hz controller).

    ros2 launch rtc_ros robot.launch.py config:=/path/robot.yaml namespace:=left \
        device:=cuda policy:=/path/policy.pt commands_topic:=/left_arm_controller/joint_trajectory

With split:=true the controller runs as its own node (controller_node) and chunks travel on
the ``chunks`` topic, e.g. inference on a GPU server and the controller on the robot's computer.
Every argument is checked before a node starts; a node that dies stops the launch with a
non-zero exit status (on_failure:=shutdown) or is started again (on_failure:=respawn).
"""

from launch.actions import GroupAction, OpaqueFunction
from launch_ros.actions import Node, PushROSNamespace

from launch import LaunchDescription
from rtc_ros.launching import (
    declare_robot_arguments,
    failure_handling,
    robot_argument_values,
    robot_remappings,
)


def _nodes(context):
    values = robot_argument_values(context)
    overrides = {name: values[name] for name in ("device", "policy", "policy_type", "task")}
    if values["controller"]:
        overrides["controller"] = values["controller"]
    remappings = robot_remappings(values)
    # The overrides come after the file, so that they win over its values.
    parameters = [values["config"], overrides]
    required = failure_handling(values)
    if values["split"] == "true":
        nodes = [
            Node(
                package="rtc_ros",
                executable="inference_node",
                name="rtc_inference",
                output="screen",
                parameters=parameters,
                remappings=remappings,
                **required,
            ),
            Node(
                package="rtc_ros",
                executable="controller_node",
                name="rtc_controller",
                output="screen",
                parameters=[values["config"]],
                remappings=remappings,
                **required,
            ),
        ]
    else:
        nodes = [
            Node(
                package="rtc_ros",
                executable="rtc_node",
                name="rtc",
                output="screen",
                parameters=parameters,
                remappings=remappings,
                **required,
            )
        ]
    return [GroupAction([PushROSNamespace(values["namespace"]), *nodes])]


def generate_launch_description():
    return LaunchDescription(declare_robot_arguments() + [OpaqueFunction(function=_nodes)])
