"""The simulated bimanual demo: the whole system on real ROS 2, ended by a summary and a plot.

    .venv/bin/python -m rtc_ros.demo --episodes 30 --output demo_out

starts ``sim_node`` (the simulated robot) and ``rtc_node`` (inference + 50 Hz controller) as
separate processes on a private ROS domain, and configures and activates ``rtc`` through its
lifecycle services as a supervisor would. Every inference is padded to 100 ms
(``--emulated-latency-ms``), so that RTC works under a VLA's delay (d = 5 ticks) on any machine.
A monitor node runs the episodes as an evaluation harness on a robot would: when an episode
ends (both cubes grasped, or the 6 s limit) it holds the controller (``rtc/hold``), resets the
robot (``bimanual_sim/reset``) and releases the hold; the controller then starts the new episode
from a fresh chunk. It stops after ``--episodes`` episodes (or ``--duration`` seconds), stops
the nodes with Ctrl-C as a launch would, and writes DIR/summary.json, DIR/joints.png (one
arm's joint position, velocity and acceleration with the chunk seams marked) and DIR/delays.png
(each chunk's delay and latency); with ``--record``, DIR/run.mcap, a bag of the run written by
the recorder node in its own process. Exits non-zero if the system failed: a node crashed, no
chunk was executed, or nothing was commanded.

    .venv/bin/python -m rtc_ros.demo --compare sync,naive_async,rtc_soft --episodes 10 --output DIR

runs each method through the same ROS path in turn and writes DIR/compare.json and
DIR/compare.png (one joint's position, velocity and acceleration around several seams, a row
per method, as in the paper's Fig. 1), with each method's own run in DIR/<method>/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np

CONFIG = pathlib.Path(__file__).resolve().parent.parent / "config" / "bimanual.yaml"
PLOTTED_ARM = "left"
COMPARED_JOINT = "left_shoulder"
_ARM_JOINTS = slice(0, 6), slice(7, 13)

_NO_NEW_EPISODE = (
    "the controller did not hold, or the simulator did not start a new episode, within 10 s"
)


def config_path() -> pathlib.Path:
    """The source tree's config, else the installed share/rtc_ros/config."""
    if CONFIG.is_file():
        return CONFIG
    return pathlib.Path(sys.prefix) / "share" / "rtc_ros" / "config" / "bimanual.yaml"


