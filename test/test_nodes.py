"""The nodes on real rclpy over real DDS, in one process per test on a private domain."""

import math
import sys

import numpy as np
import pytest
import torch

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")
pytest.importorskip("rtc_ros.msg", reason="rtc_ros messages are not built (run scripts/setup.sh)")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from ros_graph import CONFIG, RosGraph, config_overrides  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from test_launch_support import small_policy_checkpoint  # noqa: E402
from test_runtime_realtime import without_realtime_permission  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from rtc_ros.core import ControllerState, GuidanceMode  # noqa: E402
from rtc_ros.msg import ActionChunk, ControllerTick, RtcStatus  # noqa: E402
from rtc_ros.nodes import parameters  # noqa: E402
from rtc_ros.nodes.controller_links import CHUNK_QOS, COMMAND_QOS  # noqa: E402
from rtc_ros.nodes.controller_node import ControllerNode  # noqa: E402
from rtc_ros.nodes.inference_node import InferenceNode  # noqa: E402
from rtc_ros.nodes.parameters import ControllerPlacement  # noqa: E402
from rtc_ros.runtime.observation import ObservationError  # noqa: E402
from rtc_ros.sim.config import BimanualConfig  # noqa: E402

JOINTS = list(BimanualConfig().joint_names)
PROBE_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
"""The probe keeps every command it is sent, so that a busy test process drops none of them."""


@pytest.fixture(scope="module")
def policy_path():
    return small_policy_checkpoint()


@pytest.fixture
def graph():
    ros = RosGraph()
    yield ros
    ros.close()


def _rtc(graph, policy_path, placement=ControllerPlacement.THREAD, name="rtc", **kwargs):
    overrides = config_overrides(policy=policy_path, **kwargs.pop("params", {}))
    return graph.add_active(
        InferenceNode(
            name,
            placement=placement,
            context=graph.context,
            parameter_overrides=overrides,
            **kwargs,
        )
    )


def _sim(graph, namespace: str = "", remaps: tuple[str, ...] = ()):
    """The simulated robot in its own process: in the test's process its physics thread would
    compete for the GIL with the nodes under test, which a robot's driver never does.
    """
    arguments = ["--params-file", str(CONFIG)] + (
        ["-r", f"__ns:=/{namespace}"] if namespace else []
    )
    for remap in remaps:
        arguments += ["-r", remap]
    return graph.start_process("rtc_ros.nodes.sim_node", arguments)


def _statuses(arrays, suffix):
    return [s for a in arrays for s in a.status if s.name.endswith(suffix)]


def test_default_composed_node_commands_at_50_hz_in_the_configured_joint_order(graph, policy_path):
    """The default: the control loop in its own process, chunks through shared memory."""
    arrivals: list[float] = []
    commands = graph.collect(JointTrajectory, "commands", PROBE_QOS, arrivals)
    statuses = graph.collect(RtcStatus, "rtc/status")
    _sim(graph)
    _rtc(graph, policy_path, placement=ControllerPlacement.PROCESS)
    graph.wait_for(
        lambda: len(commands) >= 200 and statuses and statuses[-1].swaps >= 3,
        timeout_s=60,
        what="200 commands and 3 swaps",
    )
    assert 45.0 < graph.rate_hz(arrivals) < 55.0
    assert all(c.joint_names == JOINTS and len(c.points) == 1 for c in commands)
    assert all(np.all(np.isfinite(c.points[0].positions)) for c in commands)
    assert statuses[-1].commands_published >= 100 and statuses[-1].underruns == 0


def test_controller_in_a_thread_of_the_inference_process_commands_and_reports(graph, policy_path):
    commands = graph.collect(JointTrajectory, "commands", PROBE_QOS)
    statuses = graph.collect(RtcStatus, "rtc/status")
    _sim(graph)
    _rtc(graph, policy_path, placement=ControllerPlacement.THREAD)
    graph.wait_for(
        lambda: len(commands) >= 100 and statuses and statuses[-1].swaps >= 3,
        timeout_s=60,
        what="commands and swaps from the control thread",
    )
    assert all(c.joint_names == JOINTS for c in commands)
    assert statuses[-1].commands_published >= 50


