"""How the inference node reaches the control loop: a thread, a process, or a topic.

All three offer the same small interface to the inference worker: ``controller_state()``,
``publish_chunk(chunk)``, ``publish_measured(positions)`` (the robot's newest joint positions,
where the first command of each epoch is rate limited from), ``report()``,
``start(initial_positions)``, ``reconfigure(executor)`` (a new s_min changes the synchronous
baseline's pause), ``set_mode(mode)`` (hold and resume), ``close()`` (stop commanding; a managed
node starts and closes a link at every activation and deactivation), and ``failure()``: why
the controller is gone (None while it runs), with ``FATAL`` saying whether the node must then
stop (a thread or process of its own) or wait for it (a remote controller).
"""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions

from rtc_ros.core.handover import AtomicSlot
from rtc_ros.core.scheduler import Chunk, ChunkExecutor, ControllerState, ExecutorSpec, new_run_id
from rtc_ros.msg import ActionChunk, ControllerTick
from rtc_ros.nodes.messages import (
    COMMAND_TYPES,
    CommandMessage,
    chunk_to_message,
    message_to_controller_report,
    message_to_controller_state,
)
from rtc_ros.nodes.parameters import CommandFormat, CommandGroup, RtcParameters
from rtc_ros.runtime.command_filter import CommandFilter
from rtc_ros.runtime.control_loop import (
    ControllerReport,
    ControlLoop,
    ControlMode,
    ControlProcess,
    ControlProcessSpec,
)

COMMAND_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
"""ros2_control's command subscriptions are RELIABLE: a BEST_EFFORT publisher never connects."""
CHUNK_QOS = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
"""Chunks and controller ticks: only the newest matters, and a late-joining controller (or a
chunk published before discovery completed) must still receive it."""
QOS_OVERRIDES = QoSOverridingOptions.with_default_policies()
"""Lets ``qos_overrides./<topic>.<publisher|subscription>.<policy>`` parameters change a topic's
QoS."""
CONTROLLER_TICK_TIMEOUT_S = 0.5
"""A remote controller that has not ticked for this long is reported as gone (25 ticks at 50
Hz)."""


class CommandPublisher:
    """Publishes one command per tick and command group, each group's joints to its own topic in
    the configured format, from the control loop's thread (it refills one preallocated message
    per group). The thread, the control process and the controller node all publish through it.
    """

    def __init__(
        self,
        node: Node,
        command_format: CommandFormat,
        groups: tuple[CommandGroup, ...],
        period_s: float,
    ) -> None:
        self._clock = node.get_clock()
        self._groups = [
            (
                CommandMessage(command_format, group.joint_names, period_s, group.action_indices),
                node.create_publisher(
                    COMMAND_TYPES[command_format],
                    group.topic,
                    COMMAND_QOS,
                    qos_overriding_options=QOS_OVERRIDES,
                ),
            )
            for group in groups
        ]

    def __call__(self, positions: np.ndarray) -> None:
        stamp = self._clock.now()
        for message, publisher in self._groups:
            publisher.publish(message.fill(positions, stamp))

    def connected(self) -> bool:
        """Every group's controller is subscribed: commanding one arm without the other would
        leave the other holding while the policy plans for both.
        """
        return all(publisher.get_subscription_count() > 0 for _, publisher in self._groups)


