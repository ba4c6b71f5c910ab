"""The simulated bimanual demo: the whole system on real ROS 2, ended by a summary and a plot.

    .venv/bin/python -m rtc_ros.demo --duration 30 --output demo_out

starts ``sim_node`` (the simulated robot) and ``rtc_node`` (inference + 50 Hz controller) as
separate processes on a private ROS domain, watches their topics from a monitor node for
``--duration`` seconds after the first command, stops them with Ctrl-C as a launch would, and
writes DIR/summary.json and DIR/joints.png (one arm's joint position, velocity and
acceleration with the chunk seams marked). Exits non-zero if the system failed: a node
crashed, no chunk was executed, or nothing was commanded.
"""
from __future__ import annotations

import argparse
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
_RESET_STEP_RAD = 0.3
"""A joint-state step above this between two samples is an episode reset: at the arms' 3.14 rad/s
limit a servo moves 0.03 rad between two 100 Hz samples."""


def config_path() -> pathlib.Path:
    """The source tree's config, else the installed share/rtc_ros/config."""
    if CONFIG.is_file():
        return CONFIG
    return pathlib.Path(sys.prefix) / "share" / "rtc_ros" / "config" / "bimanual.yaml"


def start_node_process(module: str, ros_args: list[str], log: pathlib.Path, env: dict) -> subprocess.Popen:
    # SIGINT must reach the node (a background child of a script starts with it ignored).
    return subprocess.Popen([sys.executable, "-m", module, "--ros-args", *ros_args], env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


class Monitor:
    """A plain rclpy node recording what a person would watch with ros2 topic echo."""

    def __init__(self, context) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.node import Node
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import JointState
        from trajectory_msgs.msg import JointTrajectory

        from rtc_ros.msg import ActionChunk, RtcStatus
        from rtc_ros.nodes.controller_links import CHUNK_QOS, COMMAND_QOS

        self.node = Node("rtc_demo_monitor", context=context)
        self.joint_states: list[tuple[float, list[str], np.ndarray]] = []
        self.commands: list[tuple[float, np.ndarray]] = []
        self.chunks: list[tuple[float, object]] = []
        self.status = None
        self.task: dict[str, str] = {}
        now = time.monotonic
        self.node.create_subscription(JointState, "joint_states", lambda m: self.joint_states.append(
            (now(), list(m.name), np.array(m.position))), qos_profile_sensor_data)
        self.node.create_subscription(JointTrajectory, "commands", lambda m: self.commands.append(
            (now(), np.array(m.points[0].positions))), COMMAND_QOS)
        self.node.create_subscription(ActionChunk, "rtc/chunks", lambda m: self.chunks.append((now(), m)), CHUNK_QOS)
        self.node.create_subscription(RtcStatus, "rtc/status", self._on_status, 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_status(self, message) -> None:
        self.status = message

    def _on_diagnostics(self, message) -> None:
        for status in message.status:
            if status.name.endswith(": task"):
                self.task = {kv.key: kv.value for kv in status.values}


def _seam_continuity(monitor: Monitor) -> dict:
    """Command steps at chunk swaps against steps inside chunks, and RTC's prefix mismatch."""
    times = np.array([t for t, _ in monitor.commands])
    commands = np.array([c for _, c in monitor.commands])
    steps = np.abs(np.diff(commands, axis=0)).max(axis=1)
    seam_times = [t for t, _ in monitor.chunks[1:]]
    seam_index = np.unique(np.searchsorted(times[1:], seam_times))
    seam_index = seam_index[seam_index < len(steps)]
    inside = np.setdiff1d(np.arange(len(steps)), seam_index)
    mismatches = []
    for (_, old), (_, new) in zip(monitor.chunks, monitor.chunks[1:]):
        old_actions = np.array(old.actions).reshape(old.prediction_horizon, old.action_dim)
        new_actions = np.array(new.actions).reshape(new.prediction_horizon, new.action_dim)
        s, d = new.execution_horizon, max(int(new.inference_delay), 1)
        if s + d <= old.prediction_horizon:
            mismatches.append(float(np.abs(new_actions[:d] - old_actions[s:s + d]).max()))
    return {
        "command_step_at_seams_max_rad": float(steps[seam_index].max()) if len(seam_index) else None,
        "command_step_at_seams_p50_rad": float(np.median(steps[seam_index])) if len(seam_index) else None,
        "command_step_inside_chunks_p50_rad": float(np.median(steps[inside])) if len(inside) else None,
        "command_step_inside_chunks_p99_rad": float(np.percentile(steps[inside], 99)) if len(inside) else None,
        "frozen_prefix_mismatch_max_rad": max(mismatches) if mismatches else None,
        "frozen_prefix_mismatch_p50_rad": float(np.median(mismatches)) if mismatches else None,
    }


def _plot(monitor: Monitor, path: pathlib.Path, start: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = monitor.joint_states[0][1]
    columns = [i for i, n in enumerate(names) if n.startswith(PLOTTED_ARM + "_") and not n.endswith("gripper")]
    times = np.array([t for t, _, _ in monitor.joint_states]) - start
    positions = np.array([p[columns] for _, _, p in monitor.joint_states])
    velocity = np.gradient(positions, times, axis=0)
    acceleration = np.gradient(velocity, times, axis=0)
    # The simulator starts each new episode from its home pose at once: a step no servo can make.
    # Those samples are marked and left out of the derivatives instead of drawn as spikes.
    steps = np.abs(np.diff(positions, axis=0)).max(axis=1)
    resets = np.flatnonzero(steps > _RESET_STEP_RAD) + 1
    for index in resets:
        window = slice(max(index - 2, 0), index + 3)
        velocity[window] = np.nan
        acceleration[window] = np.nan
    figure, axes = plt.subplots(3, 1, figsize=(12, 9), sharex=True)
    for axis, values, label in zip(axes, (positions, velocity, acceleration),
                                   ("position (rad)", "velocity (rad/s)", "acceleration (rad/s²)")):
        for k, column in enumerate(columns):
            axis.plot(times, values[:, k], linewidth=1.0, label=names[column])
        for seam, _ in monitor.chunks:
            axis.axvline(seam - start, color="0.6", linewidth=0.6, linestyle="--")
        for index in resets:
            axis.axvline(times[index], color="tab:red", linewidth=1.0)
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize=7, ncol=3)
    axes[0].set_title(f"{PLOTTED_ARM} arm, measured joint states; dashed: chunk seams (new chunk ready); "
                      "red: simulator episode reset")
    axes[2].set_xlabel("time since first command (s)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds to run after the first command")
    parser.add_argument("--output", type=pathlib.Path, default=pathlib.Path("demo_out"))
    parser.add_argument("--controller", choices=("process", "thread"), default="process",
                        help="where rtc_node runs its control loop")
    parser.add_argument("--guidance", choices=("vjp", "stop_gradient"), default="vjp")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--policy", default="", help="LeRobot save_pretrained folder, .pt checkpoint or name "
                                                     "(builtin-pi0); empty for the shipped demo policy")
    parser.add_argument("--task", default="", help="language instruction for VLA policies")
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    args = parser.parse_args(argv)

    import rclpy

    args.output.mkdir(parents=True, exist_ok=True)
    domain = 100 + os.getpid() % 100
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONUNBUFFERED="1")
    os.environ.update(ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    config = str(config_path())
    nodes = {
        "sim_node": start_node_process("rtc_ros.nodes.sim_node", ["--params-file", config],
                                       args.output / "sim_node.log", env),
        "rtc_node": start_node_process("rtc_ros.nodes.rtc_node", [
            "--params-file", config, "-p", f"controller:={args.controller}", "-p", f"guidance:={args.guidance}",
            "-p", f"device:={args.device}"] + (["-p", f"policy:={args.policy}"] if args.policy else [])
            + (["-p", f"task:={args.task}"] if args.task else []),
            args.output / "rtc_node.log", env),
    }
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    monitor = Monitor(context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(monitor.node)
    failure = ""
    try:
        deadline = time.monotonic() + args.startup_timeout
        print(f"starting sim_node and rtc_node on ROS_DOMAIN_ID={domain} (logs in {args.output}) ...", flush=True)
        while not monitor.commands and time.monotonic() < deadline and all(p.poll() is None for p in nodes.values()):
            executor.spin_once(timeout_sec=0.1)
        if not monitor.commands:
            failure = "no command within the start-up timeout"
        else:
            start = monitor.commands[0][0]
            print(f"first command received; running for {args.duration:.0f} s", flush=True)
            while time.monotonic() - start < args.duration and all(p.poll() is None for p in nodes.values()):
                executor.spin_once(timeout_sec=0.05)
        crashed = [name for name, p in nodes.items() if p.poll() is not None]
        if crashed and not failure:
            failure = f"{', '.join(crashed)} exited early (see {args.output}/<node>.log)"
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
    summary = {"ok": not failure, "failure": failure, "exit_codes": exit_codes,
               "duration_s": args.duration, "controller": args.controller, "guidance": args.guidance}
    if monitor.commands:
        command_times = np.array([t for t, _ in monitor.commands])
        summary["commands_received"] = len(command_times)
        summary["command_rate_hz"] = float((len(command_times) - 1) / (command_times[-1] - command_times[0]))
    if status is not None:
        summary.update({
            "commands_published": int(status.commands_published), "swaps": int(status.swaps),
            "underruns": int(status.underruns), "delays": list(status.delay_history),
            "inference_delay_estimate": int(status.inference_delay_estimate),
            "execution_horizon": int(status.execution_horizon),
            "controller_period_error_ms": {"p50": status.controller_period_error_p50_ms,
                                           "p99": status.controller_period_error_p99_ms,
                                           "max": status.controller_period_error_max_ms},
            "chunk_latency_ms": {"p50": status.chunk_latency_p50_ms, "p95": status.chunk_latency_p95_ms,
                                 "max": status.chunk_latency_max_ms},
            "rejected_observations": int(status.rejected_observations), "device": status.device,
            "method": status.method})
    if len(monitor.commands) > 2 and len(monitor.chunks) > 1:
        summary["seam_continuity"] = _seam_continuity(monitor)
    summary["task"] = monitor.task
    (args.output / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    if monitor.joint_states and monitor.commands:
        _plot(monitor, args.output / "joints.png", monitor.commands[0][0])
    print(json.dumps(summary, indent=2, default=float))
    if failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    print(f"summary: {args.output / 'summary.json'}, plot: {args.output / 'joints.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
