"""sim_demo.launch.py: the simulated robot commanded at 50 Hz by the composed rtc_node."""

import os
import time
import unittest

import numpy as np
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
from rtc_ros.msg import RtcStatus  # noqa: E402
from rtc_ros.sim.config import BimanualConfig  # noqa: E402


@pytest.mark.launch_test
def generate_test_description():
    isolate_ros_domain(0)
    sim_demo = os.path.join(get_package_share_directory("rtc_ros"), "launch", "sim_demo.launch.py")
    return LaunchDescription(
        [
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(sim_demo),
                launch_arguments={"policy": small_policy_checkpoint()}.items(),
            ),
            launch_testing.actions.ReadyToTest(),
        ]
    )


class TestSimDemo(unittest.TestCase):
    def test_the_robot_receives_commands_at_50_hz_and_rtc_status_reports_them(self):
        topics = [("/commands", JointTrajectory), ("/rtc/status", RtcStatus)]
        with launch_testing_ros.WaitForTopics(
            topics, timeout=30.0, messages_received_buffer_length=1000
        ) as wait:
            # A JointTrajectory command's stamp is zero ("start now"): the rate is counted here.
            started_s, first = time.monotonic(), len(wait.received_messages("/commands"))
            time.sleep(2.5)
            commands = wait.received_messages("/commands")
            rate_hz = (len(commands) - first) / (time.monotonic() - started_s)
            status = wait.received_messages("/rtc/status")[-1]
        self.assertTrue(40.0 < rate_hz < 60.0, f"commands at {rate_hz:.1f} Hz")
        self.assertEqual(list(commands[-1].joint_names), list(BimanualConfig().joint_names))
        self.assertTrue(np.all(np.isfinite(commands[-1].points[0].positions)))
        self.assertEqual((status.device, status.method), ("cpu", "rtc_soft"))
        self.assertGreater(status.commands_published, 0)


@launch_testing.post_shutdown_test()
class TestSimDemoShutdown(unittest.TestCase):
    def test_ctrl_c_stops_every_node_with_exit_code_0_and_no_traceback(
        self, proc_info, proc_output
    ):
        assert_nodes_stopped_cleanly(proc_info, proc_output)