def start_node_process(
    module: str, ros_args: list[str], log: pathlib.Path, env: dict
) -> subprocess.Popen:
    # SIGINT must reach the node (a background child of a script starts with it ignored).
    return subprocess.Popen(
        [sys.executable, "-m", module, "--ros-args", *ros_args],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


DEFAULT_EMULATED_LATENCY_MS = 100.0
"""Every inference padded to this: d = 5 ticks at 50 Hz, the paper's real robot."""


@dataclasses.dataclass
class EpisodeRecord:
    episode: int
    success: bool
    duration_s: float
    """Simulated time from the reset to the end (success or time limit)."""
    started: float
    """Monitor clock when the hold was released."""
    ended: float


class Monitor:
    """A plain rclpy node recording what a person would watch with ros2 topic echo, and the
    evaluation harness: it holds the controller and resets the robot between episodes.
    """

    def __init__(self, context) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.node import Node
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Bool, Empty
        from trajectory_msgs.msg import JointTrajectory

        from rtc_ros.msg import ActionChunk, Episode, RtcStatus
        from rtc_ros.nodes.controller_links import CHUNK_QOS
        from rtc_ros.nodes.sim_node import EPISODE_QOS

        self._bool, self._empty = Bool, Empty
        self.node = Node("rtc_demo_monitor", context=context)
        self.joint_states: list[tuple[float, float, list[str], np.ndarray]] = []
        """(received, header stamp, names, positions)"""
        self.commands: list[tuple[float, float, np.ndarray]] = []
        """(received: monotonic, received: wall clock, positions). A JointTrajectory command's
        stamp is zero ("start now"), so its wall-clock arrival stands in for when it was sent
        (a millisecond later on one machine)."""
        self.chunks: list[tuple[float, object]] = []
        self.status = None
        self.statuses_since_hold: list = []
        self.episodes: list = []
        """Every rtc_ros/Episode message of the simulator, in order."""
        self.task: dict[str, str] = {}
        self.controller: dict[str, str] = {}
        self.observations: dict[str, str] = {}
        self.inference: dict[str, str] = {}
        now = time.monotonic
        every_message = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(
            JointState,
            "joint_states",
            lambda m: self.joint_states.append(
                (now(), _stamp_s(m.header), list(m.name), np.array(m.position))
            ),
            qos_profile_sensor_data,
        )
        self.node.create_subscription(
            JointTrajectory,
            "commands",
            lambda m: self.commands.append((now(), time.time(), np.array(m.points[0].positions))),
            every_message,
        )
        self.node.create_subscription(
            ActionChunk, "rtc/chunks", lambda m: self.chunks.append((now(), m)), CHUNK_QOS
        )
        self.node.create_subscription(RtcStatus, "rtc/status", self._on_status, 10)
        self.node.create_subscription(
            Episode, "bimanual_sim/episode", self._on_episode, EPISODE_QOS
        )
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self._hold = self.node.create_publisher(Bool, "rtc/hold", CHUNK_QOS)
        self._reset = self.node.create_publisher(Empty, "bimanual_sim/reset", 10)

    def _on_status(self, message) -> None:
        self.status = message
        self.statuses_since_hold.append(message)

    def _on_episode(self, message) -> None:
        self.episodes.append(message)

    def _on_diagnostics(self, message) -> None:
        for status in message.status:
            values = {kv.key: kv.value for kv in status.values}
            if status.name.endswith(": task"):
                self.task = values
            elif status.name.endswith("rtc: controller"):
                self.controller = values
            elif status.name.endswith("rtc: observations"):
                self.observations = values
            elif status.name.endswith("rtc: inference delay"):
                self.inference = values

    def hold(self, holding: bool) -> None:
        self._hold.publish(self._bool(data=holding))

    def reset_robot(self) -> None:
        self._reset.publish(self._empty())


def bring_up(node, executor, target: str, deadline: float) -> str:
    """Configure and activate the managed node ``target`` as a
    supervisor would: "" or what failed.
    """
    from lifecycle_msgs.srv import ChangeState

    client = node.create_client(ChangeState, f"{target}/change_state")
    try:
        while not client.service_is_ready():
            if time.monotonic() > deadline:
                return f"{target} offered no lifecycle service within the start-up timeout"
            executor.spin_once(timeout_sec=0.1)
        for transition in ("configure", "activate"):
            request = ChangeState.Request()
            request.transition.label = transition
            future = client.call_async(request)
            executor.spin_until_future_complete(
                future, timeout_sec=max(deadline - time.monotonic(), 0.1)
            )
            if not (future.done() and future.result().success):
                return f"{target} failed to {transition} (see its log)"
        return ""
    finally:
        node.destroy_client(client)


def _stamp_s(header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


class Harness:
    """Spins the monitor and runs episodes. With ``hold_resets`` it holds the controller, resets
    the robot and releases the hold between episodes, as on a robot; without, the simulator
    resets itself while the controller runs on (a robot without reset handling).
    """

    def __init__(
        self, monitor: Monitor, executor, nodes: dict[str, subprocess.Popen], hold_resets: bool
    ) -> None:
        self.monitor, self._executor, self._nodes = monitor, executor, nodes
        self.hold_resets = hold_resets
        self.episodes: list[EpisodeRecord] = []
        self.holds: list[tuple[float, float]] = []
        """(hold sent, hold released) on the monitor clock."""
        self.resets_wall: list[tuple[float, float]] = []
        """(controller confirmed the hold, hold released) in wall-clock time, the clock of the
        commands' arrivals: no command may arrive in between."""
        self._started = 0.0
        self._seen = 0
        self.episodes_before_first_command = 0

    def alive(self) -> bool:
        return all(p.poll() is None for p in self._nodes.values())

    def spin_until(self, predicate, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline or not self.alive():
                return False
            self._executor.spin_once(timeout_sec=0.01)
        return True

    def new_episode(self) -> bool:
        """Hold the controller, reset the robot, release: the next
        episode starts from a fresh chunk.
        """
        monitor = self.monitor
        held = time.monotonic()
        monitor.statuses_since_hold = []
        monitor.hold(True)
        # The robot is reset once the controller says it holds: from then on it commands nothing.
        if not self.spin_until(
            lambda: any(status.holding for status in monitor.statuses_since_hold), 10.0
        ):
            return False
        confirmed_wall = time.time()
        previous = monitor.episodes[-1].episode
        monitor.reset_robot()
        if not self.spin_until(
            lambda: monitor.episodes[-1].episode > previous and monitor.episodes[-1].running, 10.0
        ):
            return False
        self.resets_wall.append((confirmed_wall, time.time()))
        monitor.hold(False)
        self._started = time.monotonic()
        self.holds.append((held, self._started))
        return True

    def run(self, episodes: int, duration_s: float) -> str:
        """Episodes until ``episodes`` ended (or ``duration_s``
        passed when 0); a failure, or "".
        """
        monitor = self.monitor
        if self.hold_resets and not self.new_episode():
            return _NO_NEW_EPISODE
        # The simulator ran episodes on its own while rtc_node was starting: none of them is
        # counted.
        self.episodes_before_first_command = monitor.episodes[-1].episodes_completed
        # Counted: the episodes that start from here (a reset by the harness, or the simulator's
        # next).
        first = monitor.episodes[-1].episode + (0 if self.hold_resets else 1)
        self._seen = len(monitor.episodes)
        self._started = time.monotonic()
        deadline = time.monotonic() + (duration_s if episodes == 0 else episodes * 60.0)
        while (
            self.alive()
            and time.monotonic() < deadline
            and (episodes == 0 or len(self.episodes) < episodes)
        ):
            self._executor.spin_once(timeout_sec=0.01)
            for message in monitor.episodes[self._seen :]:
                self._seen += 1
                if message.running:
                    self._started = time.monotonic()
                    continue
                if message.episode < first:
                    continue
                self.episodes.append(
                    EpisodeRecord(
                        message.episode,
                        bool(message.success),
                        float(message.time_s),
                        self._started,
                        time.monotonic(),
                    )
                )
                print(
                    f"episode {len(self.episodes)}: {'success' if message.success else 'failure'} "
                    f"after {message.time_s:.2f} s",
                    flush=True,
                )
                if self.hold_resets and (episodes == 0 or len(self.episodes) < episodes):
                    if not self.new_episode():
                        return _NO_NEW_EPISODE
                    self._seen = len(monitor.episodes)
                break
        if episodes and len(self.episodes) < episodes and self.alive():
            return f"only {len(self.episodes)} of {episodes} episodes ended in {episodes * 60} s"
        return ""


def _in_holds(times: np.ndarray, holds: list[tuple[float, float]]) -> np.ndarray:
    inside = np.zeros(len(times), dtype=bool)
    for held, released in holds:
        inside |= (times >= held) & (times < released)
    return inside


def _seam_indices(monitor: Monitor) -> tuple[np.ndarray, np.ndarray]:
    """Command indices where a chunk swap happened (guided chunks)
    and where a fresh chunk started.
    """
    stamps = np.array([s for _, s, _ in monitor.commands])
    seams, fresh = [], []
    for _, chunk in monitor.chunks:
        index = int(np.searchsorted(stamps, _stamp_s(chunk.header)))
        (fresh if chunk.execution_horizon == 0 else seams).append(index)
    return np.unique(np.array(seams, dtype=int)), np.unique(np.array(fresh, dtype=int))


def _frozen_prefix_mismatch(monitor: Monitor) -> list[float]:
    """Per guided chunk: largest gap between its first d actions and the previous chunk's
    actions it replaces; a fresh chunk (the first after a reset) replaces none and is left out.
    """
    mismatches = []
    for (_, old), (_, new) in zip(monitor.chunks, monitor.chunks[1:]):
        s, d = new.execution_horizon, max(int(new.inference_delay), 1)
        if s == 0 or s + d > old.prediction_horizon:
            continue
        old_actions = np.array(old.actions).reshape(old.prediction_horizon, old.action_dim)
        new_actions = np.array(new.actions).reshape(new.prediction_horizon, new.action_dim)
        mismatches.append(float(np.abs(new_actions[:d] - old_actions[s : s + d]).max()))
    return mismatches


def _mean_jerk(monitor: Monitor, holds: list[tuple[float, float]], period_s: float) -> float:
    """Mean |d^3 command / dt^3| of the arm joints over ticks inside episodes (rad/s^3)."""
    if len(monitor.commands) < 4:
        return float("nan")
    received = np.array([t for t, _, _ in monitor.commands])
    commands = np.array([c for _, _, c in monitor.commands])
    arm = np.concatenate([commands[:, joints] for joints in _ARM_JOINTS], axis=1)
    jerk = np.abs(np.diff(arm, n=3, axis=0)).max(axis=1) / period_s**3
    # A third difference spans four commands: all of them inside one episode.
    episode_start = np.concatenate(
        [[0], np.flatnonzero(np.diff(_in_holds(received, holds).astype(int)) == -1) + 1]
    )
    valid = np.ones(len(jerk), dtype=bool)
    for start in episode_start:
        valid[max(start - 3, 0) : start] = False
    valid &= ~_in_holds(received[3:], holds) & ~_in_holds(received[:-3], holds)
    return float(jerk[valid].mean()) if valid.any() else float("nan")


def _float(values: dict[str, str], key: str) -> float | None:
    value = values.get(key)
    return None if value in (None, "nan") else float(value)


def _summary(
    args, method: str, monitor: Monitor, harness: Harness, failure: str, exit_codes: dict
) -> dict:
    summary = {
        "ok": not failure,
        "failure": failure,
        "exit_codes": exit_codes,
        "method": method,
        "guidance": args.guidance,
        "controller": args.controller,
        "emulated_latency_ms": args.emulated_latency_ms,
        "reset_handling": args.reset_handling,
        "episodes_completed": len(harness.episodes),
        "episodes_succeeded": sum(e.success for e in harness.episodes),
        "simulator_episodes_before_first_command": harness.episodes_before_first_command,
    }
    if harness.episodes:
        summary["success_rate"] = summary["episodes_succeeded"] / summary["episodes_completed"]
        summary["episodes"] = [
            {"episode": e.episode, "success": e.success, "duration_s": e.duration_s}
            for e in harness.episodes
        ]
    if monitor.commands:
        received = np.array([t for t, _, _ in monitor.commands])
        summary["commands_received"] = len(received)
        summary["command_rate_hz"] = float(
            (len(received) - 1) / max(received[-1] - received[0], 1e-9)
        )
        # At this subscriber, in this process: what a robot's controller would see, plus the
        # monitor's own scheduling. Gaps across a hold (a reset) are not commanding gaps.
        across_hold = np.zeros(max(len(received) - 1, 0), dtype=bool)
        for held, released in harness.holds:
            across_hold |= (received[:-1] < released) & (received[1:] > held)
        gaps_ms = np.diff(received)[~across_hold] * 1e3
        summary["command_interarrival_ms"] = {
            "p50": float(np.percentile(gaps_ms, 50)) if len(gaps_ms) else None,
            "p99": float(np.percentile(gaps_ms, 99)) if len(gaps_ms) else None,
            "max": float(gaps_ms.max()) if len(gaps_ms) else None,
        }
        stamps = np.array([arrived for _, arrived, _ in monitor.commands])
        summary["commands_sent_during_resets"] = int(_in_holds(stamps, harness.resets_wall).sum())
    status = monitor.status
    if status is not None:
        summary.update(
            {
                "commands_published": int(status.commands_published),
                "swaps": int(status.swaps),
                "underruns": int(status.underruns),
                "delays": list(status.delay_history),
                "inference_delay_estimate": int(status.inference_delay_estimate),
                "execution_horizon": int(status.execution_horizon),
                "controller_period_error_ms": {
                    "p50": status.controller_period_error_p50_ms,
                    "p99": status.controller_period_error_p99_ms,
                    "max": status.controller_period_error_max_ms,
                },
                "chunk_latency_ms": {
                    "p50": status.chunk_latency_p50_ms,
                    "p95": status.chunk_latency_p95_ms,
                    "max": status.chunk_latency_max_ms,
                },
                "rejected_observations": int(status.rejected_observations),
                "device": status.device,
            }
        )
    guided = [c for _, c in monitor.chunks if c.execution_horizon > 0]
    summary["fresh_chunks"] = len(monitor.chunks) - len(guided)
    summary["observed_delays"] = (
        sorted({int(d) for d in status.delay_history}) if status is not None else []
    )
    summary["chunk_inference_delays"] = sorted({int(c.inference_delay) for c in guided})
    mismatches = _frozen_prefix_mismatch(monitor)
    controller = monitor.controller
    summary["seam_continuity"] = {
        "command_step_at_seams_p50_rad": _float(controller, "seam_step_p50_rad"),
        "command_step_at_seams_max_rad": _float(controller, "seam_step_max_rad"),
        "command_step_inside_chunks_p50_rad": _float(controller, "in_chunk_step_p50_rad"),
        "frozen_prefix_mismatch_max_rad": max(mismatches) if mismatches else None,
        "frozen_prefix_mismatch_p50_rad": float(np.median(mismatches)) if mismatches else None,
        "mean_jerk_rad_s3": _mean_jerk(monitor, harness.holds, 0.02),
    }
    summary["paused_ticks"] = (
        int(controller["paused_ticks"]) if "paused_ticks" in controller else None
    )
    for key, values in (
        ("clamped_commands", controller),
        ("actions_clipped_to_limits", monitor.inference),
    ):
        summary[key] = int(values[key]) if key in values else None
    summary["observation_age_ms"] = {
        "p50": _float(monitor.observations, "observation_age_p50_ms"),
        "max": _float(monitor.observations, "observation_age_max_ms"),
    }
    summary["task"] = monitor.task
    return summary


def _plot(monitor: Monitor, harness: Harness, output: pathlib.Path, start: float) -> None:
    """joints.png and delays.png, drawn as ``python -m rtc_ros.plot`` draws them from a bag."""
    from rtc_ros.plots import plot_delays, plot_joints

    times = np.array([t for t, _, _, _ in monitor.joint_states])
    plot_joints(
        times - start,
        # Derivatives over the robot's own stamps: the monitor receives samples in bursts when
        # it is late, and a burst over receive times would draw as a velocity spike.
        np.array([s for _, s, _, _ in monitor.joint_states]),
        monitor.joint_states[0][2],
        np.array([p for _, _, _, p in monitor.joint_states]),
        [t - start for t, chunk in monitor.chunks if chunk.execution_horizon > 0],
        [(held - start, released - start) for held, released in harness.holds],
        PLOTTED_ARM,
        output / "joints.png",
    )
    chunks = [chunk for _, chunk in monitor.chunks]
    plot_delays(
        np.array([t for t, _ in monitor.chunks]) - start,
        np.array([c.inference_delay for c in chunks]),
        np.array([c.execution_horizon for c in chunks]),
        np.array([c.latency_ms for c in chunks]),
        0.02,
        output / "delays.png",
    )


def run(args, method: str, output: pathlib.Path) -> tuple[dict, Monitor, Harness]:
    """Start the robot and rtc_node with ``method``, run the episodes, stop; the summary."""
    import rclpy

    output.mkdir(parents=True, exist_ok=True)
    domain = 100 + os.getpid() % 100
    env = dict(
        os.environ,
        ROS_DOMAIN_ID=str(domain),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        PYTHONUNBUFFERED="1",
    )
    os.environ.update(ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    config = str(config_path())
    rtc_parameters = {
        "controller": args.controller,
        "guidance": args.guidance,
        "device": args.device,
        "method": method,
        "emulated_latency_ms": float(args.emulated_latency_ms),
    }
    if args.policy:
        rtc_parameters["policy"] = args.policy
    if args.task:
        rtc_parameters["task"] = args.task
    nodes = {
        "sim_node": start_node_process(
            "rtc_ros.nodes.sim_node",
            [
                "--params-file",
                config,
                "-p",
                f"reset_on_episode_end:={str(args.reset_handling == 'none').lower()}",
            ],
            output / "sim_node.log",
            env,
        ),
        "rtc_node": start_node_process(
            "rtc_ros.nodes.rtc_node",
            ["--params-file", config]
            + [a for name, value in rtc_parameters.items() for a in ("-p", f"{name}:={value}")],
            output / "rtc_node.log",
            env,
        ),
    }
    if args.record:
        from rtc_ros.nodes.recorder_node import CAMERA_TOPIC, RECORDED_TOPICS

        # Its own process: it cannot take a tick from the control loop, which runs in another.
        topics = list(RECORDED_TOPICS) + ([CAMERA_TOPIC] if args.record_camera else [])
        nodes["recorder_node"] = start_node_process(
            "rtc_ros.nodes.recorder_node",
            ["-p", f"output:={output / 'run.mcap'}", "-p", f"topics:={json.dumps(topics)}"],
            output / "recorder_node.log",
            env,
        )
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    monitor = Monitor(context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(monitor.node)
    harness = Harness(monitor, executor, nodes, hold_resets=args.reset_handling == "hold")
    failure = ""
    try:
        print(
            f"{method}: starting sim_node and rtc_node on ROS_DOMAIN_ID={domain} (logs in "
            f"{output}) ...",
            flush=True,
        )
        deadline = time.monotonic() + args.startup_timeout
        failure = bring_up(monitor.node, executor, "/rtc", deadline)
        if failure:
            pass
        elif not harness.spin_until(
            lambda: monitor.commands and monitor.episodes, deadline - time.monotonic()
        ):
            failure = "no command within the start-up timeout"
        else:
            print(
                "first command received; running "
                + (f"{args.episodes} episodes" if args.episodes else f"for {args.duration:.0f} s"),
                flush=True,
            )
            failure = harness.run(args.episodes, args.duration)
            harness.spin_until(
                lambda: False, 1.5
            )  # the controller's last report reaches /diagnostics
        crashed = [name for name, p in nodes.items() if p.poll() is not None]
        if crashed and not failure:
            failure = f"{', '.join(crashed)} exited early (see {output}/<node>.log)"
    finally:
        for process in nodes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        exit_codes = {name: process.wait(timeout=30) for name, process in nodes.items()}
        executor.shutdown()
        monitor.node.destroy_node()
        rclpy.try_shutdown(context=context)

    status = monitor.status
    if not failure and (status is None or status.swaps < 2):
        failure = "no chunk was swapped in" if status is not None else "no status was received"
    summary = _summary(args, method, monitor, harness, failure, exit_codes)
    (output / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    if monitor.joint_states and monitor.commands:
        _plot(monitor, harness, output, monitor.commands[0][0])
    return summary, monitor, harness


def _compare_plot(
    runs: dict[str, tuple[dict, Monitor, Harness]], path: pathlib.Path, window_s: float = 2.0
) -> None:
    """The paper's Fig. 1 from the ROS runs: one joint's commanded position, velocity and
    acceleration over ``window_s`` in the middle of an episode, one row per method, seams marked;
    each column on one scale, so that the rows compare at a glance.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    period_s = 0.02
    figure, axes = plt.subplots(
        len(runs),
        3,
        figsize=(13, 2.1 * len(runs) + 0.6),
        sharex=True,
        sharey="col",
        squeeze=False,
    )
    for row, (method, (summary, monitor, harness)) in enumerate(runs.items()):
        names = monitor.joint_states[0][2] if monitor.joint_states else []
        joint = names.index(COMPARED_JOINT) if COMPARED_JOINT in names else 1
        received = np.array([t for t, _, _ in monitor.commands])
        commands = np.array([c[joint] for _, _, c in monitor.commands])
        seams, _ = _seam_indices(monitor)
        # The window: the first episode that lasts long enough, from 0.5 s after its first command.
        start = 0
        for (_, released), episode in zip(harness.holds, harness.episodes):
            first = int(np.searchsorted(received, released))
            if episode.ended - released > window_s + 1.0:
                start = first + 25
                break
        stop = min(start + int(window_s / period_s), len(commands))
        if stop - start < 3:
            axes[row, 0].set_ylabel(f"{method}\nno commands", fontsize=9)
            continue
        ticks = np.arange(start, stop)
        position = commands[start:stop]
        velocity = np.gradient(position, period_s)
        acceleration = np.gradient(velocity, period_s)
        for column, (values, label) in enumerate(
            zip(
                (position, velocity, acceleration),
                ("position (rad)", "velocity (rad/s)", "accel. (rad/s²)"),
            )
        ):
            axis = axes[row, column]
            axis.plot((ticks - start) * period_s, values, linewidth=1.2, color="tab:blue")
            for seam in seams[(seams >= start) & (seams < stop)]:
                axis.axvline(
                    (seam - start) * period_s, color="tab:red", linewidth=0.8, linestyle="--"
                )
            axis.grid(alpha=0.3)
            if row == 0:
                axis.set_title(label)
            if row == len(runs) - 1:
                axis.set_xlabel("time (s)")
        seam_p50 = summary["seam_continuity"]["command_step_at_seams_p50_rad"]
        axes[row, 0].set_ylabel(
            f"{method}\n{summary.get('episodes_succeeded', 0)}/"
            f"{summary.get('episodes_completed', 0)} ok",
            fontsize=9,
        )
        if seam_p50 is not None:
            axes[row, 2].text(
                0.99,
                0.95,
                f"seam step p50 {seam_p50:.3f} rad",
                transform=axes[row, 2].transAxes,
                ha="right",
                va="top",
                fontsize=8,
            )
    figure.suptitle(
        f"{COMPARED_JOINT} command through ROS at the same emulated latency; red dashes: chunk "
        "seams"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _compare_row(summary: dict) -> dict:
    seams = summary["seam_continuity"]
    return {
        "episodes": summary["episodes_completed"],
        "successes": summary["episodes_succeeded"],
        "seam_step_p50_rad": seams["command_step_at_seams_p50_rad"],
        "seam_step_max_rad": seams["command_step_at_seams_max_rad"],
        "in_chunk_step_p50_rad": seams["command_step_inside_chunks_p50_rad"],
        "mean_jerk_rad_s3": seams["mean_jerk_rad_s3"],
        "paused_ticks": summary["paused_ticks"],
        "underruns": summary.get("underruns"),
        "observed_delays": summary["observed_delays"],
        "ok": summary["ok"],
    }


def main(argv: list[str] | None = None) -> int:
    from rtc_ros.core.config import Method, parse_enum

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--episodes",
        type=int,
        default=0,
        help="run this many complete episodes, then stop (0: run for --duration)",
    )
    parser.add_argument(
        "--duration", type=float, default=30.0, help="seconds to run when --episodes is 0"
    )
    parser.add_argument("--output", type=pathlib.Path, default=pathlib.Path("demo_out"))
    parser.add_argument(
        "--method", default=Method.RTC_SOFT.value, help=", ".join(m.value for m in Method)
    )
    parser.add_argument(
        "--compare",
        default="",
        help="comma-separated methods to run one after the other through the same ROS path",
    )
    parser.add_argument(
        "--controller",
        choices=("process", "thread"),
        default="process",
        help="where rtc_node runs its control loop",
    )
    parser.add_argument("--guidance", choices=("vjp", "stop_gradient"), default="stop_gradient")
    parser.add_argument(
        "--emulated-latency-ms",
        type=float,
        default=DEFAULT_EMULATED_LATENCY_MS,
        help="pad every inference to at least this wall time, so that RTC works under a VLA's "
        "delay on any machine (100 ms: d = 5 at 50 Hz, the paper's real robot); 0: off",
    )
    parser.add_argument(
        "--reset-handling",
        choices=("hold", "none"),
        default="hold",
        help="hold: the controller holds while the robot is reset between episodes and starts the "
        "next one from a fresh chunk; none: the simulator resets itself while the controller "
        "runs on (for comparison: what a robot without reset handling does)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--policy",
        default="",
        help="LeRobot save_pretrained folder, .pt checkpoint or name "
        "(builtin-pi0); empty for the shipped demo policy",
    )
    parser.add_argument("--task", default="", help="language instruction for VLA policies")
    parser.add_argument(
        "--record",
        action="store_true",
        help="record the run to OUTPUT/run.mcap (an MCAP bag: python -m rtc_ros.plot draws it)",
    )
    parser.add_argument(
        "--record-camera", action="store_true", help="with --record: record the camera too"
    )
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    if args.episodes < 0:
        parser.error(f"--episodes must be >= 0, got {args.episodes}")
    try:
        names = args.compare.split(",") if args.compare else [args.method]
        methods = [parse_enum(Method, name, "method").value for name in names]
    except ValueError as error:
        parser.error(str(error))

    if not args.compare:
        summary, _, _ = run(args, methods[0], args.output)
        print(json.dumps(summary, indent=2, default=float))
        if summary["failure"]:
            print(f"FAILED: {summary['failure']}", file=sys.stderr)
            return 1
        print(
            f"summary: {args.output / 'summary.json'}, plots: {args.output / 'joints.png'}, "
            f"{args.output / 'delays.png'}"
            + (f", bag: {args.output / 'run.mcap'}" if args.record else "")
        )
        return 0

    runs = {m: run(args, m, args.output / m) for m in methods}
    comparison = {
        "emulated_latency_ms": args.emulated_latency_ms,
        "guidance": args.guidance,
        "episodes_per_method": args.episodes,
        "methods": {m: _compare_row(summary) for m, (summary, _, _) in runs.items()},
    }
    (args.output / "compare.json").write_text(json.dumps(comparison, indent=2, default=float))
    _compare_plot(runs, args.output / "compare.png")
    print(json.dumps(comparison, indent=2, default=float))
    failed = [m for m, (s, _, _) in runs.items() if s["failure"]]
    if failed:
        print(
            f"FAILED: {', '.join(failed)} (see {args.output}/<method>/summary.json)",
            file=sys.stderr,
        )
        return 1
    print(f"comparison: {args.output / 'compare.json'}, plot: {args.output / 'compare.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
