import math

import numpy as np
import pytest

from rtc_ros.runtime.command_filter import CommandFilter, JointLimits


@pytest.fixture
def limits():
    return JointLimits(names=("a", "b"), lower=(-1.0, 0.0), upper=(1.0, 0.1), max_step=(0.1, 0.01))


def test_nothing_is_commanded_before_a_valid_action_or_measured_position(limits):
    command_filter = CommandFilter(limits)
    assert command_filter.apply(None) is None
    assert command_filter.apply(np.array([math.nan, 0.0])) is None


def test_first_command_is_rate_limited_from_the_measured_position(limits):
    command_filter = CommandFilter(limits)
    command_filter.reset(np.array([0.0, 0.05]))
    assert np.allclose(command_filter.apply(np.array([0.9, 0.0])), [0.1, 0.04])
    assert command_filter.clamped_commands == 1


def test_commands_are_clamped_to_position_limits(limits):
    command_filter = CommandFilter(limits)
    command_filter.reset(np.array([0.95, 0.095]))
    assert np.allclose(command_filter.apply(np.array([2.0, 0.5])), [1.0, 0.1])


def test_nan_or_wrongly_sized_actions_hold_the_last_command_and_are_counted(limits):
    command_filter = CommandFilter(limits)
    command_filter.reset(np.array([0.2, 0.05]))
    held = command_filter.apply(np.array([0.25, 0.05]))
    assert np.array_equal(command_filter.apply(np.array([math.inf, 0.0])), held)
    assert np.array_equal(command_filter.apply(np.array([0.0, 0.0, 0.0])), held)
    assert command_filter.rejected_actions == 2


@pytest.mark.parametrize(
    "kwargs, text",
    [
        (dict(lower=(1.0, 0.0)), "lower limit"),
        (dict(max_step=(0.1,)), "max_step needs one value per joint"),
        (dict(max_step=(0.1, 0.0)), "max_step must be > 0"),
        (dict(names=("a", "a")), "unique"),
    ],
)
def test_invalid_limits_raise_value_error_saying_what_to_fix(kwargs, text):
    values = dict(names=("a", "b"), lower=(-1.0, 0.0), upper=(1.0, 0.1), max_step=(0.1, 0.01))
    values.update(kwargs)
    with pytest.raises(ValueError, match=text):
        JointLimits(**values)
