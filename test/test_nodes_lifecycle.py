"""The managed nodes driven as a supervisor drives them: through
<node>/get_state and <node>/change_state.
"""

import multiprocessing
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")
pytest.importorskip("rtc_ros.msg", reason="rtc_ros messages are not built (run scripts/setup.sh)")

from rcl_interfaces.msg import Log  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from ros_graph import CONFIG, LifecycleClient, RosGraph, config_overrides  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from test_launch_support import small_policy_checkpoint  # noqa: E402

from rtc_ros.msg import ActionChunk  # noqa: E402
from rtc_ros.nodes.controller_links import CHUNK_QOS  # noqa: E402
from rtc_ros.nodes.controller_node import ControllerNode  # noqa: E402
from rtc_ros.nodes.inference_node import InferenceNode  # noqa: E402
from rtc_ros.nodes.parameters import ControllerPlacement, read  # noqa: E402

PROBE_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
ROSOUT_QOS = QoSProfile(
    depth=1000, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)


@pytest.fixture
def graph():
    ros = RosGraph()
    yield ros
    ros.close()


COMMANDS = "joint_state"
"""Commands as JointState, stamped when sent (a JointTrajectory's stamp is zero, "start now"):
these tests compare when commands were sent with when the nodes changed state."""


def _sim(graph):
    """The simulated robot without episode resets: after a deactivation it must hold still."""
    return graph.start_process(
        "rtc_ros.nodes.sim_node",
        [
            "--params-file",
            str(CONFIG),
            "-p",
            "reset_on_episode_end:=false",
            "-p",
            f"command_format:={COMMANDS}",
        ],
    )


def _positions(message) -> np.ndarray:
    return np.array(message.position)


def _stamp_s(message) -> float:
    return message.header.stamp.sec + message.header.stamp.nanosec * 1e-9


def _control_processes() -> list:
    return [p for p in multiprocessing.active_children() if p.name == "rtc_control_loop"]


def test_rtc_node_commands_only_while_active_and_releases_everything_at_cleanup(graph):
    commands = graph.collect(JointState, "commands", PROBE_QOS)
    chunks = graph.collect(ActionChunk, "rtc/chunks", CHUNK_QOS)
    joint_states = graph.collect(JointState, "joint_states", qos_profile_sensor_data)
    _sim(graph)
    node = graph.add(
        InferenceNode(
            "rtc",
            placement=ControllerPlacement.PROCESS,
            context=graph.context,
            parameter_overrides=config_overrides(
                policy=small_policy_checkpoint(), command_format=COMMANDS
            ),
        )
    )
    rtc = LifecycleClient(graph.probe, "/rtc")

    assert rtc.state() == "unconfigured"
    assert rtc.change("configure") and rtc.state() == "inactive"
    graph.wait_for(lambda: len(joint_states) >= 50, what="the robot's joint states")
    time.sleep(1.0)
    assert commands == [] and chunks == [] and _control_processes() == []

    assert rtc.change("activate") and rtc.state() == "active"
    graph.wait_for(
        lambda: len(commands) >= 100 and len(chunks) >= 3,
        timeout_s=60,
        what="commands while active",
    )

    # deactivate: commanding and inference stop, the control process ends, the robot holds the
    # last command
    assert rtc.change("deactivate") and rtc.state() == "inactive"
    deactivated_s = time.time()
    time.sleep(1.5)
    assert (
        max(_stamp_s(c) for c in commands) <= deactivated_s
        and max(_stamp_s(c) for c in chunks) <= deactivated_s
    )
    sent, chunk_count = len(commands), len(chunks)
    assert _control_processes() == []
    held = np.abs(_positions(joint_states[-1]) - _positions(commands[-1]))
    assert held.max() < 0.05

    # activate again: a fresh plan (chunk sequence from 1) from the measured state
    assert rtc.change("activate")
    graph.wait_for(
        lambda: len(commands) >= sent + 50 and len(chunks) > chunk_count,
        timeout_s=60,
        what="commands after the second activation",
    )
    assert chunks[chunk_count].sequence == 1

    # cleanup: policy, process and every publisher and subscription of the runtime are gone
    assert rtc.change("deactivate") and rtc.change("cleanup") and rtc.state() == "unconfigured"
    assert node.policy is None and _control_processes() == []
    assert (
        graph.probe.count_publishers("/rtc/chunks") == 0
        and graph.probe.count_publishers("/rtc/status") == 0
    )
    assert graph.probe.get_subscriber_names_and_types_by_node("rtc", "/") == []

    # it can be configured again, and shut down from any state
    assert rtc.change("configure") and rtc.state() == "inactive"
    assert rtc.change("shutdown") and rtc.state() == "finalized"
    assert node.policy is None


