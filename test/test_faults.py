"""Fault injection on real processes over real DDS: kill -9, restarts, bad stamps, bad arguments.

Each test runs the nodes as a robot runs them (processes of their own on a private domain),
injects one fault, and checks what the robot receives on ``commands`` and what an operator
sees on /diagnostics. The launch tests at the end need ROS 2's launch and ``ros2`` and skip
without them.
"""

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")
pytest.importorskip("rtc_ros.msg", reason="rtc_ros messages are not built (run scripts/setup.sh)")

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from rclpy.time import Time  # noqa: E402
from ros_graph import CONFIG, LifecycleClient, RosGraph, config_overrides  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from test_launch_support import skip_without_launch_testing, small_policy_checkpoint  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from rtc_ros.bench.soak import descendants, process_label, process_usage  # noqa: E402
from rtc_ros.msg import ControllerTick  # noqa: E402
from rtc_ros.nodes.controller_links import CHUNK_QOS  # noqa: E402
from rtc_ros.nodes.inference_node import InferenceNode  # noqa: E402
from rtc_ros.nodes.parameters import ControllerPlacement  # noqa: E402

PROBE_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
_VALUES = yaml.safe_load(CONFIG.read_text())["/**"]["ros__parameters"]
JOINTS = list(_VALUES["joint_names"])
MAX_STEP = np.asarray(_VALUES["max_velocity"]) / _VALUES["control_rate_hz"]
SENSOR_MARGIN = 0.005
"""rad: the simulator's position noise (std 0.001 rad) and servo settling between a joint state
and the command compared with it."""


@pytest.fixture(scope="module")
def policy_path():
    return small_policy_checkpoint()


@pytest.fixture
def graph():
    ros = RosGraph()
    yield ros
    ros.close()


class Robot:
    """What the robot receives and measures, and what /diagnostics says, with receive times."""

    def __init__(self, graph: RosGraph) -> None:
        self.commands: list[tuple[float, np.ndarray]] = []
        self.joint_states: list[tuple[float, np.ndarray]] = []
        self.diagnostics: list[tuple[float, DiagnosticStatus]] = []
        graph.probe.create_subscription(
            JointTrajectory,
            "commands",
            lambda m: self.commands.append((time.monotonic(), np.array(m.points[0].positions))),
            PROBE_QOS,
        )
        graph.probe.create_subscription(
            JointState, "joint_states", self._on_joint_state, qos_profile_sensor_data
        )
        graph.probe.create_subscription(
            DiagnosticArray,
            "/diagnostics",
            lambda m: self.diagnostics.extend((time.monotonic(), s) for s in m.status),
            100,
        )

    def _on_joint_state(self, message) -> None:
        by_name = dict(zip(message.name, message.position))
        if all(n in by_name for n in JOINTS):
            self.joint_states.append((time.monotonic(), np.array([by_name[n] for n in JOINTS])))

    def wait_for_error(self, name: str, text: str, after: float, what: str) -> None:
        """An ERROR of status ``name`` saying ``text`` on /diagnostics, within 5 s of ``after``."""
        RosGraph.wait_for(
            lambda: any(
                s.level == DiagnosticStatus.ERROR and text in s.message
                for s in self.status(name, after=after)
            ),
            timeout_s=5,
            what=what,
        )

    def status(self, name: str, after: float = 0.0) -> list[DiagnosticStatus]:
        return [s for t, s in self.diagnostics if t >= after and s.name == name]

    def first_command_offset(self, after: float = 0.0) -> np.ndarray:
        """First command received after ``after`` minus the joint state measured just before it."""
        received, command = next((t, c) for t, c in self.commands if t >= after)
        measured = [p for t, p in self.joint_states if t <= received][-1]
        return np.abs(command - measured)

    def steps(self, after: float = 0.0) -> np.ndarray:
        commands = np.array([c for t, c in self.commands if t >= after])
        return np.abs(np.diff(commands, axis=0))


def _sim(graph):
    return graph.start_process("rtc_ros.nodes.sim_node", ["--params-file", str(CONFIG)])


def _rtc_node(graph, policy_path, *arguments, log=None):
    """rtc_node in a process of its own, brought to active through its lifecycle services."""
    process = graph.start_process(
        "rtc_ros.nodes.rtc_node",
        ["--params-file", str(CONFIG), "-p", f"policy:={policy_path}", *arguments],
        log=log,
    )
    graph.activate("/rtc")
    return process


