import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from rclpy.time import Time

from rtc_ros.nodes.messages import COMMAND_TYPES, CommandMessage, command_positions
from rtc_ros.nodes.parameters import CommandFormat

JOINTS = ("a", "b", "c")


@pytest.mark.parametrize("command_format", list(CommandFormat), ids=lambda f: f.value)
def test_one_command_message_is_refilled_with_each_ticks_positions_and_stamp(command_format):
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
    if command_format is not CommandFormat.FLOAT64_MULTI_ARRAY:
        assert (received.header.stamp.sec, received.header.stamp.nanosec) == (6, 1)