class ThreadControllerLink:
    """Control loop in a thread of this process; chunks and state
    through in-process atomic slots.
    """

    FATAL = True

    def __init__(self, node: Node, params: RtcParameters) -> None:
        self._params = params
        self._executor = params.executor_spec()
        self._commands = CommandPublisher(
            node, params.command_format, params.command_groups, params.period_s
        )
        self._chunks: AtomicSlot[Chunk] = AtomicSlot()
        self._states: AtomicSlot[ControllerState] = AtomicSlot()
        self._executor_specs: AtomicSlot[ExecutorSpec] = AtomicSlot()
        self._modes: AtomicSlot[ControlMode] = AtomicSlot()
        self._measured: AtomicSlot[np.ndarray] = AtomicSlot()
        self._loop: ControlLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, initial_positions: np.ndarray) -> None:
        """A fresh loop (a new run id) and fresh slots each time: nothing
        of an earlier activation runs.
        """
        p = self._params
        self._chunks, self._states, self._executor_specs = AtomicSlot(), AtomicSlot(), AtomicSlot()
        self._modes = AtomicSlot()
        command_filter = CommandFilter(p.joint_limits())
        command_filter.reset(initial_positions)
        # Priority and affinity for the loop's thread, but no mlockall: that would lock the
        # whole inference process, torch's (and CUDA's) mappings included.
        settings = dataclasses.replace(p.realtime_settings(), lock_memory=False)
        self._loop = ControlLoop(
            p.period_s,
            ChunkExecutor(self._executor, new_run_id()),
            self._chunks,
            self._states,
            command_filter,
            self._commands,
            robot_connected=self._commands.connected,
            executor_specs=self._executor_specs,
            realtime_settings=settings,
            modes=self._modes,
            measured_positions=self._measured.latest,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop.run, args=(self._stop,), name="rtc_control", daemon=True
        )
        self._thread.start()

    def controller_state(self) -> ControllerState | None:
        return self._states.latest()

    def publish_chunk(self, chunk: Chunk) -> None:
        self._chunks.publish(chunk)

    def reconfigure(self, executor: ExecutorSpec) -> None:
        self._executor = executor
        self._executor_specs.publish(executor)

    def set_mode(self, mode: ControlMode) -> None:
        self._modes.publish(mode)

    def publish_measured(self, positions: np.ndarray) -> None:
        self._measured.publish(positions)

    def report(self) -> ControllerReport:
        return ControllerReport() if self._loop is None else self._loop.report()

    def failure(self) -> str | None:
        if self._thread is None or self._thread.is_alive() or self._stop.is_set():
            return None
        return "control thread ended"

    def close(self) -> None:
        """Stop the loop after its current tick; :meth:`start` may run a new one."""
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(2.0)


@dataclasses.dataclass(frozen=True)
class RosCommandSinkFactory:
    """Creates, in the control process, its own rclpy context, node and command publisher."""

    node_name: str
    namespace: str
    domain_id: int
    ros_args: tuple[str, ...]
    command_format: CommandFormat
    command_groups: tuple[CommandGroup, ...]
    period_s: float

    def __call__(self) -> _ProcessCommandSink:
        return _ProcessCommandSink(self)


class _ProcessCommandSink:
    def __init__(self, factory: RosCommandSinkFactory) -> None:
        self._context = rclpy.Context()
        rclpy.init(
            args=["rtc_control", "--ros-args", *factory.ros_args],
            context=self._context,
            domain_id=factory.domain_id,
        )
        self._node = Node(factory.node_name, namespace=factory.namespace, context=self._context)
        self._commands = CommandPublisher(
            self._node, factory.command_format, factory.command_groups, factory.period_s
        )

    def __call__(self, positions: np.ndarray) -> None:
        self._commands(positions)

    def connected(self) -> bool:
        return self._commands.connected()

    def close(self) -> None:
        self._node.destroy_node()
        self._context.try_shutdown()


def _remaps_without_node_name(ros_args: list[str]) -> tuple[str, ...]:
    """The node's --ros-args minus its own name remap, so the
    control node gets a name of its own.
    """
    kept, skip = [], False
    for i, arg in enumerate(ros_args):
        if skip:
            skip = False
            continue
        if (
            arg in ("-r", "--remap")
            and i + 1 < len(ros_args)
            and ros_args[i + 1].startswith("__node:=")
        ):
            skip = True
            continue
        kept.append(arg)
    return tuple(a for a in kept if a != "--ros-args")


