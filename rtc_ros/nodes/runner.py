"""What every node's ``main`` shares: init, spin until Ctrl-C, stop the runtime, shut down.

Kept apart from the nodes so that a node without torch (controller, simulator) runs with the
same plumbing as the inference node without importing it.

Exit status: 0 after Ctrl-C; 2 when the node cannot be configured (a bad parameter or a missing
file: one line naming it, no traceback); 1 when it fails while running (its ``failure``
attribute says why), so that launch can shut the system down or respawn the node.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable

import rclpy
import rclpy.logging
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

STEADY = Clock(clock_type=ClockType.STEADY_TIME)
"""For the nodes' periodic work: ``use_sim_time`` without a /clock cannot stall it."""


def ros_arguments(argv: list[str]) -> list[str]:
    """The arguments after --ros-args (up to a lone --), to hand on to a child process."""
    if "--ros-args" not in argv:
        return []
    tail = argv[argv.index("--ros-args") + 1 :]
    return tail[: tail.index("--")] if "--" in tail else tail


def print_usage_if_asked(argv: list[str], usage: str) -> bool:
    """``--help`` or ``-h`` before any ``--ros-args``: print
    ``usage`` and the ROS arguments' forms.
    """
    own = argv[1 : argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    if not {"-h", "--help"} & set(own):
        return False
    print(
        f"{usage.strip()}\n\nROS arguments: --ros-args [-p name:=value] [--params-file FILE] "
        "[-r from:=to] [--log-level LEVEL]\nParameters: see config/bimanual.yaml."
    )
    return True


def run(node_factory: Callable[[], Node], args: list[str] | None = None, usage: str = "") -> None:
    """The ``main`` of every node: init, spin until Ctrl-C, stop the
    runtime, destroy the node, shut down.
    """
    if print_usage_if_asked(list(sys.argv if args is None else args), usage):
        return
    # rclpy's SIGINT handler would shut the context down at once, under the inference worker, the
    # control loop and the callbacks still publishing; and under ros2 launch a terminal's Ctrl-C
    # arrives twice (to the process group, then from launch), the second one inside this cleanup.
    # So SIGINT only ends the spin loop; SIGTERM keeps rclpy's handler. One executor thread: when
    # the loop ends no callback is still running (the runtime's threads do the real-time work).
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.SIGTERM)
    except RuntimeError as error:  # rcl's argument errors, e.g. a missing --params-file
        print(f"cannot start: {error}", file=sys.stderr)
        sys.exit(2)
    interrupted = threading.Event()
    signal.signal(signal.SIGINT, lambda signum, frame: interrupted.set())
    node = None
    exit_status = 0
    try:
        node = node_factory()
        if hasattr(node, "bring_up"):  # a managed node: configured and activated if asked to
            node.bring_up()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok() and not interrupted.is_set() and getattr(node, "failure", None) is None:
            executor.spin_once(timeout_sec=0.1)  # the SIGINT handler runs between waits
        if getattr(node, "failure", None) is not None:
            exit_status = 1
    except ExternalShutdownException:
        pass
    except (ValueError, ParameterException, FileNotFoundError) as error:
        rclpy.logging.get_logger("rtc_ros").fatal(f"cannot start: {error}")
        exit_status = 2
    finally:
        if node is not None:
            if hasattr(node, "shutdown"):
                node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
    if exit_status:
        sys.exit(exit_status)