def _control_process(rtc: subprocess.Popen) -> int:
    RosGraph.wait_for(
        lambda: any(process_label(pid, "") == "rtc_control" for pid in descendants(rtc.pid)),
        what="rtc_node's control process",
    )
    return next(pid for pid in descendants(rtc.pid) if process_label(pid, "") == "rtc_control")


def _shared_memory(pids) -> set[str]:
    """The handover segments and semaphores the processes map. Fast DDS's own segments are left
    out: a participant killed with -9 cannot remove its segment, and Fast DDS reclaims it.
    """
    return {
        path
        for pid in pids
        for path in (process_usage(pid) or {"shm": []})["shm"]
        if not os.path.basename(path).startswith("fastdds_")
    }


def _gone(pid: int) -> bool:
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def _quiet_for(robot: Robot, seconds: float) -> bool:
    """No command received during ``seconds`` from now."""
    count = len(robot.commands)
    time.sleep(seconds)
    return len(robot.commands) == count


def test_killing_the_control_process_is_an_error_on_diagnostics_and_rtc_node_exits_non_zero(
    graph, policy_path, tmp_path
):
    robot = Robot(graph)
    _sim(graph)
    rtc = _rtc_node(graph, policy_path, log=tmp_path / "rtc_node.log")
    graph.wait_for(lambda: len(robot.commands) >= 50, timeout_s=120, what="50 commands")
    control = _control_process(rtc)
    shared = _shared_memory([control])
    assert shared
    os.kill(control, signal.SIGKILL)
    killed = time.monotonic()
    robot.wait_for_error(
        "/rtc: controller",
        "control process",
        after=killed,
        what="the dead control process reported as ERROR",
    )
    assert rtc.wait(timeout=15) == 1
    assert "exited with code -9" in (tmp_path / "rtc_node.log").read_text()
    assert _quiet_for(robot, 0.5)
    graph.wait_for(
        lambda: not any(os.path.exists(p) for p in shared),
        timeout_s=5,
        what="shared memory removed",
    )


def test_killing_rtc_node_stops_its_control_process_and_a_restart_commands_alone_within_limits(
    graph, policy_path
):
    robot = Robot(graph)
    _sim(graph)
    rtc = _rtc_node(graph, policy_path)
    graph.wait_for(lambda: len(robot.commands) >= 50, timeout_s=120, what="50 commands")
    assert np.all(robot.first_command_offset() <= MAX_STEP + SENSOR_MARGIN)
    control = _control_process(rtc)
    shared = _shared_memory([rtc.pid, control])
    rtc.kill()
    graph.wait_for(
        lambda: _gone(control), timeout_s=15, what="the orphaned control process to stop"
    )
    graph.wait_for(lambda: _quiet_for(robot, 0.5), timeout_s=5, what="commands to stop")
    graph.wait_for(
        lambda: not any(os.path.exists(p) for p in shared),
        timeout_s=5,
        what="shared memory removed",
    )

    restarted = time.monotonic()
    _rtc_node(graph, policy_path)
    graph.wait_for(
        lambda: sum(t >= restarted for t, _ in robot.commands) >= 100,
        timeout_s=120,
        what="100 commands after the restart",
    )
    assert len(graph.probe.get_publishers_info_by_topic("/commands")) == 1
    assert np.all(robot.first_command_offset(after=restarted) <= MAX_STEP + SENSOR_MARGIN)
    assert np.all(robot.steps(after=restarted) <= MAX_STEP + 1e-9)


def _publish_observations(graph, node):
    """Joint states and images as a robot publishes them: (timers, senders), by source."""
    joints = graph.probe.create_publisher(JointState, "joint_states", qos_profile_sensor_data)
    images = graph.probe.create_publisher(Image, "top/image_raw", qos_profile_sensor_data)

    def joint_state(offset_s=0.0):
        message = JointState(name=JOINTS, position=[0.1] * len(JOINTS))
        message.header.stamp = _stamp(graph, offset_s)
        return message

    def image(offset_s=0.0):
        message = Image(height=96, width=96, encoding="rgb8", step=288, data=bytes(96 * 96 * 3))
        message.header.stamp = _stamp(graph, offset_s)
        return message

    timers = {
        "joint state": graph.probe.create_timer(0.02, lambda: joints.publish(joint_state())),
        "image": graph.probe.create_timer(0.05, lambda: images.publish(image())),
    }
    send = {
        "joint state": lambda offset_s: joints.publish(joint_state(offset_s)),
        "image": lambda offset_s: images.publish(image(offset_s)),
    }
    return timers, send