def test_a_configuration_that_breaks_a_rule_fails_configure_and_names_the_rule(graph):
    logs = graph.collect(Log, "/rosout", ROSOUT_QOS)
    node = graph.add(
        InferenceNode(
            "rtc_bad",
            placement=ControllerPlacement.THREAD,
            context=graph.context,
            parameter_overrides=config_overrides(
                policy=small_policy_checkpoint(), min_execution_horizon=50
            ),
        )
    )
    rtc = LifecycleClient(graph.probe, "/rtc_bad")
    assert not rtc.change("configure")
    assert rtc.state() == "unconfigured"
    graph.wait_for(
        lambda: any(
            "configure failed: min_execution_horizon (s_min) must be < prediction_horizon"
            in log.msg
            for log in logs
        ),
        what="the broken rule in the log",
    )
    # the tunable parameter can be fixed while unconfigured, and configure then succeeds
    assert node.set_parameters([rclpy.parameter.Parameter("min_execution_horizon", value=25)])[
        0
    ].successful
    assert rtc.change("configure") and rtc.state() == "inactive"


def test_controller_node_starts_from_the_measured_state_on_activation_and_stops_on_deactivation(
    graph,
):
    commands = graph.collect(JointState, "commands", PROBE_QOS)
    joint_states = graph.collect(JointState, "joint_states", qos_profile_sensor_data)
    _sim(graph)
    controller = graph.add(
        ControllerNode(
            context=graph.context, parameter_overrides=config_overrides(command_format=COMMANDS)
        )
    )
    inference = graph.add(
        InferenceNode(
            "rtc",
            placement=ControllerPlacement.TOPIC,
            context=graph.context,
            parameter_overrides=config_overrides(
                policy=small_policy_checkpoint(), command_format=COMMANDS
            ),
        )
    )
    graph.wait_for(lambda: len(joint_states) >= 20, timeout_s=60, what="the robot's joint states")
    for node in (inference, controller):
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert inference.trigger_activate() == TransitionCallbackReturn.SUCCESS
    time.sleep(1.0)
    assert commands == []  # the controller is inactive: the chunk waits for it
    assert controller.trigger_activate() == TransitionCallbackReturn.SUCCESS
    graph.wait_for(
        lambda: len(commands) >= 50, timeout_s=60, what="commands from the activated controller"
    )
    # The command publisher exists since configure, so the probe receives the very first command:
    # at most one rate-limited step from the position measured before it.
    measured = [m for m in joint_states if _stamp_s(m) <= _stamp_s(commands[0])][-1]
    first_step = np.abs(_positions(commands[0]) - _positions(measured))
    assert np.all(first_step <= np.array(read(controller).joint_limits().max_step) + 0.01), (
        first_step
    )

    # both deactivated and activated again (inference first): a fresh clock on both sides
    for node in (inference, controller):
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    deactivated_s = time.time()
    time.sleep(1.0)
    assert max(_stamp_s(c) for c in commands) <= deactivated_s
    sent = len(commands)
    for node in (inference, controller):
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    # (a chunk of the first activation still in flight is rejected: it counts on the old run's
    # clock)
    graph.wait_for(
        lambda: len(commands) >= sent + 50,
        timeout_s=60,
        what="commands after the second activation",
    )


def test_a_node_with_autostart_brings_itself_to_active_and_one_that_cannot_configure_says_why(
    graph,
):
    started = graph.add(
        InferenceNode(
            "rtc",
            placement=ControllerPlacement.THREAD,
            context=graph.context,
            parameter_overrides=config_overrides(policy=small_policy_checkpoint(), autostart=True),
        )
    )
    started.bring_up()
    assert LifecycleClient(graph.probe, "/rtc").state() == "active"

    broken = InferenceNode(
        "rtc_broken",
        context=graph.context,
        parameter_overrides=config_overrides(policy="/nonexistent/policy.pt", autostart=True),
    )
    try:
        with pytest.raises(ValueError, match="configure failed: .*/nonexistent/policy.pt"):
            broken.bring_up()
    finally:
        broken.destroy_node()
