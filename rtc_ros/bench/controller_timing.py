"""Controller timing under load: the loop in a thread, in its own process, and in its own
process with real-time settings, all beside CPU inference and busy processes.

    .venv/bin/python -m rtc_ros.bench.controller_timing --seconds S --load N --output DIR

``--load N`` starts N busy processes for the whole run: one allocating and freeing memory (64 MiB
at a time, every page touched) and N - 1 spinning on a CPU. Beside them the real runtime runs
without the nodes: an InferenceWorker generates RTC chunks back to back with the reference
policy on the CPU (H = 50, M = 14, n = 5, VJP; torch on all cores but one, as the nodes do), and
a ControlLoop ticks at ``--rate-hz`` and publishes each command as a ``sensor_msgs/JointState``
over real DDS (stamped when it is sent: a JointTrajectory command's stamp stays zero). A
subscriber in another process (:mod:`rtc_ros.bench.command_subscriber`) records when each
command arrives; for the real-time placement it runs at the same SCHED_FIFO priority, as a
ros2_control controller would.

Placements: ``thread`` (a thread of the inference process, chunks through an AtomicSlot),
``process`` (its own process, shared memory, normal scheduling) and ``process_rt`` (the same
with the real-time settings: SCHED_FIFO ``--thread-priority``, locked memory). They are
interleaved: ``--rounds`` rounds, each running every placement for S / rounds seconds in a
rotating order, so that the load and whatever else the machine runs hit them alike.

Per placement, in milliseconds:

- period error: how late each tick starts against its absolute deadline (the loop's measure);
- publish jitter: |interval between consecutive command stamps - period| (the stamp is taken
  when the tick publishes);
- arrival jitter: |interval between consecutive arrivals at the subscriber - period|, and the
  inter-arrival interval's p99;
- per segment, the real-time settings the loop got (SCHED_FIFO may be refused), the commands
  it sent and the subscriber received, and its underruns (for a control process as of its last
  report, which it publishes every 0.2 s: up to ten commands are not counted yet).

Writes DIR/timing.json and DIR/timing.png (the distributions). A benchmark, not a test: it
reports figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime
import enum
import json
import os
import pathlib
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import torch

from rtc_ros.core.config import ChunkingConfig
from rtc_ros.core.handover import AtomicSlot
from rtc_ros.core.methods import ChunkGenerator
from rtc_ros.core.scheduler import ChunkExecutor, ExecutorSpec, InferencePlanner
from rtc_ros.nodes.controller_links import RosCommandSinkFactory
from rtc_ros.nodes.parameters import CommandFormat, parse_command_groups
from rtc_ros.policies.reference import ReferenceFlowPolicy, ReferencePolicyConfig
from rtc_ros.runtime.command_filter import CommandFilter, JointLimits
from rtc_ros.runtime.control_loop import ControlLoop, ControlProcess, ControlProcessSpec
from rtc_ros.runtime.inference_worker import InferenceWorker
from rtc_ros.runtime.realtime import RealtimeSettings

HORIZON, ACTION_DIM, STATE_DIM = 50, 14, 14
JOINTS = tuple(f"joint_{i}" for i in range(ACTION_DIM))
LIMITS = JointLimits(JOINTS, (-10.0,) * ACTION_DIM, (10.0,) * ACTION_DIM, (1.0,) * ACTION_DIM)
SKIPPED_ARRIVALS = 10  # the first commands of a segment arrive while discovery settles

_SPINNER = "while True:\n    pass\n"
_MEMORY_CHURNER = (
    "page = 4096\n"
    "while True:\n"
    "    block = bytearray(64 << 20)\n"
    "    block[::page] = b'\\x01' * (len(block) // page)\n"
    "    del block\n"
)


class Placement(enum.Enum):
    THREAD = "thread"
    PROCESS = "process"
    PROCESS_RT = "process_rt"


def start_load(count: int) -> list[subprocess.Popen]:
    """``count`` busy processes: one churning memory, the others spinning."""
    codes = ([_MEMORY_CHURNER] if count > 0 else []) + [_SPINNER] * max(0, count - 1)
    return [subprocess.Popen([sys.executable, "-c", code]) for code in codes]


def stop_processes(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(5.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _worker(controller_state, publish_chunk) -> InferenceWorker:
    torch.manual_seed(0)
    policy = ReferenceFlowPolicy(
        ReferencePolicyConfig(HORIZON, ACTION_DIM, STATE_DIM, image_shape=(3, 96, 96))
    )
    policy.eval().requires_grad_(False)
    observation = {
        "state": torch.zeros(1, STATE_DIM),
        "image": torch.zeros(1, 3, 96, 96, dtype=torch.uint8),
    }
    # s_min = 1: inference runs back to back, the worst case for the controller's timing (d is
    # then often clamped to H - s, which is expected here and not worth a warning).
    worker = InferenceWorker(
        InferencePlanner(HORIZON, 1, on_delay_clamped=lambda delay, limit: None),
        ChunkGenerator(policy, ChunkingConfig(guidance="vjp")),
        lambda: observation,
        controller_state,
        publish_chunk,
    )
    worker.warm_up(observation)
    return worker


class _Subscriber:
    """The command subscriber in its own process, started and stopped around one segment."""

    def __init__(
        self, topic: str, thread_priority: int, domain_id: int, output: pathlib.Path
    ) -> None:
        self._output = output
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rtc_ros.bench.command_subscriber",
                "--topic",
                topic,
                "--output",
                str(output),
                "--thread-priority",
                str(thread_priority),
                "--domain-id",
                str(domain_id),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        if self._process.stdout.readline().strip() != "ready":
            self._process.kill()
            raise RuntimeError("the command subscriber did not start")

    def kill(self) -> None:
        self._process.kill()
        self._process.wait()

    def stop(self) -> np.ndarray:
        """(n, 2) arrival and stamp times in ns."""
        self._process.send_signal(signal.SIGINT)
        self._process.wait(30.0)
        return np.load(self._output)


def run_segment(
    placement: Placement,
    seconds: float,
    period_s: float,
    thread_priority: int,
    domain_id: int,
    workdir: pathlib.Path,
    index: int,
) -> dict:
    """One placement for ``seconds``: its period errors (ms), arrival and stamp times (ns), and
    the loop's report (real-time settings applied, commands sent, underruns).
    """
    namespace = f"/rtc_timing_{os.getpid()}_{index}"
    rt = placement is Placement.PROCESS_RT
    settings = RealtimeSettings(thread_priority=thread_priority) if rt else RealtimeSettings.off()
    subscriber = _Subscriber(
        f"{namespace}/commands",
        thread_priority if rt else 0,
        domain_id,
        workdir / f"arrivals_{index}.npy",
    )
    sinks = RosCommandSinkFactory(
        node_name="rtc_timing_control",
        namespace=namespace,
        domain_id=domain_id,
        ros_args=(),
        # JointState: a JointTrajectory's stamp stays zero ("start now"), this one carries the
        # publish time.
        command_format=CommandFormat.JOINT_STATE,
        command_groups=parse_command_groups(None, JOINTS),
        period_s=period_s,
    )
    ticks = int(round(seconds / period_s))
    try:
        if placement is Placement.THREAD:
            chunks, states = AtomicSlot(), AtomicSlot()
            command_filter = CommandFilter(LIMITS)
            command_filter.reset(np.zeros(ACTION_DIM))
            sink = sinks()
            loop = ControlLoop(
                period_s,
                ChunkExecutor(),
                chunks,
                states,
                command_filter,
                sink,
                realtime_settings=settings,
            )
            worker = _worker(states.latest, chunks.publish)
            stop = threading.Event()
            thread = threading.Thread(target=loop.run, args=(stop,), name="rtc_control")
            thread.start()
            worker.start()
            time.sleep(seconds)
            worker.stop()
            stop.set()
            thread.join()
            sink.close()
            period_errors = loop.period_errors_ms.values()
            report = loop.report()
        else:
            process = ControlProcess(
                ControlProcessSpec(
                    period_s,
                    (HORIZON, ACTION_DIM),
                    LIMITS,
                    ExecutorSpec(),
                    sinks,
                    (0.0,) * ACTION_DIM,
                    realtime=settings,
                )
            )
            worker = _worker(process.controller_state, process.publish_chunk)
            process.start()
            while process.report().ticks == 0:  # the child takes seconds to import and start
                time.sleep(0.05)
            worker.start()
            time.sleep(seconds)
            worker.stop()
            period_errors = process.period_errors_ms()
            report = process.report()
            process.stop()
    except BaseException:
        subscriber.kill()
        raise
    records = subscriber.stop()
    return {
        "period_error_ms": np.asarray(period_errors)[-ticks:],
        "arrival_ns": records[:, 0],
        "stamp_ns": records[:, 1],
        "loop": {
            "thread_priority": report.thread_priority,
            "memory_locked": report.memory_locked,
            "realtime_refused": report.realtime_refused,
            "commands_published": report.commands_published,
            "commands_received": len(records),
            "underruns": report.underruns,
        },
    }


def _percentiles(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan"), "samples": 0}
    return {
        "p50": float(np.percentile(values, 50)),
        "p99": float(np.percentile(values, 99)),
        "max": float(values.max()),
        "samples": int(values.size),
    }


def summarize(segments: list[dict], period_s: float) -> tuple[dict, dict[str, np.ndarray]]:
    """Figures over all segments of one placement, and the samples behind them."""
    period_errors = np.concatenate([s["period_error_ms"] for s in segments])
    arrivals = (
        np.concatenate([np.diff(s["arrival_ns"])[SKIPPED_ARRIVALS:] for s in segments]) / 1e6
    )
    stamps = np.concatenate([np.diff(s["stamp_ns"])[SKIPPED_ARRIVALS:] for s in segments]) / 1e6
    period_ms = period_s * 1e3
    samples = {
        "period_error_ms": period_errors,
        "publish_jitter_ms": np.abs(stamps - period_ms),
        "arrival_jitter_ms": np.abs(arrivals - period_ms),
    }
    figures: dict = {name: _percentiles(values) for name, values in samples.items()}
    figures["arrival_interval_ms"] = _percentiles(arrivals)
    # What the loop got and did in each segment: its real-time settings (SCHED_FIFO may be
    # refused), and the commands it sent against those the subscriber received.
    figures["segments"] = [s["loop"] for s in segments]
    return figures, samples


def plot(samples: dict[str, dict[str, np.ndarray]], path: pathlib.Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ("period_error_ms", "publish_jitter_ms", "arrival_jitter_ms")
    figure, axes = plt.subplots(1, len(metrics), figsize=(15, 4.5))
    for axis, metric in zip(axes, metrics):
        for placement, values in samples.items():
            data = np.sort(values[metric])
            if data.size:
                # Complementary CDF on a log scale: the tail, which is what a robot feels.
                axis.step(
                    np.maximum(data, 1e-3),
                    1.0 - np.arange(data.size) / data.size,
                    where="post",
                    label=placement,
                )
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel(f"{metric.removesuffix('_ms').replace('_', ' ')} (ms)")
        axis.set_ylabel("fraction of samples above")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="measured seconds per placement"
    )
    parser.add_argument("--load", type=int, default=2, help="busy processes beside inference")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--rate-hz", type=float, default=50.0)
    parser.add_argument(
        "--thread-priority", type=int, default=50, help="SCHED_FIFO priority of process_rt"
    )
    parser.add_argument(
        "--placements",
        default=",".join(p.value for p in Placement),
        help="comma-separated subset of thread, process, process_rt",
    )
    parser.add_argument("--domain-id", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", "0")))
    parser.add_argument(
        "--output", type=pathlib.Path, required=True, help="folder for timing.json and timing.png"
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rounds < 1 or args.load < 0:
        parser.error("--seconds must be > 0, --rounds >= 1 and --load >= 0")
    placements = [Placement(name) for name in args.placements.split(",")]
    period_s = 1.0 / args.rate_hz
    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
    args.output.mkdir(parents=True, exist_ok=True)
    segments: dict[Placement, list[dict]] = {p: [] for p in placements}
    load = start_load(args.load)
    started = time.time()
    try:
        with tempfile.TemporaryDirectory() as workdir:
            for round_index in range(args.rounds):
                shift = round_index % len(placements)
                for position, placement in enumerate(placements[shift:] + placements[:shift]):
                    print(f"round {round_index + 1}/{args.rounds}: {placement.value}", flush=True)
                    segments[placement].append(
                        run_segment(
                            placement,
                            args.seconds / args.rounds,
                            period_s,
                            args.thread_priority,
                            args.domain_id,
                            pathlib.Path(workdir),
                            round_index * len(placements) + position,
                        )
                    )
    finally:
        stop_processes(load)
    results, samples = {}, {}
    for placement, parts in segments.items():
        results[placement.value], samples[placement.value] = summarize(parts, period_s)
    report = {
        "benchmark": "rtc_ros.bench.controller_timing",
        "command": " ".join(
            [
                "python -m rtc_ros.bench.controller_timing",
                *(argv if argv is not None else sys.argv[1:]),
            ]
        ),
        "created_utc": datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(
            timespec="seconds"
        ),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "load_average_at_end": os.getloadavg(),
        },
        "settings": {
            "seconds_per_placement": args.seconds,
            "rounds": args.rounds,
            "load_processes": args.load,
            "rate_hz": args.rate_hz,
            "thread_priority": args.thread_priority,
        },
        "results": results,
    }
    (args.output / "timing.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(
        samples,
        args.output / "timing.png",
        f"{args.rate_hz:g} Hz control loop beside CPU inference and {args.load} busy processes",
    )
    print(format_table(results))
    print(f"wrote {args.output / 'timing.json'} and {args.output / 'timing.png'}")


def format_table(results: dict[str, dict]) -> str:
    lines = [
        f"{'placement':<11}{'period error p50/p99/max ms':>30}{'publish jitter p50/p99/max':>30}"
        f"{'arrival jitter p50/p99/max':>30}{'interval p99':>14}"
    ]
    for placement, r in results.items():
        cells = [
            f"{r[m]['p50']:.3f}/{r[m]['p99']:.3f}/{r[m]['max']:.2f}"
            for m in ("period_error_ms", "publish_jitter_ms", "arrival_jitter_ms")
        ]
        lines.append(
            f"{placement:<11}{cells[0]:>30}{cells[1]:>30}{cells[2]:>30}"
            f"{r['arrival_interval_ms']['p99']:>14.3f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