def test_diagnostics_carry_the_delay_history(graph, policy_path):
    diagnostics = graph.collect(DiagnosticArray, "/diagnostics")
    _sim(graph)
    _rtc(graph, policy_path)
    graph.wait_for(
        lambda: any(
            len(kv.value.split(",")) >= 3
            for s in _statuses(diagnostics, "inference delay")
            for kv in s.values
            if kv.key == "delay_history_ticks"
        ),
        what="three observed delays on /diagnostics",
    )
    delay = _statuses(diagnostics, "/rtc: inference delay")[-1]
    values = {kv.key: kv.value for kv in delay.values}
    assert all(int(d) >= 0 for d in values["delay_history_ticks"].split(","))
    assert values["execution_horizon_ticks"] == "25" and values["device"] == "cpu"
    assert float(values["chunk_latency_p50_ms"]) > 0
    controller = _statuses(diagnostics, "/rtc: controller")[-1]
    assert "period_error_p99_ms" in {kv.key for kv in controller.values}
    assert delay.hardware_id == "bimanual_sim"


def test_a_remapped_command_topic_carries_the_commands(graph, policy_path):
    commands = graph.collect(JointTrajectory, "/arm/joint_trajectory", COMMAND_QOS)
    _sim(graph, remaps=("commands:=/arm/joint_trajectory",))
    _rtc(graph, policy_path, cli_args=["--ros-args", "-r", "commands:=/arm/joint_trajectory"])
    graph.wait_for(lambda: len(commands) >= 20, what="commands on the remapped topic")


def test_a_namespaced_bimanual_pair_runs_side_by_side(graph, policy_path):
    left = graph.collect(JointTrajectory, "/left/commands", COMMAND_QOS)
    right = graph.collect(JointTrajectory, "/right/commands", COMMAND_QOS)
    for namespace in ("left", "right"):
        _sim(graph, namespace=namespace)
        _rtc(graph, policy_path, namespace=namespace)
    graph.wait_for(
        lambda: len(left) >= 20 and len(right) >= 20,
        timeout_s=60,
        what="commands in both namespaces",
    )


def _prefix_mismatch(chunks):
    """Largest gap between a chunk's frozen prefix and the previous chunk's actions it replaces."""
    gaps = []
    for old, new in zip(chunks, chunks[1:]):
        old_actions = np.array(old.actions).reshape(old.prediction_horizon, old.action_dim)
        new_actions = np.array(new.actions).reshape(new.prediction_horizon, new.action_dim)
        s, d = new.execution_horizon, max(new.inference_delay, 1)
        gaps.append(np.abs(new_actions[:d] - old_actions[s : s + d]).max())
    return max(gaps)


def test_split_mode_over_topics_keeps_the_continuity_of_the_composed_mode(policy_path):
    results = {}
    for mode in ("composed", "split"):
        graph = RosGraph()
        try:
            chunks = graph.collect(ActionChunk, "rtc/chunks", CHUNK_QOS)
            commands = graph.collect(JointTrajectory, "commands", PROBE_QOS)
            _sim(graph)
            if mode == "composed":
                _rtc(graph, policy_path)
            else:
                ticks = graph.collect(ControllerTick, "controller_tick", CHUNK_QOS)
                statuses = graph.collect(RtcStatus, "rtc/status")
                _rtc(graph, policy_path, placement=ControllerPlacement.TOPIC)
                graph.add_active(
                    ControllerNode(context=graph.context, parameter_overrides=config_overrides())
                )
            graph.wait_for(
                lambda: len(chunks) >= 6 and len(commands) >= 100,
                timeout_s=60,
                what=f"{mode} chunks",
            )
            if mode == "split":
                assert ticks[-1].tick > ticks[0].tick and ticks[-1].chunk_sequence >= 2
                assert ticks[-1].commands_published > 0 and ticks[-1].swaps >= 1
                # The inference node's status carries the remote controller's counters.
                graph.wait_for(
                    lambda: (
                        statuses
                        and statuses[-1].commands_published >= 100
                        and statuses[-1].swaps >= 3
                    ),
                    what="controller counters in the inference status",
                )
                assert statuses[-1].underruns <= ticks[-1].underruns
            results[mode] = _prefix_mismatch(chunks)
        finally:
            graph.close()
    assert results["split"] < 0.01 and results["composed"] < 0.01


