"""What every node's ``main`` shares: init, spin until Ctrl-C, stop the runtime, shut down.

Kept apart from the nodes so that a node without torch (controller, simulator) runs with the
same plumbing as the inference node without importing it.
"""
from __future__ import annotations

import signal
import threading
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions


def ros_arguments(argv: list[str]) -> list[str]:
    """The arguments after --ros-args (up to a lone --), to hand on to a child process."""
    if "--ros-args" not in argv:
        return []
    tail = argv[argv.index("--ros-args") + 1:]
    return tail[:tail.index("--")] if "--" in tail else tail


def run(node_factory: Callable[[], Node], args: list[str] | None = None) -> None:
    """The ``main`` of every node: init, spin until Ctrl-C, stop the runtime, destroy the node, shut down."""
    # rclpy's SIGINT handler would shut the context down at once, under the inference worker, the
    # control loop and the callbacks still publishing; and under ros2 launch a terminal's Ctrl-C
    # arrives twice (to the process group, then from launch), the second one inside this cleanup.
    # So SIGINT only ends the spin loop; SIGTERM keeps rclpy's handler. One executor thread: when
    # the loop ends no callback is still running (the runtime's threads do the real-time work).
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.SIGTERM)
    interrupted = threading.Event()
    signal.signal(signal.SIGINT, lambda signum, frame: interrupted.set())
    node = None
    try:
        node = node_factory()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok() and not interrupted.is_set():
            executor.spin_once(timeout_sec=0.1)  # the SIGINT handler runs between waits
    except ExternalShutdownException:
        pass
    finally:
        if node is not None:
            if hasattr(node, "shutdown"):
                node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
