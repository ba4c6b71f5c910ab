"""robot.launch.py on a robot in a namespace whose controller takes commands on its own topic.

The simulated robot stands in for the real one: it runs in namespace ``left`` and listens on
``/arm_controller/joint_trajectory``, as a ros2_control JointTrajectoryController would.
"""

import os
import time
import unittest

import pytest
from test_launch_support import (
    assert_nodes_stopped_cleanly,
    isolate_ros_domain,
    skip_without_launch_testing,
    small_policy_checkpoint,
)

skip_without_launch_testing()

import launch_ros  # noqa: E402
import launch_testing  # noqa: E402
import launch_testing_ros  # noqa: E402
import rclpy  # noqa: E402
from ament_index_python.packages import get_package_share_directory  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from launch import LaunchDescription  # noqa: E402
from rtc_ros.msg import RtcStatus  # noqa: E402
from rtc_ros.sim.config import BimanualConfig  # noqa: E402

COMMANDS = "/arm_controller/joint_trajectory"
GLOBAL_TOPICS = {COMMANDS, "/diagnostics", "/rosout", "/parameter_events"}
"""The only topics outside /left: the remapped commands and ROS's own absolute topics."""


@pytest.mark.launch_test
def generate_test_description():
    isolate_ros_domain(1)
    share = get_package_share_directory("rtc_ros")
    return LaunchDescription(
        [
            launch_ros.actions.Node(
                package="rtc_ros",
                executable="sim_node",
                name="bimanual_sim",
                namespace="left",
                parameters=[os.path.join(share, "config", "bimanual.yaml")],
                remappings=[("commands", COMMANDS)],
            ),
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(os.path.join(share, "launch", "robot.launch.py")),
                launch_arguments={
                    "namespace": "left",
                    "commands_topic": COMMANDS,
                    "policy": small_policy_checkpoint(),
                }.items(),
            ),
            launch_testing.actions.ReadyToTest(),
        ]
    )


def _graph(expected_nodes: set[str], timeout_s: float = 10.0) -> tuple[set[str], set[str]]:
    """Node and topic names seen by a probe, once discovery has found ``expected_nodes``."""
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        probe = rclpy.create_node("graph_probe", namespace="/probe", context=context)
        deadline = time.monotonic() + timeout_s
        while True:
            nodes = {
                ns.rstrip("/") + "/" + name for name, ns in probe.get_node_names_and_namespaces()
            }
            if expected_nodes <= nodes or time.monotonic() > deadline:
                topics = {name for name, _ in probe.get_topic_names_and_types()}
                return nodes - {"/probe/graph_probe"}, topics
            time.sleep(0.2)
    finally:
        context.try_shutdown()


class TestRobotLaunch(unittest.TestCase):
    def test_commands_reach_the_remapped_topic_and_status_is_in_the_namespace(self):
        topics = [(COMMANDS, JointTrajectory), ("/left/rtc/status", RtcStatus)]
        with launch_testing_ros.WaitForTopics(topics, timeout=30.0) as wait:
            command = wait.received_messages(COMMANDS)[-1]
        self.assertEqual(list(command.joint_names), list(BimanualConfig().joint_names))

    def test_every_node_and_topic_is_under_the_namespace_except_commands_and_diagnostics(self):
        with launch_testing_ros.WaitForTopics([("/left/rtc/status", RtcStatus)], timeout=30.0):
            pass
        ours = {"/left/bimanual_sim", "/left/rtc", "/left/rtc_control"}
        nodes, topics = _graph(ours)
        self.assertLessEqual(ours, nodes)
        self.assertEqual(
            {n for n in nodes if not n.startswith(("/left/", "/_test_node_"))}, set()
        )  # WaitForTopics'
        self.assertIn(COMMANDS, topics)
        self.assertNotIn("/left/commands", topics)
        self.assertEqual({t for t in topics - GLOBAL_TOPICS if not t.startswith("/left/")}, set())


@launch_testing.post_shutdown_test()
class TestRobotLaunchShutdown(unittest.TestCase):
    def test_ctrl_c_stops_every_node_with_exit_code_0_and_no_traceback(
        self, proc_info, proc_output
    ):
        assert_nodes_stopped_cleanly(proc_info, proc_output)
