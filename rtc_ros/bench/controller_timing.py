"""Controller timing with torch inference running: control loop in a thread vs its own process.

    .venv/bin/python -m rtc_ros.bench.controller_timing [--seconds 30] [--rate-hz 50]

Runs the real runtime without ROS: an InferenceWorker generating RTC chunks back to back with
the reference policy on CPU (H=50, M=14, n=5, VJP), and a ControlLoop ticking at the rate,
first in a thread of the same process (chunks through an AtomicSlot), then in its own process
(chunks through shared memory). Prints period error p50/p99/max per placement and writes JSON
with --output. A benchmark, not a test: it reports figures and asserts nothing.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import threading
import time

import numpy as np
import torch

from rtc_ros.core.handover import AtomicSlot
from rtc_ros.core.config import ChunkingConfig
from rtc_ros.core.methods import ChunkGenerator
from rtc_ros.core.scheduler import ChunkExecutor, ExecutorSpec, InferencePlanner
from rtc_ros.policies.reference import ReferenceFlowPolicy, ReferencePolicyConfig
from rtc_ros.runtime.command_filter import CommandFilter, JointLimits
from rtc_ros.runtime.control_loop import ControlLoop, ControllerReport, ControlProcess, ControlProcessSpec
from rtc_ros.runtime.inference_worker import InferenceWorker

HORIZON, ACTION_DIM, STATE_DIM = 50, 14, 14
LIMITS = JointLimits(tuple(f"joint_{i}" for i in range(ACTION_DIM)), (-10.0,) * ACTION_DIM, (10.0,) * ACTION_DIM,
                     (1.0,) * ACTION_DIM)


def _discard(command: np.ndarray) -> None:
    """The command sink: the timing of interest is the loop's, not a transport's."""


@dataclasses.dataclass(frozen=True)
class DiscardSink:
    def __call__(self):
        return _discard


def _worker(controller_state, publish_chunk) -> InferenceWorker:
    torch.manual_seed(0)
    policy = ReferenceFlowPolicy(ReferencePolicyConfig(HORIZON, ACTION_DIM, STATE_DIM, image_shape=(3, 96, 96)))
    policy.eval().requires_grad_(False)
    observation = {"state": torch.zeros(1, STATE_DIM), "image": torch.zeros(1, 3, 96, 96, dtype=torch.uint8)}
    # s_min = 1: inference runs back to back, the worst case for the controller's timing (d is
    # then often clamped to H - s, which is expected here and not worth a warning).
    worker = InferenceWorker(InferencePlanner(HORIZON, 1, on_delay_clamped=lambda delay, limit: None),
                             ChunkGenerator(policy, ChunkingConfig(guidance="vjp")),
                             lambda: observation, controller_state, publish_chunk)
    worker.warm_up(observation)
    return worker


def _summary(report: ControllerReport, worker: InferenceWorker, placement: str) -> dict:
    return {"placement": placement, "ticks": report.ticks, "period_error_p50_ms": report.period_error_p50_ms,
            "period_error_p99_ms": report.period_error_p99_ms, "period_error_max_ms": report.period_error_max_ms,
            "chunks": worker.report().chunks, "chunk_latency_p50_ms": worker.report().latency_p50_ms}


def measure_thread(seconds: float, period_s: float) -> dict:
    chunks, states = AtomicSlot(), AtomicSlot()
    command_filter = CommandFilter(LIMITS)
    command_filter.reset(np.zeros(ACTION_DIM))
    loop = ControlLoop(period_s, ChunkExecutor(), chunks, states, command_filter, _discard)
    worker = _worker(states.latest, chunks.publish)
    worker.start()
    loop.run(threading.Event(), duration_s=seconds)
    worker.stop()
    return _summary(loop.report(), worker, "thread")


def measure_process(seconds: float, period_s: float) -> dict:
    process = ControlProcess(ControlProcessSpec(period_s, (HORIZON, ACTION_DIM), LIMITS, ExecutorSpec(), DiscardSink(),
                                                tuple([0.0] * ACTION_DIM)))
    worker = _worker(process.controller_state, process.publish_chunk)
    process.start()
    while process.report().ticks == 0:  # the child takes seconds to import and start
        time.sleep(0.05)
    worker.start()
    time.sleep(seconds)
    worker.stop()
    report = process.report()
    process.stop()
    return _summary(report, worker, "process")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate-hz", type=float, default=50.0)
    parser.add_argument("--output", type=pathlib.Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    period_s = 1.0 / args.rate_hz
    results = [measure_thread(args.seconds, period_s), measure_process(args.seconds, period_s)]
    print(f"{'placement':10s} {'ticks':>6s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s} {'chunks':>7s} "
          f"{'chunk p50 ms':>12s}")
    for r in results:
        print(f"{r['placement']:10s} {r['ticks']:6d} {r['period_error_p50_ms']:8.3f} {r['period_error_p99_ms']:8.3f} "
              f"{r['period_error_max_ms']:8.3f} {r['chunks']:7d} {r['chunk_latency_p50_ms']:12.1f}")
    if args.output:
        args.output.write_text(json.dumps({"rate_hz": args.rate_hz, "seconds": args.seconds, "results": results},
                                          indent=2))


if __name__ == "__main__":
    main()