def _stamp(graph, offset_s):
    return Time(
        nanoseconds=graph.probe.get_clock().now().nanoseconds + int(offset_s * 1e9)
    ).to_msg()


@pytest.mark.parametrize("source", ["image", "joint state"])
@pytest.mark.parametrize("offset_s", [3600.0, -3600.0])
def test_a_sensor_that_stops_after_a_future_or_past_stamp_stops_inference_and_is_reported(
    graph, policy_path, source, offset_s
):
    robot = Robot(graph)
    overrides = config_overrides(policy=policy_path)
    node = graph.add_active(
        InferenceNode(
            "rtc",
            placement=ControllerPlacement.THREAD,
            context=graph.context,
            parameter_overrides=overrides,
        )
    )
    timers, send = _publish_observations(graph, node)
    graph.wait_for(lambda: node.worker.report().chunks >= 2, timeout_s=60, what="two chunks")
    timers[source].cancel()
    rejected = node.assembler.rejected
    send[source](offset_s)
    stopped = time.monotonic()
    robot.wait_for_error(
        "/rtc: observations", "s old", after=stopped, what="the stopped sensor reported as stale"
    )
    if offset_s > 0:
        assert (
            node.assembler.rejected == rejected + 1
            and "in the future" in node.assembler.last_rejection
        )
    chunks = node.worker.report().chunks
    time.sleep(1.0)
    assert node.worker.report().chunks == chunks


def test_a_restarted_controller_node_rejects_the_old_runs_chunk_and_executes_fresh_ones(
    graph, policy_path
):
    robot = Robot(graph)
    ticks = graph.collect(ControllerTick, "controller_tick", CHUNK_QOS)
    _sim(graph)
    graph.start_process(
        "rtc_ros.nodes.inference_node",
        ["--params-file", str(CONFIG), "-p", f"policy:={policy_path}"],
    )
    controller = graph.start_process(
        "rtc_ros.nodes.controller_node", ["--params-file", str(CONFIG)]
    )
    graph.activate("/rtc_inference")
    graph.activate("/rtc_controller")
    graph.wait_for(lambda: len(robot.commands) >= 50, timeout_s=120, what="50 commands")
    old_run = ticks[-1].run_id
    controller.kill()
    killed = time.monotonic()
    robot.wait_for_error(
        "/rtc_inference: controller",
        "controller lost",
        after=killed,
        what="the lost controller reported by the inference node",
    )

    restarted = time.monotonic()
    graph.start_process("rtc_ros.nodes.controller_node", ["--params-file", str(CONFIG)])
    graph.activate("/rtc_controller")
    graph.wait_for(
        lambda: sum(t >= restarted for t, _ in robot.commands) >= 50,
        timeout_s=60,
        what="commands from the restarted controller",
    )
    new_run = ticks[-1].run_id
    assert new_run != old_run
    # The old run's last chunk (redelivered by transient-local QoS) never runs on the new clock:
    # every chunk the new run executes came after the last one the old run executed.
    old_last = max(t.chunk_sequence for t in ticks if t.run_id == old_run)
    assert (
        min(t.chunk_sequence for t in ticks if t.run_id == new_run and t.chunk_sequence > 0)
        > old_last
    )
    assert np.all(robot.first_command_offset(after=restarted) <= MAX_STEP + SENSOR_MARGIN)
    assert np.all(robot.steps(after=restarted) <= MAX_STEP + 1e-9)


def _run_node(module, *arguments, timeout_s=60):
    return subprocess.run(
        [sys.executable, "-m", module, *arguments],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=dict(os.environ, ROS_DOMAIN_ID="121"),
    )


def test_a_missing_parameter_file_is_an_error_naming_it(tmp_path):
    missing = tmp_path / "robot.yaml"
    result = _run_node("rtc_ros.nodes.rtc_node", "--ros-args", "--params-file", str(missing))
    assert result.returncode != 0
    assert str(missing) in result.stdout + result.stderr and "Traceback" not in result.stderr


def test_a_bad_parameter_fails_configure_with_one_clear_line(graph, tmp_path):
    log = tmp_path / "rtc_node.log"
    graph.start_process(
        "rtc_ros.nodes.rtc_node", ["--params-file", str(CONFIG), "-p", "device:=gpu9"], log=log
    )
    rtc = LifecycleClient(graph.probe, "/rtc")
    assert not rtc.change("configure") and rtc.state() == "unconfigured"
    text = log.read_text()
    assert "device must be cpu, cuda or cuda:N, got 'gpu9'" in text and "Traceback" not in text


