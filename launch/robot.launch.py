"""Real-Time Chunking on a robot: the composed rtc_node (inference + 50 Hz controller).

    ros2 launch rtc_ros robot.launch.py config:=/path/robot.yaml namespace:=left \
        device:=cuda policy:=/path/policy_folder

With split:=true the controller runs as its own node (controller_node) and chunks travel on
the ``chunks`` topic, e.g. inference on a GPU server and the controller on the robot's computer.
Every argument is checked before a node starts; a node that dies stops the launch with a
non-zero exit status (on_failure:=shutdown) or is started again (on_failure:=respawn).

The nodes are managed nodes: each configures and activates itself at start unless
autostart:=false, which leaves them unconfigured for a supervisor (``ros2 lifecycle set /rtc
configure``, ``activate``). A node that fails to configure exits, and stops the launch too.

record:=true also starts recorder_node, which writes the run to an MCAP bag (record_output:=FILE;
``python -m rtc_ros.plot FILE --output DIR`` draws it).
"""

from launch.actions import GroupAction, OpaqueFunction
from launch_ros.actions import LifecycleNode, PushROSNamespace

from launch import LaunchDescription
from rtc_ros.launching import (
    declare_robot_arguments,
    failure_handling,
    lifecycle_parameters,
    parameter_overrides,
    recorder,
    robot_argument_values,
    robot_remappings,
)


def _nodes(context):
    values = robot_argument_values(context)
    remappings = robot_remappings(values)
    lifecycle = lifecycle_parameters(values)
    parameters = [values["config"], parameter_overrides(values), lifecycle]
    if values["split"] == "true":
        named = [
            ("inference_node", "rtc_inference", parameters),
            ("controller_node", "rtc_controller", [values["config"], lifecycle]),
        ]
    else:
        named = [("rtc_node", "rtc", parameters)]
    nodes = [
        LifecycleNode(
            package="rtc_ros",
            executable=executable,
            name=name,
            namespace="",  # the group's PushROSNamespace gives the namespace
            output="screen",
            parameters=node_parameters,
            remappings=remappings,
            **failure_handling(values),
        )
        for executable, name, node_parameters in named
    ]
    nodes += recorder(values)
    return [GroupAction([PushROSNamespace(values["namespace"]), *nodes])]


def generate_launch_description():
    return LaunchDescription(declare_robot_arguments() + [OpaqueFunction(function=_nodes)])
