"""Controller-side cost of one handover read, with and without a new chunk.

    python -m rtc_ros.bench.handover [--reads N] [--chunk-shape H M] [--thread-priority P]
                                     [--[no-]verify-checksum] [--output DIR]

Times ``AtomicSlot.latest()`` (the controller in a thread) and ``SharedMemorySlot.latest()``
(the controller in its own process: copy, stamp checks and decode of a chunk, and the CRC32 of
the copy where the CPU needs it or ``--verify-checksum`` asks), each ``--reads`` times,
and reports the median and p99 in microseconds. The "new chunk" reads follow a publish of
another chunk each time, as when the inference side hands a chunk over; the returned chunk is
dropped before the next read, as the controller drops the chunk it replaced. The reads run as
the control process runs its ticks: at SCHED_FIFO ``--thread-priority`` (default 50; 0: normal
scheduling) with locked memory where the system permits it (the report says what was applied),
and with the garbage collector kept out of the reads. Needs numpy only (no torch, no rclpy).
Results go to DIR/handover.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rtc_ros.core.handover import TOTAL_STORE_ORDER, AtomicSlot, shared_chunk_slot
from rtc_ros.core.scheduler import Chunk
from rtc_ros.runtime.realtime import GarbageCollectorGuard, RealtimeSettings, realtime

READS = ("atomic_slot", "shared_memory_slot")


def measure_handover(
    chunk_shape: tuple[int, int], reads: int, verify_checksum: bool = not TOTAL_STORE_ORDER
) -> dict[str, dict[str, float]]:
    """Median and p99 (us) of one ``latest()`` per slot kind, with and without a new chunk."""
    rng = np.random.default_rng(0)
    chunks = [
        Chunk(rng.standard_normal(chunk_shape), start_tick=i, sequence=i + 1) for i in range(2)
    ]
    results: dict[str, dict[str, float]] = {}

    def timed(
        name: str, publish: Callable[[Chunk], None] | None, latest: Callable[[], Any]
    ) -> None:
        durations_ns = np.empty(reads)
        for i in range(reads):
            if publish is not None:
                publish(chunks[i % 2])
            started = time.perf_counter_ns()
            latest()
            durations_ns[i] = time.perf_counter_ns() - started
        results[name] = {
            "median_us": float(np.median(durations_ns)) / 1e3,
            "p99_us": float(np.percentile(durations_ns, 99)) / 1e3,
        }

    atomic: AtomicSlot[Chunk] = AtomicSlot()
    atomic.publish(chunks[0])
    timed("atomic_slot_unchanged", None, atomic.latest)
    timed("atomic_slot_new_chunk", atomic.publish, atomic.latest)
    name = f"rtc_handover_{os.getpid()}"
    writer = shared_chunk_slot(name, chunk_shape, create=True)
    reader = shared_chunk_slot(name, chunk_shape, verify_checksum=verify_checksum)
    try:
        writer.publish(chunks[0])
        reader.latest()
        timed("shared_memory_slot_unchanged", None, reader.latest)
        timed("shared_memory_slot_new_chunk", writer.publish, reader.latest)
    finally:
        reader.close()
        writer.close()
    return results


def run(
    chunk_shape: tuple[int, int],
    reads: int,
    thread_priority: int,
    verify_checksum: bool = not TOTAL_STORE_ORDER,
    command: str = "",
) -> dict:
    """Measure as the control process runs (real-time settings, garbage collector held)."""
    garbage = GarbageCollectorGuard()
    settings = RealtimeSettings(thread_priority=thread_priority, lock_memory=thread_priority > 0)
    with realtime(settings) as applied:
        garbage.start()
        try:
            results = measure_handover(chunk_shape, reads, verify_checksum)
        finally:
            garbage.stop()
    return {
        "benchmark": "rtc_ros.bench.handover",
        "command": command,
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "environment": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "platform": platform.platform(),
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        },
        "chunk_shape": list(chunk_shape),
        "reads": reads,
        "verify_checksum": verify_checksum,
        "realtime_applied": {
            "thread_priority": applied.thread_priority,
            "memory_locked": applied.memory_locked,
            "refused": list(applied.refused),
        },
        "handover_read_us": results,
    }


def format_results(results: dict[str, dict[str, float]]) -> str:
    lines = ["handover read (controller side)     median us    p99 us"]
    for name, result in results.items():
        lines.append(f"  {name:<34}{result['median_us']:9.3f}{result['p99_us']:10.3f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m rtc_ros.bench.handover", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--reads", type=int, default=50_000, help="timed reads per case")
    parser.add_argument("--chunk-shape", type=int, nargs=2, default=(50, 14), metavar=("H", "M"))
    parser.add_argument(
        "--thread-priority",
        type=int,
        default=RealtimeSettings().thread_priority,
        help="SCHED_FIFO priority of the reads, as the control loop's (0: normal scheduling)",
    )
    parser.add_argument(
        "--verify-checksum",
        action=argparse.BooleanOptionalAction,
        default=not TOTAL_STORE_ORDER,
        help="the shared-memory reader checks the CRC32 of each copy (default: only where the "
        "CPU's memory ordering needs it, see rtc_ros.core.handover)",
    )
    parser.add_argument("--output", type=pathlib.Path, help="folder for handover.json")
    args = parser.parse_args(argv)
    if args.reads < 1:
        parser.error(f"--reads must be >= 1, got {args.reads}")
    try:
        report = run(
            tuple(args.chunk_shape),
            args.reads,
            args.thread_priority,
            args.verify_checksum,
            " ".join(["python -m rtc_ros.bench.handover", *argv]),
        )
    except ValueError as error:
        parser.error(str(error))
    if report["realtime_applied"]["refused"]:
        print("refused: " + "; ".join(report["realtime_applied"]["refused"]))
    print(format_results(report["handover_read_us"]))
    if args.output is not None:
        args.output.mkdir(parents=True, exist_ok=True)
        path = args.output / "handover.json"
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
