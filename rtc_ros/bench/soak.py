"""Soak test: the simulated robot under RTC for M minutes, with per-minute health and leak figures.

    .venv/bin/python -m rtc_ros.bench.soak --minutes 60 --output DIR

starts ``sim_node`` and ``rtc_node`` (control loop in its own process) as separate processes on
a private ROS domain, as the demo does, and records from a monitor node, once a minute:

- the command rate the robot receives, and every command step against the per-tick limit
  (``max_velocity * dt`` of the config; the first command against the measured joint state);
- underruns, the controller's period error p99 and max (its rolling window of 3000 ticks, one
  minute at 50 Hz, as reported on ``rtc/status``) and ERROR entries on /diagnostics;
- the chunk latency p95 of the chunks published in that minute (``rtc/chunks``);
- RSS and open file descriptors of every process of the system (the nodes and the control
  process and resource tracker that rtc_node starts), and the /dev/shm entries they map.

It writes DIR/soak.json after every minute and DIR/soak.png at the end, stops the nodes with
Ctrl-C as a launch would, and exits non-zero on any underrun, a command step above the limit,
a leak (RSS growing faster than ``--max-rss-growth-mb-per-h`` after the warm-up, file
descriptors growing by more than ``--max-fd-growth``, any /dev/shm entry left after the nodes
stopped) or a node that crashed or exited non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import sys
import time

import numpy as np
import yaml

from rtc_ros.demo import DEFAULT_EMULATED_LATENCY_MS, bring_up, config_path, start_node_process

STEP_TOLERANCE = 1e-9
"""Commands travel as float64: a step equal to the limit may differ from it by rounding only."""


def descendants(pid: int) -> list[int]:
    """``pid``'s child processes, recursively (Linux /proc)."""
    found = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            children = pathlib.Path(f"/proc/{pid}/task/{task}/children").read_text().split()
        except FileNotFoundError:
            continue
        for child in map(int, children):
            found += [child] + descendants(child)
    return found


def process_label(pid: int, fallback: str) -> str:
    try:
        command = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return fallback
    if "resource_tracker" in command:
        return "resource_tracker"
    if "multiprocessing" in command:
        return "rtc_control"
    return fallback


SHARED_WITH_OTHER_PROCESSES = ("/dev/shm/fastdds_port", "/dev/shm/lttng-ust-wait")
"""/dev/shm files that every DDS or traced process on the machine maps and that outlive each
of them by design (Fast DDS's per-port segments, LTTng's wait files): not ours to remove."""


def process_usage(pid: int) -> dict | None:
    """RSS (MB), open file descriptors and the /dev/shm files mapped by one process and by no
    other process's design (see SHARED_WITH_OTHER_PROCESSES); None if the process is gone.
    """
    try:
        status = pathlib.Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        maps = pathlib.Path(f"/proc/{pid}/maps").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rss_kb = next(
        int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")
    )
    paths = {
        fields[5].removesuffix(" (deleted)")
        for fields in (line.split(None, 5) for line in maps.splitlines())
        if len(fields) == 6 and fields[5].startswith("/dev/shm/")
    }
    shm = sorted(path for path in paths if not path.startswith(SHARED_WITH_OTHER_PROCESSES))
    return {"pid": pid, "rss_mb": rss_kb / 1024.0, "fds": fds, "shm": shm}


