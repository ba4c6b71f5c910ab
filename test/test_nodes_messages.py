import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from rclpy.time import Time

from rtc_ros.nodes.messages import COMMAND_TYPES, CommandMessage, command_positions
from rtc_ros.nodes.parameters import CommandFormat

JOINTS = ("a", "b", "c")


@pytest.mark.parametrize("command_format", list(CommandFormat), ids=lambda f: f.value)
def test_one_command_message_is_refilled_with_each_ticks_positions(command_format):
    command = CommandMessage(command_format, JOINTS, 0.02)
    first = command.fill(np.array([0.1, 0.2, 0.3]), Time(nanoseconds=5_250_000_000))
    np.testing.assert_allclose(command_positions(command_format, JOINTS, first), [0.1, 0.2, 0.3])
    second = command.fill(np.array([1.0, 2.0, 3.0]), Time(nanoseconds=6_000_000_001))
    assert second is first
    # What a subscriber receives: the message as serialized when it is published.
    received = deserialize_message(serialize_message(second), COMMAND_TYPES[command_format])
    np.testing.assert_allclose(
        command_positions(command_format, JOINTS, received), [1.0, 2.0, 3.0]
    )


def test_a_joint_state_command_is_stamped_when_it_is_sent():
    command = CommandMessage(CommandFormat.JOINT_STATE, JOINTS, 0.02)
    message = command.fill(np.zeros(3), Time(nanoseconds=6_000_000_001))
    assert (message.header.stamp.sec, message.header.stamp.nanosec) == (6, 1)


def test_a_trajectory_command_starts_now_and_reaches_its_point_one_period_later():
    """joint_trajectory_controller: stamp zero is "start now", so no command is dropped for
    arriving after stamp + time_from_start by the controller's clock.
    """
    command = CommandMessage(CommandFormat.JOINT_TRAJECTORY, JOINTS, 0.02)
    message = command.fill(np.zeros(3), Time(nanoseconds=6_000_000_001))
    assert (message.header.stamp.sec, message.header.stamp.nanosec) == (0, 0)
    assert len(message.points) == 1
    assert (message.points[0].time_from_start.sec, message.points[0].time_from_start.nanosec) == (
        0,
        20_000_000,
    )


@pytest.mark.parametrize("command_format", list(CommandFormat), ids=lambda f: f.value)
def test_a_group_message_carries_only_its_joints_picked_from_the_action_vector(command_format):
    command = CommandMessage(command_format, ("c", "a"), 0.02, action_indices=(2, 0))
    message = command.fill(np.array([1.0, 2.0, 3.0]), Time(nanoseconds=1))
    np.testing.assert_allclose(command_positions(command_format, ("c", "a"), message), [3.0, 1.0])
    if command_format is CommandFormat.JOINT_TRAJECTORY:
        assert list(message.joint_names) == ["c", "a"]