class ProcessControllerLink:
    """Control loop in its own process (node ``<name>_control``);
    shared-memory slots in between.
    """

    FATAL = True

    def __init__(self, node: Node, params: RtcParameters, ros_args: list[str]) -> None:
        self._node, self._params = node, params
        self._sink_factory = RosCommandSinkFactory(
            node_name=f"{node.get_name()}_control",
            namespace=node.get_namespace(),
            domain_id=node.context.get_domain_id(),
            ros_args=_remaps_without_node_name(ros_args),
            command_format=params.command_format,
            command_groups=params.command_groups,
            period_s=params.period_s,
        )
        self._executor = params.executor_spec()
        self._process: ControlProcess | None = None
        self._last_report = ControllerReport()
        self._closed = False

    def start(self, initial_positions: np.ndarray) -> None:
        p = self._params
        self._closed = False
        self._process = ControlProcess(
            ControlProcessSpec(
                period_s=p.period_s,
                chunk_shape=(p.prediction_horizon, len(p.joint_names)),
                limits=p.joint_limits(),
                executor=self._executor,
                make_sink=self._sink_factory,
                initial_positions=tuple(float(v) for v in initial_positions),
                realtime=p.realtime_settings(),
            )
        )
        self._process.start()

    def controller_state(self) -> ControllerState | None:
        return None if self._process is None else self._process.controller_state()

    def publish_chunk(self, chunk: Chunk) -> None:
        process = self._process
        if process is not None:  # None once closed: a chunk finished after that goes nowhere
            process.publish_chunk(chunk)

    def reconfigure(self, executor: ExecutorSpec) -> None:
        self._executor = executor
        process = self._process
        if process is not None:
            process.reconfigure(executor)

    def set_mode(self, mode: ControlMode) -> None:
        process = self._process
        if process is not None:
            process.set_mode(mode)

    def publish_measured(self, positions: np.ndarray) -> None:
        process = self._process
        if process is not None:
            process.publish_measured_positions(positions)

    def report(self) -> ControllerReport:
        return self._last_report if self._process is None else self._process.report()

    def failure(self) -> str | None:
        if self._process is None or self._process.is_alive() or self._closed:
            return None
        return f"control process {self._process.pid} exited with code {self._process.exitcode}"

    def close(self) -> None:
        """Stop the control process and remove its shared memory;
        :meth:`start` may start another.
        """
        self._closed = True
        process, self._process = self._process, None
        if process is not None:
            process.stop()
            self._last_report = process.report()


class TopicControllerLink:
    """A separate controller node: chunks out on ``chunks``, its state in on ``controller_tick``.

    Delays measured this way include the network, as they should.
    """

    FATAL = False

    def __init__(self, node: Node, params: RtcParameters) -> None:
        self._node, self._params = node, params
        self._ticks: AtomicSlot[ControllerTick] = AtomicSlot()
        self._last_tick_s: float | None = None
        self._publisher = node.create_publisher(
            ActionChunk, "chunks", CHUNK_QOS, qos_overriding_options=QOS_OVERRIDES
        )
        node.create_subscription(
            ControllerTick,
            "controller_tick",
            self._on_tick,
            CHUNK_QOS,
            qos_overriding_options=QOS_OVERRIDES,
        )

    def _on_tick(self, message: ControllerTick) -> None:
        self._ticks.publish(message)
        self._last_tick_s = time.monotonic()

    def start(self, initial_positions: np.ndarray) -> None:
        """The controller node seeds its command filter from joint states itself."""

    def controller_state(self) -> ControllerState | None:
        tick = self._ticks.latest()
        return None if tick is None else message_to_controller_state(tick)

    def publish_chunk(self, chunk: Chunk) -> None:
        p = self._params
        self._publisher.publish(
            chunk_to_message(
                chunk, p.joint_names, self._node.get_clock().now(), p.method, p.guidance
            )
        )

    def reconfigure(self, executor: ExecutorSpec) -> None:
        """The controller node executes by its own parameters (set
        its min_execution_horizon too).
        """

    def publish_measured(self, positions: np.ndarray) -> None:
        """The controller node measures the joint positions itself."""

    def set_mode(self, mode: ControlMode) -> None:
        self._node.get_logger().error(
            "hold is not available with controller=topic: the controller node keeps "
            "executing its chunks",
            throttle_duration_sec=5.0,
        )

    def report(self) -> ControllerReport:
        tick = self._ticks.latest()
        return ControllerReport() if tick is None else message_to_controller_report(tick)

    def failure(self) -> str | None:
        """A controller that ticked and then fell silent (stopped,
        crashed, or the network is down).
        """
        if self._last_tick_s is None:
            return None
        silent_s = time.monotonic() - self._last_tick_s
        if silent_s <= CONTROLLER_TICK_TIMEOUT_S:
            return None
        return f"no controller_tick for {silent_s:.1f} s"

    def close(self) -> None:
        pass