@pytest.mark.parametrize("module", ["rtc_node", "inference_node", "controller_node", "sim_node"])
def test_help_prints_usage_and_starts_no_node(module):
    result = _run_node(f"rtc_ros.nodes.{module}", "--help", timeout_s=180)
    assert result.returncode == 0 and "--ros-args" in result.stdout and result.stderr == ""


# -- launch ----------------------------------------------------------------------------------


def _ros2():
    skip_without_launch_testing()
    ros2 = shutil.which("ros2", path=os.path.dirname(sys.executable)) or shutil.which("ros2")
    if ros2 is None:
        pytest.skip(
            "the ros2 command line is not installed "
            "(it comes with ROS 2, not with scripts/setup.sh)"
        )
    return ros2


def _launch(arguments, domain_id):
    return subprocess.Popen(
        [_ros2(), "launch", "rtc_ros", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, ROS_DOMAIN_ID=str(domain_id), PYTHONUNBUFFERED="1"),
    )


@pytest.mark.parametrize(
    "arguments, reason",
    [
        (["sim_demo.launch.py", "split:=maybe"], "split"),
        (["sim_demo.launch.py", "config:=/nonexistent/robot.yaml"], "/nonexistent/robot.yaml"),
        (["sim_demo.launch.py", "device:=gpu9"], "device must be cpu"),
        (["robot.launch.py", "controller:=bogus"], "controller"),
        (["robot.launch.py", "on_failure:=ignore"], "on_failure"),
    ],
)
def test_bad_launch_arguments_are_refused_before_any_node_starts(arguments, reason):
    launch = _launch(arguments, 122)
    output, _ = launch.communicate(timeout=60)
    assert launch.returncode != 0, output
    assert reason in output and "process started" not in output, output


def _stop(launch: subprocess.Popen) -> str:
    if launch.poll() is None:
        launch.send_signal(signal.SIGINT)
    return launch.communicate(timeout=60)[0]


def _launch_until_commands(graph, arguments, policy_path):
    robot = Robot(graph)
    launch = _launch(["sim_demo.launch.py", f"policy:={policy_path}", *arguments], graph.domain_id)
    try:
        graph.wait_for(
            lambda: len(robot.commands) >= 50 or launch.poll() is not None,
            timeout_s=180,
            what="50 commands from the launched system",
        )
    except AssertionError:
        raise AssertionError(_stop(launch)) from None
    assert launch.poll() is None, _stop(launch)
    return robot, launch


def _node_pid(launch_pid: int, executable: str) -> int:
    for pid in descendants(launch_pid):
        try:
            command = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except FileNotFoundError:
            continue
        if f"/{executable}\0" in command or command.endswith(f"/{executable}"):
            return pid
    raise AssertionError(f"no {executable} process under launch")


def test_launch_shuts_down_with_an_error_when_rtc_node_is_killed(graph, policy_path):
    robot, launch = _launch_until_commands(graph, [], policy_path)
    try:
        os.kill(_node_pid(launch.pid, "rtc_node"), signal.SIGKILL)
        launch.wait(timeout=60)
    finally:
        output = _stop(launch)
    assert launch.returncode != 0 and "rtc_node-2 exited with code -9: shutting down" in output, (
        output
    )
    assert "sim_node-1]: process has finished cleanly" in output, output
    # One failure, one shutdown: the simulator's clean exit does not shut launch down again.
    assert output.count("Caught exception in launch") == 1, output
    assert _quiet_for(robot, 0.5)


def test_launch_respawns_a_killed_rtc_node_when_asked_to(graph, policy_path):
    robot, launch = _launch_until_commands(
        graph, ["on_failure:=respawn", "respawn_delay:=0.5"], policy_path
    )
    try:
        os.kill(_node_pid(launch.pid, "rtc_node"), signal.SIGKILL)
        killed = time.monotonic()
        graph.wait_for(
            lambda: sum(t > killed + 1.0 for t, _ in robot.commands) >= 50,
            timeout_s=120,
            what="commands from the respawned rtc_node",
        )
        assert launch.poll() is None
    finally:
        _stop(launch)
    assert np.all(robot.first_command_offset(after=killed + 1.0) <= MAX_STEP + SENSOR_MARGIN)


def test_sim_demo_runs_the_control_loop_where_controller_says(graph, policy_path):
    _, launch = _launch_until_commands(graph, ["controller:=thread"], policy_path)
    try:
        nodes = {name for name, _ in graph.probe.get_node_names_and_namespaces()}
    finally:
        _stop(launch)
    assert "rtc" in nodes and "rtc_control" not in nodes
