"""A robot-side subscriber for the controller timing benchmark: when the commands arrive.

    python -m rtc_ros.bench.command_subscriber --topic /ns/commands --output arrivals.npy \
        [--thread-priority 50] [--domain-id 0]

Subscribes to ``sensor_msgs/JointState`` commands as a ros2_control controller would
(RELIABLE, depth 1; its process at the controller's SCHED_FIFO priority when one is given, set
before DDS starts its threads so that they inherit it) and records, per message, the arrival
time (CLOCK_MONOTONIC, in the callback) and the header stamp the sender set when it published.
On SIGINT or SIGTERM it writes an (n, 2) int64 array of nanoseconds to ``--output`` and exits.
Prints ``ready`` once subscribed.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import JointState

from rtc_ros.nodes.controller_links import COMMAND_QOS
from rtc_ros.runtime.realtime import RealtimeSettings, realtime

MAX_MESSAGES = 1_000_000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--topic", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument(
        "--thread-priority", type=int, default=0, help="SCHED_FIFO priority; 0: normal"
    )
    parser.add_argument("--domain-id", type=int, default=None)
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    settings = RealtimeSettings(thread_priority=args.thread_priority, lock_memory=False)
    with realtime(settings) as status:
        if status.warning:
            print(status.warning, file=sys.stderr)
        records = np.zeros((MAX_MESSAGES, 2), dtype=np.int64)
        count = 0

        def on_command(message: JointState) -> None:
            nonlocal count
            if count < MAX_MESSAGES:
                records[count, 0] = time.monotonic_ns()
                records[count, 1] = (
                    message.header.stamp.sec * 1_000_000_000 + message.header.stamp.nanosec
                )
                count += 1

        context = rclpy.Context()
        rclpy.init(args=[], context=context, domain_id=args.domain_id)
        node = Node("rtc_timing_subscriber", context=context)
        node.create_subscription(JointState, args.topic, on_command, COMMAND_QOS)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        print("ready", flush=True)
        try:
            while not stop.is_set():
                executor.spin_once(timeout_sec=0.1)
        finally:
            np.save(args.output, records[:count])
            node.destroy_node()
            context.try_shutdown()


if __name__ == "__main__":
    main()
