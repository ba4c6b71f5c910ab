"""What the launch tests (test_launch_*.py) share; no tests here, and nothing that needs launch.

The launch tests start the *installed* package (``ros2 launch`` finds it through the ament
index), so after changing launch files, config or nodes re-install it before running them.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile

import pytest
import torch

from rtc_ros.policies.reference import ReferenceFlowPolicy, ReferencePolicyConfig
from rtc_ros.sim.config import BimanualConfig


def skip_without_launch_testing() -> None:
    """Skip the calling launch test module where ROS 2's launch stack or
    the built messages are missing.
    """
    for module in ("launch_testing", "launch_ros", "launch_testing_ros"):
        pytest.importorskip(
            module,
            reason=f"{module} is not installed (it comes with ROS 2, not with scripts/setup.sh)",
        )
    pytest.importorskip(
        "rtc_ros.msg", reason="rtc_ros messages are not built (run scripts/setup.sh)"
    )


def isolate_ros_domain(test_number: int) -> str:
    """Give one launch test a ROS domain of its own (20..100), discovered on this machine only.

    Set in the environment, so both the launched nodes and the test's own subscribers use it.
    The process id spreads parallel pytest runs over the range; ``test_number`` (0, 1, 2)
    separates the tests of one run.
    """
    domain_id = str(20 + (os.getpid() % 27) * 3 + test_number)
    os.environ["ROS_DOMAIN_ID"] = domain_id
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    return domain_id


@functools.cache
def small_policy_checkpoint() -> str:
    """An untrained bimanual policy whose actions stay near the home
    pose: fast on a CPU, safe to run.
    """
    torch.manual_seed(0)
    policy = ReferenceFlowPolicy(
        ReferencePolicyConfig(50, 14, 14, image_shape=(3, 96, 96), hidden_dim=32, num_layers=2)
    )
    with torch.no_grad():
        policy.action_mean.copy_(torch.tensor(BimanualConfig().home_positions))
        policy.action_std.fill_(0.01)
    directory = tempfile.mkdtemp(prefix="rtc_ros_launch_test_")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    path = os.path.join(directory, "policy.pt")
    policy.save(path)
    return path


SHUTDOWN_ERRORS = ("Traceback", "exception was never retrieved")
"""What a node must not print when stopped: Python tracebacks, rclpy's unhandled callback
errors."""


def assert_nodes_stopped_cleanly(proc_info, proc_output) -> None:
    """After launch's SIGINT every node exited with 0 and printed no error."""
    from launch_testing.asserts import assertExitCodes

    assertExitCodes(proc_info)
    for output in proc_output:
        text = output.text.decode(errors="replace")
        for error in SHUTDOWN_ERRORS:
            assert error not in text, f"{output.process_name} printed {error!r}:\n{text}"