def test_controller_node_rejects_a_nan_chunk_and_keeps_commanding(graph):
    commands = graph.collect(JointTrajectory, "commands", PROBE_QOS)
    _sim(graph)
    ticks = graph.collect(ControllerTick, "controller_tick", CHUNK_QOS)
    controller = graph.add_active(
        ControllerNode(context=graph.context, parameter_overrides=config_overrides())
    )
    chunks = graph.probe.create_publisher(ActionChunk, "chunks", CHUNK_QOS)
    graph.wait_for(lambda: ticks, what="the controller's first tick (its run id)")
    home = np.array(BimanualConfig().home_positions)
    good = ActionChunk(
        joint_names=JOINTS,
        prediction_horizon=50,
        action_dim=14,
        start_tick=0,
        sequence=1,
        run_id=ticks[-1].run_id,
        actions=np.tile(home, 50).astype(np.float32).tolist(),
    )
    graph.wait_for(
        lambda: chunks.get_subscription_count() > 0, what="controller subscribed to chunks"
    )
    chunks.publish(good)
    graph.wait_for(lambda: len(commands) >= 10, what="commands from the good chunk")
    bad = ActionChunk(
        joint_names=JOINTS,
        prediction_horizon=50,
        action_dim=14,
        start_tick=5,
        sequence=2,
        run_id=ticks[-1].run_id,
        actions=[math.nan] * 700,
    )
    chunks.publish(bad)
    graph.wait_for(lambda: controller.rejected_chunks == 1, what="the NaN chunk to be rejected")
    count = len(commands)
    graph.wait_for(lambda: len(commands) >= count + 10, what="commands after the rejected chunk")
    assert all(np.all(np.isfinite(c.points[0].positions)) for c in commands)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="real-time settings: Linux only")
@pytest.mark.parametrize("permitted", [True, False], ids=["permitted", "refused"])
def test_the_split_controller_node_applies_its_real_time_settings_and_reports_them(
    graph, tmp_path, permitted
):
    """In its own process, as on a robot; refused: without the permission to use them."""
    diagnostics = graph.collect(DiagnosticArray, "/diagnostics")
    _sim(graph)
    log = tmp_path / "controller.log"
    graph.start_process(
        "rtc_ros.nodes.controller_node",
        ["--params-file", str(CONFIG), "-p", "thread_priority:=20", "-p", "cpu_affinity:=[0]"],
        log=log,
        preexec=None if permitted else without_realtime_permission,
    )
    graph.activate("/rtc_controller")

    def applied():  # the loop's report, once the loop has started (its CPUs are known then)
        statuses = _statuses(diagnostics, "rtc_controller: controller")
        values = {v.key: v.value for v in statuses[-1].values} if statuses else {}
        return values if values.get("cpu_affinity") else None

    graph.wait_for(applied, timeout_s=60, what="the controller's report of its settings")
    values = applied()
    if permitted and values["realtime_refused"] == "true":
        pytest.skip("this machine does not permit real-time settings")
    expected = (
        ("20", "SCHED_FIFO", "true", "false") if permitted else ("0", "normal", "false", "true")
    )
    reported = ("thread_priority", "scheduler", "memory_locked", "realtime_refused")
    assert tuple(values[key] for key in reported) == expected
    assert values["cpu_affinity"] == "0"  # pinning needs no permission
    graph.wait_for(lambda: "real-time settings:" in log.read_text(), what="the log line")
    text = log.read_text()
    if permitted:
        assert "SCHED_FIFO priority 20, CPUs 0, memory locked" in text
        assert "refused" not in text
    else:
        assert "normal scheduling, CPUs 0, memory not locked" in text
        assert text.count("real-time settings refused") == 1 and "limits.conf" in text


def _publish_joint_states(graph, names, stamp_offset_s=0.0):
    publisher = graph.probe.create_publisher(JointState, "joint_states", qos_profile_sensor_data)

    def publish():
        message = JointState(name=names, position=[0.1] * len(names))
        stamp = graph.probe.get_clock().now().nanoseconds * 1e-9 + stamp_offset_s
        message.header.stamp.sec, message.header.stamp.nanosec = int(stamp), int((stamp % 1) * 1e9)
        publisher.publish(message)

    return graph.probe.create_timer(0.02, publish)


def _publish_images(graph, height, width, encoding="rgb8", channels=3):
    publisher = graph.probe.create_publisher(Image, "top/image_raw", qos_profile_sensor_data)

    def publish():
        message = Image(
            height=height,
            width=width,
            encoding=encoding,
            step=width * channels,
            data=bytes(height * width * channels),
        )
        message.header.stamp = graph.probe.get_clock().now().to_msg()
        publisher.publish(message)

    return graph.probe.create_timer(0.05, publish)


def _observation_status(diagnostics):
    statuses = _statuses(diagnostics, "/rtc: observations")
    return statuses[-1] if statuses else None