class SoakMonitor:
    """Subscribes to what the robot and an operator see; keeps per-
    minute tallies, not every message.
    """

    def __init__(
        self, context, joint_names: list[str], max_step: np.ndarray, period_s: float
    ) -> None:
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
        from rclpy.node import Node
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import JointState
        from trajectory_msgs.msg import JointTrajectory

        from rtc_ros.msg import ActionChunk, RtcStatus
        from rtc_ros.nodes.controller_links import CHUNK_QOS

        self.node = Node("rtc_soak_monitor", context=context)
        self.joint_names, self.max_step, self.period_s = joint_names, max_step, period_s
        self._error_level = DiagnosticStatus.ERROR
        self.measured: np.ndarray | None = None
        self.first_command_step: np.ndarray | None = None
        self.last_command: tuple[float, np.ndarray] | None = None
        self.commands = 0
        self.steps_checked = 0
        self.steps_above_limit = 0
        self.largest_step_ratio = 0.0
        """Largest command step as a fraction of its joint's limit."""
        self.gaps = 0
        """Consecutive commands that arrived more than 1.5 periods apart: their step is not
        checked."""
        self.chunk_latencies_ms: list[float] = []
        self.diagnostic_errors = 0
        self.status = None
        keep_all = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        self._joint_subscription = self.node.create_subscription(
            JointState, "joint_states", self._on_joint_state, qos_profile_sensor_data
        )
        self.node.create_subscription(JointTrajectory, "commands", self._on_command, keep_all)
        self.node.create_subscription(
            ActionChunk,
            "rtc/chunks",
            lambda m: self.chunk_latencies_ms.append(float(m.latency_ms)),
            CHUNK_QOS,
        )
        self.node.create_subscription(RtcStatus, "rtc/status", self._on_status, 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_joint_state(self, message) -> None:
        by_name = dict(zip(message.name, message.position))
        if all(name in by_name for name in self.joint_names):
            self.measured = np.array([by_name[name] for name in self.joint_names])

    def _on_command(self, message) -> None:
        arrived = time.monotonic()  # a JointTrajectory command carries no send time (stamp 0)
        positions = np.array(message.points[-1].positions)
        self.commands += 1
        if self.last_command is None:
            if self.measured is not None:
                self.first_command_step = positions - self.measured
            # The measured state matters only for the first command; 100 Hz joint states cost CPU.
            self.node.destroy_subscription(self._joint_subscription)
        elif arrived - self.last_command[0] > 1.5 * self.period_s:
            self.gaps += 1
        else:
            ratio = float(np.max(np.abs(positions - self.last_command[1]) / self.max_step))
            self.steps_checked += 1
            self.largest_step_ratio = max(self.largest_step_ratio, ratio)
            if np.any(np.abs(positions - self.last_command[1]) > self.max_step + STEP_TOLERANCE):
                self.steps_above_limit += 1
        self.last_command = (arrived, positions)

    def _on_status(self, message) -> None:
        self.status = message

    def _on_diagnostics(self, message) -> None:
        self.diagnostic_errors += sum(
            1 for s in message.status if s.level == self._error_level and "/rtc" in s.name
        )


def _leak_rate_mb_per_h(minutes: list[float], rss_mb: list[float]) -> float | None:
    """Least-squares slope of RSS over time, MB per hour; None with fewer than 3 samples."""
    if len(minutes) < 3:
        return None
    return float(np.polyfit(np.asarray(minutes) / 60.0, rss_mb, 1)[0])


def verdict(
    samples: list[dict], warmup_minutes: float, max_rss_growth_mb_per_h: float, max_fd_growth: int
) -> dict:
    """Per-process RSS slope and fd growth after the warm-up, and which limits were broken."""
    after = [s for s in samples if s["minute"] > warmup_minutes]
    processes = sorted({name for s in after for name in s["processes"]})
    leaks = {}
    for name in processes:
        points = [(s["minute"], s["processes"][name]) for s in after if name in s["processes"]]
        slope = _leak_rate_mb_per_h([m for m, _ in points], [p["rss_mb"] for _, p in points])
        fd_growth = points[-1][1]["fds"] - points[0][1]["fds"] if points else 0
        leaks[name] = {
            "rss_growth_mb_per_h": slope,
            "fd_growth": fd_growth,
            "rss_leak": slope is not None and slope > max_rss_growth_mb_per_h,
            "fd_leak": fd_growth > max_fd_growth,
        }
    return leaks


def _plot(samples: list[dict], path: pathlib.Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s["minute"] for s in samples]
    figure, axes = plt.subplots(3, 2, figsize=(13, 10), sharex=True)
    axes[0, 0].plot(minutes, [s["command_rate_hz"] for s in samples], marker=".")
    axes[0, 0].set_ylabel("commands received (Hz)")
    axes[0, 1].bar(minutes, [s["underruns"] for s in samples], color="tab:red", label="underruns")
    axes[0, 1].plot(
        minutes, [s["steps_above_limit"] for s in samples], "k.", label="steps above limit"
    )
    axes[0, 1].set_ylabel("events per minute")
    axes[0, 1].legend(fontsize=8)
    axes[1, 0].plot(minutes, [s["period_error_p99_ms"] for s in samples], marker=".", label="p99")
    axes[1, 0].plot(minutes, [s["period_error_max_ms"] for s in samples], marker=".", label="max")
    axes[1, 0].set_ylabel("controller period error (ms)")
    axes[1, 0].legend(fontsize=8)
    axes[1, 1].plot(minutes, [s["chunk_latency_p95_ms"] for s in samples], marker=".")
    axes[1, 1].set_ylabel("chunk latency p95 (ms)")
    names = sorted({name for s in samples for name in s["processes"]})
    for name in names:
        points = [(s["minute"], s["processes"][name]) for s in samples if name in s["processes"]]
        axes[2, 0].plot(
            [m for m, _ in points], [p["rss_mb"] for _, p in points], marker=".", label=name
        )
        axes[2, 1].plot(
            [m for m, _ in points], [p["fds"] for _, p in points], marker=".", label=name
        )
    axes[2, 1].plot(
        minutes, [len(s["shm"]) for s in samples], "k--", label="/dev/shm entries mapped"
    )
    axes[2, 0].set_ylabel("RSS (MB)")
    axes[2, 1].set_ylabel("open file descriptors")
    for axis in axes[2]:
        axis.legend(fontsize=7)
        axis.set_xlabel("minute")
    for axis in axes.flat:
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--minutes", type=float, required=True, help="how long to run after the first command"
    )
    parser.add_argument("--output", type=pathlib.Path, required=True)
    parser.add_argument(
        "--emulated-latency-ms",
        type=float,
        default=DEFAULT_EMULATED_LATENCY_MS,
        help="passed to rtc_node as emulated_latency_ms: every inference padded to at least "
        "this wall time (default: the demo's, a VLA's delay of d = 5 ticks); 0: off",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--warmup-minutes",
        type=float,
        default=None,
        help="excluded from the leak figures (default: 5, or a sixth of a shorter run)",
    )
    parser.add_argument("--max-rss-growth-mb-per-h", type=float, default=5.0)
    parser.add_argument(
        "--max-fd-growth",
        type=int,
        default=8,
        help="open file descriptors a process may gain after the warm-up",
    )
    parser.add_argument(
        "--sample-period-s", type=float, default=60.0, help="one sample per minute by default"
    )
    parser.add_argument("--startup-timeout", type=float, default=180.0)
    parser.add_argument(
        "--domain-id",
        type=int,
        default=None,
        help="ROS domain of the run (default: 100 + pid %% 100); pick one no other test uses",
    )
    args = parser.parse_args(argv)
    warmup_minutes = (
        args.warmup_minutes if args.warmup_minutes is not None else min(5.0, args.minutes / 6)
    )

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    args.output.mkdir(parents=True, exist_ok=True)
    config = config_path()
    values = yaml.safe_load(config.read_text())["/**"]["ros__parameters"]
    period_s = 1.0 / float(values["control_rate_hz"])
    max_step = np.asarray(values["max_velocity"], dtype=np.float64) * period_s
    domain = args.domain_id if args.domain_id is not None else 100 + os.getpid() % 100
    env = dict(
        os.environ,
        ROS_DOMAIN_ID=str(domain),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        PYTHONUNBUFFERED="1",
    )
    rtc_arguments = [
        "--params-file",
        str(config),
        "-p",
        "controller:=process",
        "-p",
        f"device:={args.device}",
    ]
    rtc_arguments += ["-p", f"emulated_latency_ms:={args.emulated_latency_ms}"]
    nodes = {
        "sim_node": start_node_process(
            "rtc_ros.nodes.sim_node",
            ["--params-file", str(config)],
            args.output / "sim_node.log",
            env,
        ),
        "rtc_node": start_node_process(
            "rtc_ros.nodes.rtc_node", rtc_arguments, args.output / "rtc_node.log", env
        ),
    }
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    monitor = SoakMonitor(context, list(values["joint_names"]), max_step, period_s)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(monitor.node)
    summary = {
        "command": " ".join(
            [os.path.basename(sys.executable), "-m", "rtc_ros.bench.soak"]
            + (argv if argv is not None else sys.argv[1:])
        ),
        "minutes": args.minutes,
        "warmup_minutes": warmup_minutes,
        "controller": "process",
        "emulated_latency_ms": args.emulated_latency_ms,
        "device": args.device,
        "max_step_per_tick": max_step.tolist(),
        "complete": False,
    }
    samples: list[dict] = []
    shm_seen: set[str] = set()
    failures: list[str] = []

    def alive() -> bool:
        return all(p.poll() is None for p in nodes.values())

    def spin_until(deadline: float) -> None:
        while time.monotonic() < deadline and alive():
            executor.spin_once(timeout_sec=0.05)

    def write() -> None:
        summary["samples"] = samples
        (args.output / "soak.json").write_text(json.dumps(summary, indent=2, default=float))

    try:
        print(
            f"starting sim_node and rtc_node on ROS_DOMAIN_ID={domain} (logs in {args.output}) "
            "...",
            flush=True,
        )
        deadline = time.monotonic() + args.startup_timeout
        failure = bring_up(monitor.node, executor, "/rtc", deadline)
        while not failure and monitor.commands == 0 and time.monotonic() < deadline and alive():
            executor.spin_once(timeout_sec=0.1)
        if failure:
            failures.append(failure)
        elif monitor.commands == 0:
            failures.append("no command within the start-up timeout")
        else:
            start = time.monotonic()
            print(f"first command received; soaking for {args.minutes:g} min", flush=True)
            previous = {
                "commands": 0,
                "underruns": 0,
                "steps_above_limit": 0,
                "gaps": 0,
                "diagnostic_errors": 0,
                "chunks": 0,
            }
            sample_index = 0
            while time.monotonic() - start < args.minutes * 60.0 - 1e-6 and alive():
                sample_index += 1
                spin_until(start + min(sample_index * args.sample_period_s, args.minutes * 60.0))
                status = monitor.status
                processes = {}
                for name, process in nodes.items():
                    for pid in [process.pid] + descendants(process.pid):
                        usage = process_usage(pid)
                        if usage is not None:
                            processes[
                                name if pid == process.pid else process_label(pid, f"{name}_child")
                            ] = usage
                shm = sorted({path for usage in processes.values() for path in usage.pop("shm")})
                shm_seen.update(shm)
                chunk_latencies = monitor.chunk_latencies_ms[previous["chunks"] :]
                current = {
                    "commands": monitor.commands,
                    "underruns": int(status.underruns) if status else 0,
                    "steps_above_limit": monitor.steps_above_limit,
                    "gaps": monitor.gaps,
                    "diagnostic_errors": monitor.diagnostic_errors,
                    "chunks": len(monitor.chunk_latencies_ms),
                }
                elapsed_s = time.monotonic() - start
                span_s = elapsed_s - (samples[-1]["elapsed_s"] if samples else 0.0)
                sample = {
                    "minute": round(elapsed_s / 60.0, 3),
                    "elapsed_s": elapsed_s,
                    "command_rate_hz": (current["commands"] - previous["commands"]) / span_s,
                    **{
                        key: current[key] - previous[key]
                        for key in (
                            "underruns",
                            "steps_above_limit",
                            "gaps",
                            "diagnostic_errors",
                            "chunks",
                        )
                    },
                    "period_error_p99_ms": float(status.controller_period_error_p99_ms)
                    if status
                    else None,
                    "period_error_max_ms": float(status.controller_period_error_max_ms)
                    if status
                    else None,
                    "chunk_latency_p95_ms": float(np.percentile(chunk_latencies, 95))
                    if chunk_latencies
                    else None,
                    "processes": processes,
                    "shm": shm,
                }
                previous = current
                samples.append(sample)
                write()
                print(
                    f"minute {sample['minute']:.1f}: {sample['command_rate_hz']:.2f} Hz, "
                    f"{sample['underruns']} underruns, period error p99 "
                    f"{sample['period_error_p99_ms']} ms, "
                    f"chunk latency p95 {sample['chunk_latency_p95_ms']} ms, "
                    + ", ".join(
                        f"{n} {p['rss_mb']:.0f} MB/{p['fds']} fds" for n, p in processes.items()
                    ),
                    flush=True,
                )
    finally:
        for process in nodes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        exit_codes = {}
        for name, process in nodes.items():
            try:
                exit_codes[name] = process.wait(timeout=30)
            except Exception:  # noqa: BLE001 - a node that does not stop is killed and reported
                process.kill()
                exit_codes[name] = f"killed after 30 s: {process.wait()}"
        executor.shutdown()
        monitor.node.destroy_node()
        rclpy.try_shutdown(context=context)

    time.sleep(1.0)  # the resource tracker unlinks what a process left behind as it exits
    leftover_shm = sorted(path for path in shm_seen if os.path.exists(path))
    leaks = verdict(samples, warmup_minutes, args.max_rss_growth_mb_per_h, args.max_fd_growth)
    status = monitor.status
    first_step = monitor.first_command_step
    summary.update(
        {
            "complete": bool(samples) and samples[-1]["elapsed_s"] >= args.minutes * 60.0 - 1.0,
            "exit_codes": exit_codes,
            "commands_received": monitor.commands,
            "command_steps_checked": monitor.steps_checked,
            "command_steps_above_limit": monitor.steps_above_limit,
            "largest_step_fraction_of_limit": monitor.largest_step_ratio,
            "command_gaps": monitor.gaps,
            "first_command_step_from_measured_rad": None
            if first_step is None
            else float(np.abs(first_step).max()),
            "first_command_step_fraction_of_limit": (
                None if first_step is None else float(np.max(np.abs(first_step) / max_step))
            ),
            "underruns": int(status.underruns) if status else None,
            "swaps": int(status.swaps) if status else None,
            "shm_entries_seen": sorted(shm_seen),
            "leftover_shm": leftover_shm,
            "leaks": leaks,
        }
    )
    if status is not None and status.underruns > 0:
        failures.append(f"{status.underruns} underrun(s)")
    if monitor.steps_above_limit:
        failures.append(f"{monitor.steps_above_limit} command step(s) above max_velocity * dt")
    for name, leak in leaks.items():
        if leak["rss_leak"]:
            failures.append(
                f"{name} RSS grows {leak['rss_growth_mb_per_h']:.1f} MB/h "
                f"(limit {args.max_rss_growth_mb_per_h} MB/h)"
            )
        if leak["fd_leak"]:
            failures.append(
                f"{name} gained {leak['fd_growth']} file descriptors (limit {args.max_fd_growth})"
            )
    if leftover_shm:
        failures.append(f"/dev/shm entries left behind: {', '.join(leftover_shm)}")
    if not summary["complete"]:
        crashed = [name for name, code in exit_codes.items() if code != 0]
        failures.append(
            f"stopped early ({', '.join(crashed) or 'no node'} exited; see "
            f"{args.output}/<node>.log)"
        )
    elif any(code != 0 for code in exit_codes.values()):
        failures.append(f"a node exited non-zero: {exit_codes}")
    summary["ok"] = not failures
    summary["failures"] = failures
    write()
    if samples:
        _plot(
            samples,
            args.output / "soak.png",
            f"soak, {args.minutes:g} min: rtc_node (controller=process) + sim_node"
            + f", emulated latency {args.emulated_latency_ms:g} ms",
        )
    print(
        json.dumps({k: v for k, v in summary.items() if k != "samples"}, indent=2, default=float)
    )
    if failures:
        print("FAILED: " + "; ".join(failures), file=sys.stderr)
        return 1
    print(f"soak: {args.output / 'soak.json'}, plot: {args.output / 'soak.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
