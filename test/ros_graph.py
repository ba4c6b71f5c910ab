"""A private ROS 2 graph for one test: its own context and domain, an executor thread, helpers."""

from __future__ import annotations

import itertools
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import rclpy
import yaml
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter

CONFIG = pathlib.Path(__file__).resolve().parent.parent / "config" / "bimanual.yaml"
_domains = itertools.count(1 + os.getpid() % 50)


def config_overrides(**changes) -> list[Parameter]:
    """The bimanual config as parameter overrides, with ``changes`` applied."""
    values = dict(yaml.safe_load(CONFIG.read_text())["/**"]["ros__parameters"])
    values.update(changes)
    return [Parameter(name, value=value) for name, value in values.items()]


class RosGraph:
    def __init__(self) -> None:
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        self.domain_id = 100 + next(_domains) % 100
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=self.domain_id)
        self.executor = MultiThreadedExecutor(num_threads=4, context=self.context)
        self.nodes = []
        self.processes: list[subprocess.Popen] = []
        self.probe = self.add(rclpy.node.Node("test_probe", context=self.context))
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - the executor stops when the context shuts down
            pass

    def add(self, node):
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def add_active(self, node):
        """Add a managed node and bring it to active (configure, activate), as launch does."""
        from rclpy.lifecycle import TransitionCallbackReturn

        self.add(node)
        for transition in (node.trigger_configure, node.trigger_activate):
            result = transition()
            if result != TransitionCallbackReturn.SUCCESS:
                raise AssertionError(f"{node.get_name()}: {transition.__name__} returned {result}")
        return node

    def start_process(
        self,
        module: str,
        ros_args: list[str],
        log: pathlib.Path | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> subprocess.Popen:
        """A node in a process of its own (as on a robot) on this graph's domain; output to
        ``log``; ``preexec`` runs in the child before the node starts (e.g. to drop a
        permission).
        """

        def prepare_child() -> None:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            if preexec is not None:
                preexec()

        env = dict(
            os.environ,
            ROS_DOMAIN_ID=str(self.domain_id),
            ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        )
        output = subprocess.DEVNULL if log is None else log.open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", module, "--ros-args", *ros_args],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            preexec_fn=prepare_child,
        )
        self.processes.append(process)
        return process

    def activate(self, target: str) -> None:
        """Configure and activate the managed node ``target`` (in any process), as launch does."""
        client = LifecycleClient(self.probe, target)
        for transition in ("configure", "activate"):
            assert client.change(transition), f"{target} failed to {transition}"

    def collect(self, message_type, topic: str, qos=10, arrivals: list | None = None) -> list:
        """Every message received on ``topic``; with ``arrivals``, also when each arrived
        (time.monotonic()), for messages that carry no send time.
        """
        received = []

        def on_message(message) -> None:
            if arrivals is not None:
                arrivals.append(time.monotonic())
            received.append(message)

        self.probe.create_subscription(message_type, topic, on_message, qos)
        return received

    @staticmethod
    def rate_hz(arrivals: list[float], last: int = 150) -> float:
        """Messages per second over the ``last`` arrivals."""
        window = arrivals[-last:]
        return (len(window) - 1) / (window[-1] - window[0])

    @staticmethod
    def wait_for(predicate, timeout_s: float = 30.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
            time.sleep(0.05)

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        # The executor first, so that no callback runs while the nodes release what they hold.
        self.executor.shutdown(timeout_sec=2.0)
        for node in reversed(self.nodes):
            if hasattr(node, "shutdown"):
                node.shutdown()
        for node in self.nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(2.0)


class LifecycleClient:
    """A supervisor's view of one managed node: its ``get_state`` and ``change_state`` services."""

    def __init__(self, node, target: str) -> None:
        from lifecycle_msgs.srv import ChangeState, GetState

        self._get_state = node.create_client(GetState, f"{target}/get_state")
        self._change_state = node.create_client(ChangeState, f"{target}/change_state")

    def state(self, timeout_s: float = 30.0) -> str:
        """The node's state. Asked again until it answers: a node killed with -9 stays in the
        graph until its lease expires, and a request that reached only that one is lost.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                request = self._get_state.srv_type.Request()
                return self._call(self._get_state, request, timeout_s=2.0).current_state.label
            except AssertionError:
                if time.monotonic() > deadline:
                    raise

    def change(self, transition: str) -> bool:
        """Request a transition by label (configure, activate, deactivate, cleanup, shutdown)."""
        self.state()  # the node answers: the request reaches it
        request = self._change_state.srv_type.Request()
        request.transition.label = transition
        return self._call(self._change_state, request, timeout_s=60.0).success

    @staticmethod
    def _call(client, request, timeout_s: float = 10.0):
        if not client.wait_for_service(timeout_sec=timeout_s):
            raise AssertionError(f"service {client.srv_name} is not available")
        future = client.call_async(request)
        RosGraph.wait_for(future.done, timeout_s, f"a response from {client.srv_name}")
        return future.result()