@pytest.mark.parametrize(
    "height, width, encoding, reason",
    [
        (48, 48, "rgb8", "expects 3x96x96"),
        (96, 96, "16UC1", "not supported"),
    ],
)
def test_bad_images_are_rejected_with_a_warning_and_the_node_keeps_running(
    graph, policy_path, height, width, encoding, reason
):
    diagnostics = graph.collect(DiagnosticArray, "/diagnostics")
    node = _rtc(graph, policy_path)
    keep = [_publish_joint_states(graph, JOINTS), _publish_images(graph, height, width, encoding)]
    graph.wait_for(lambda: node.assembler.rejected >= 3, what="rejected images")
    assert reason in node.assembler.last_rejection
    graph.wait_for(
        lambda: (
            _observation_status(diagnostics) is not None
            and "no image yet from camera top" in _observation_status(diagnostics).message
        ),
        what="observations reported as missing the camera",
    )
    assert _observation_status(diagnostics).level == b"\x02"
    assert node.worker.report().chunks == 0 and keep


def test_missing_joints_keep_inference_waiting_and_named_in_diagnostics(graph, policy_path):
    diagnostics = graph.collect(DiagnosticArray, "/diagnostics")
    commands = graph.collect(JointTrajectory, "commands", PROBE_QOS)
    _rtc(graph, policy_path)
    keep = [_publish_joint_states(graph, JOINTS[:7]), _publish_images(graph, 96, 96)]
    graph.wait_for(
        lambda: (
            _observation_status(diagnostics) is not None
            and "right_waist" in _observation_status(diagnostics).message
        ),
        what="missing joints named",
    )
    assert _observation_status(diagnostics).level == b"\x02" and commands == [] and keep


def test_stale_joint_states_are_rejected(graph, policy_path):
    diagnostics = graph.collect(DiagnosticArray, "/diagnostics")
    commands = graph.collect(JointTrajectory, "commands", PROBE_QOS)
    _rtc(graph, policy_path)
    keep = [
        _publish_joint_states(graph, JOINTS, stamp_offset_s=-5.0),
        _publish_images(graph, 96, 96),
    ]
    graph.wait_for(
        lambda: (
            _observation_status(diagnostics) is not None
            and "s old" in _observation_status(diagnostics).message
        ),
        what="stale joint states reported",
    )
    assert commands == [] and keep


def test_invalid_parameters_are_rejected_with_a_clear_message(graph, policy_path):
    """At start-up they fail the configure transition
    (test_nodes_lifecycle.py); at run time, here.
    """
    node = _rtc(graph, policy_path, name="rtc_ok")
    assert not node.set_parameters([Parameter("beta", value=-1.0)])[0].successful
    result = node.set_parameters([Parameter("guidance", value="adjoint")])[0]
    assert not result.successful and "guidance must be one of" in result.reason
    result = node.set_parameters([Parameter("min_execution_horizon", value=60)])[0]
    assert not result.successful
    assert node.set_parameters([Parameter("guidance", value="stop_gradient")])[0].successful
    node.worker.step()  # takes the new settings, as between two chunks
    assert node.worker.generator.config.guidance is GuidanceMode.STOP_GRADIENT


def test_whole_numbers_for_floating_point_parameters_are_taken_as_floats(graph, policy_path):
    """``ros2 param set /rtc beta 2`` and a YAML ``2`` mean 2.0; a string is still refused."""
    node = _rtc(graph, policy_path, name="rtc_widen")
    assert node.set_parameters([Parameter("beta", value=2)])[0].successful
    node.worker.step()
    assert node.get_parameter("beta").value == 2.0 and node.worker.generator.config.beta == 2.0
    assert not node.set_parameters([Parameter("beta", value="two")])[0].successful
    assert not node.set_parameters([Parameter("beta", value=0)])[0].successful


TUNED = {
    "min_execution_horizon": 20,
    "num_steps": 3,
    "beta": 0.5,
    "guidance": "vjp",
    "max_observation_age_s": 0.2,
    "max_clock_skew_s": 0.2,
}
"""A new value for each tunable parameter (config/bimanual.yaml: 25, 5, 5.0, stop_gradient, 0.5,
0.1)."""
LANGUAGE_ONLY = {"task"}
"""Changes only what a language-conditioned policy is told; the reference policy here has no
language input (test_nodes_lerobot.py sets it on SmolVLA)."""


