"""sim_demo.launch.py split:=true: inference_node and
controller_node exchange chunks over topics.
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

import launch_testing  # noqa: E402
import launch_testing_ros  # noqa: E402
from ament_index_python.packages import get_package_share_directory  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from launch import LaunchDescription  # noqa: E402
from rtc_ros.msg import ActionChunk, ControllerTick, RtcStatus  # noqa: E402


@pytest.mark.launch_test
def generate_test_description():
    isolate_ros_domain(2)
    sim_demo = os.path.join(get_package_share_directory("rtc_ros"), "launch", "sim_demo.launch.py")
    return LaunchDescription(
        [
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(sim_demo),
                launch_arguments={"split": "true", "policy": small_policy_checkpoint()}.items(),
            ),
            launch_testing.actions.ReadyToTest(),
        ]
    )


class TestSplitDeployment(unittest.TestCase):
    def test_the_controller_node_executes_the_inference_nodes_chunks_and_commands_the_robot(self):
        topics = [
            ("/commands", JointTrajectory),
            ("/chunks", ActionChunk),
            ("/controller_tick", ControllerTick),
            ("/rtc_inference/status", RtcStatus),
        ]
        with launch_testing_ros.WaitForTopics(topics, timeout=30.0) as wait:
            time.sleep(1.0)  # a few more chunks
            chunk = wait.received_messages("/chunks")[-1]
            tick = wait.received_messages("/controller_tick")[-1]
        self.assertEqual((chunk.prediction_horizon, chunk.action_dim), (50, 14))
        self.assertGreaterEqual(
            tick.chunk_sequence, 1
        )  # the controller swapped in a chunk it received
        self.assertAlmostEqual(tick.period_s, 0.02)


@launch_testing.post_shutdown_test()
class TestSplitDeploymentShutdown(unittest.TestCase):
    def test_ctrl_c_stops_every_node_with_exit_code_0_and_no_traceback(
        self, proc_info, proc_output
    ):
        assert_nodes_stopped_cleanly(proc_info, proc_output)