def _behaviour(node) -> tuple:
    """What the tunable parameters decide, observed through the runtime: the next guided chunk
    for a fixed observation and noise, the tick at which the next inference starts, whether a
    0.3 s old observation is used and whether a joint state stamped 0.15 s ahead is taken.
    """
    node.worker.step()  # no observation yet: only takes the new settings, as between chunks
    horizon, joints = node.params.prediction_horizon, len(node.params.joint_names)
    node.assembler.add_joint_state(
        node.params.joint_names, [0.0] * joints, stamp_s=100.0, now_s=100.0
    )
    node.assembler.add_image("top", np.zeros((3, 96, 96), np.uint8), stamp_s=100.0, now_s=100.0)
    observation = {
        k: torch.as_tensor(v) for k, v in node.assembler.assemble(now_s=100.0)[0].items()
    }
    noise = torch.randn(1, horizon, joints, generator=torch.Generator().manual_seed(0))
    previous = torch.full((1, horizon - 10, joints), 0.1)
    chunk = node.worker.generator.generate(observation, previous, 5, 10, noise=noise)
    starts_at = next(
        t
        for t in range(1, horizon)
        if node.worker.planner.ready(
            ControllerState(t, sequence=0, start_tick=0, observed_delay=0)
        )
    )
    fresh = node.assembler.assemble(now_s=100.3)[0] is not None
    try:
        node.assembler.add_joint_state(
            node.params.joint_names, [0.0] * joints, stamp_s=100.15, now_s=100.0
        )
        ahead_taken = True
    except ObservationError:
        ahead_taken = False
    return chunk, starts_at, fresh, ahead_taken


def _differs(a: tuple, b: tuple) -> bool:
    return not torch.allclose(a[0], b[0]) or a[1:] != b[1:]


def test_every_tunable_parameter_changes_behaviour(graph, policy_path):
    assert set(TUNED) | LANGUAGE_ONLY == set(parameters.tunable_names())
    for name, value in TUNED.items():
        node = _rtc(graph, policy_path, name=f"rtc_tune_{name}")
        before = _behaviour(node)
        result = node.set_parameters([Parameter(name, value=value)])[0]
        assert result.successful, result.reason
        assert _differs(_behaviour(node), before), name


def _another_value(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "_changed"
    return list(value)[:-1]


def test_every_read_only_parameter_is_refused_while_running(graph, policy_path):
    node = _rtc(graph, policy_path, name="rtc_read_only")
    read_only = [
        name for name in parameters.DECLARATIONS if name not in parameters.tunable_names()
    ]
    assert "initial_inference_delay" in read_only and "prediction_horizon" in read_only
    for name in read_only:
        value = node.get_parameter_or(name).value  # None: declared without a value
        changed = [0] if value is None else _another_value(value)
        result = node.set_parameters([Parameter(name, value=changed)])[0]
        assert not result.successful and "read-only" in result.reason, name
        assert node.get_parameter_or(name).value == value


def test_emulated_latency_pads_inference_and_is_reported(graph, policy_path):
    """Every chunk takes at least the emulated 100 ms, and status and
    diagnostics say it is emulated.
    """
    statuses = graph.collect(RtcStatus, "rtc/status")
    diagnostics = graph.collect(DiagnosticArray, "/diagnostics")
    _sim(graph)
    _rtc(graph, policy_path, params={"emulated_latency_ms": 100.0})
    graph.wait_for(
        lambda: statuses and len(statuses[-1].delay_history) >= 3,
        timeout_s=60,
        what="three chunks",
    )
    assert statuses[-1].emulated_latency_ms == 100.0
    assert statuses[-1].chunk_latency_p50_ms >= 100.0
    delay = _statuses(diagnostics, "/rtc: inference delay")[-1]
    assert "latency emulated" in delay.message
    assert {kv.key: kv.value for kv in delay.values}["emulated_latency_ms"] == "100.000"


def test_sim_episodes_draw_their_world_from_the_seed_alone_as_the_in_process_evaluation(graph):
    from std_msgs.msg import Empty

    from rtc_ros.nodes.sim_node import SimNode
    from rtc_ros.sim.bimanual import BimanualSim, episode_rng

    sim = graph.add(
        SimNode(context=graph.context, parameter_overrides=[Parameter("seed", value=3)])
    )
    first = BimanualSim(BimanualConfig(), episode_rng(3, 0)).target_positions()
    np.testing.assert_array_equal(sim.sim.target_positions(), first)
    reset = graph.probe.create_publisher(Empty, "bimanual_sim/reset", 10)
    for episode in (2, 3):
        graph.wait_for(lambda: reset.get_subscription_count() > 0, what="the reset subscriber")
        reset.publish(Empty())
        graph.wait_for(lambda: sim.episode == episode, what=f"episode {episode}")
    third = BimanualSim(BimanualConfig(), episode_rng(3, 2)).target_positions()
    np.testing.assert_array_equal(sim.sim.target_positions(), third)
    assert not np.array_equal(third, first)
