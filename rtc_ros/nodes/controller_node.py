"""Controller node for split deployments: chunks arrive as messages, commands leave at 50 Hz.

It does the handover itself with the same bookkeeping as the composed node: a subscription
callback validates each ``chunks`` message and publishes it into a lock-free slot; the control
loop (its own thread, in a process without torch) reads the slot every tick and publishes
``commands`` and ``controller_tick``. A managed node: ``configure`` checks the parameters and
subscribes; ``activate`` starts the loop once fresh joint states of every joint are in, from the
measured positions, so the first command is rate limited like every other one; ``deactivate``
stops it after a complete tick (the robot holds the last command).

Each activation draws a new run id, published on every ``controller_tick``; the inference node
stamps each chunk with the run id it planned from. A chunk planned for another run (e.g. the
last chunk before this node was deactivated or restarted, redelivered by transient-local QoS)
is rejected, counted and logged: its ticks count on a clock that no longer exists.

The loop's thread gets the real-time settings (parameters ``thread_priority``, ``cpu_affinity``,
``lock_memory``; this process holds no torch, so locking its memory is cheap), logs once what
the system granted, and ``/diagnostics`` reports it with the loop's timing (``controller_tick``
does not carry it).
"""

from __future__ import annotations

import dataclasses
import sys
import threading

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import JointState

from rtc_ros.core.handover import AtomicSlot
from rtc_ros.core.scheduler import ChunkExecutor, new_run_id
from rtc_ros.msg import ActionChunk, ControllerTick
from rtc_ros.nodes import parameters
from rtc_ros.nodes.controller_links import CHUNK_QOS, QOS_OVERRIDES, CommandPublisher
from rtc_ros.nodes.diagnostics import HealthMonitor, diagnostic_array
from rtc_ros.nodes.lifecycle import ManagedNode
from rtc_ros.nodes.messages import controller_tick_message, message_to_chunk
from rtc_ros.nodes.runner import STEADY, run
from rtc_ros.runtime.command_filter import CommandFilter
from rtc_ros.runtime.control_loop import ControllerReport, ControlLoop
from rtc_ros.runtime.observation import ObservationAssembler, ObservationError, ObservationSpec
from rtc_ros.runtime.realtime import RealtimeStatus

CONTROLLER_PARAMETERS = (
    "joint_names",
    "position_lower",
    "position_upper",
    "max_velocity",
    "control_rate_hz",
    "command_format",
    "command_groups",
    "prediction_horizon",
    "min_execution_horizon",
    "method",
    "hardware_id",
    "max_clock_skew_s",
    "thread_priority",
    "cpu_affinity",
    "lock_memory",
)


class ControllerNode(ManagedNode):
    def __init__(self, node_name: str = "rtc_controller", **node_kwargs) -> None:
        super().__init__(node_name, **node_kwargs)
        parameters.declare(self, CONTROLLER_PARAMETERS)
        parameters.on_change(self, self._apply_parameters)
        self.params: parameters.RtcParameters | None = None
        self.rejected_chunks = 0
        self.loop: ControlLoop | None = None
        self._thread: threading.Thread | None = None
        self._awaiting_joint_states = False

    # -- lifecycle ---------------------------------------------------------------------
    def configure_runtime(self) -> None:
        p = parameters.read(self)
        self._chunks: AtomicSlot = AtomicSlot()
        self._tick_publisher = self.create_lifecycle_publisher(
            ControllerTick, "controller_tick", CHUNK_QOS
        )
        self._commands = CommandPublisher(self, p.command_format, p.command_groups, p.period_s)
        self._joints = ObservationAssembler(
            ObservationSpec(
                p.joint_names, (), (3, 1, 1), max_age_s=1.0, max_future_s=p.max_clock_skew_s
            )
        )
        self.create_subscription(
            ActionChunk, "chunks", self._on_chunk, CHUNK_QOS, qos_overriding_options=QOS_OVERRIDES
        )
        self.create_subscription(
            JointState,
            "joint_states",
            self._on_joint_state,
            qos_profile_sensor_data,
            qos_overriding_options=QOS_OVERRIDES,
        )
        self._diagnostics_publisher = self.create_lifecycle_publisher(
            DiagnosticArray, "/diagnostics", 10
        )
        self.health = HealthMonitor(p.prediction_horizon, p.period_s, "controller")
        self._report = ControllerReport()
        # Last: creating the publishers declares QoS parameters, which calls _apply_parameters.
        self.params = p

    def activate_runtime(self) -> None:
        p = self.params
        self._chunks = AtomicSlot()
        self._filter = CommandFilter(p.joint_limits())
        self._executor_specs = AtomicSlot()
        self.loop = ControlLoop(
            p.period_s,
            ChunkExecutor(p.executor_spec(), new_run_id()),
            self._chunks,
            AtomicSlot(),
            self._filter,
            self._commands,
            on_tick=self._on_tick,
            robot_connected=self._commands.connected,
            executor_specs=self._executor_specs,
            realtime_settings=p.realtime_settings(),
            measured_positions=self._joints.joint_positions,
            on_realtime_applied=self._log_realtime,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self.loop.run, args=(self._stop,), name="rtc_control", daemon=True
        )
        self._health_timer = self.create_timer(1.0, self._publish_health, clock=STEADY)
        self._awaiting_joint_states = True

    def deactivate_runtime(self) -> None:
        self._awaiting_joint_states = False
        if self._thread is not None:
            self._stop.set()
            if self._thread.is_alive():
                self._thread.join(2.0)
            self._thread = None
            self.destroy_timer(self._health_timer)

    def release_runtime(self) -> None:
        """Nothing heavy is held: the loop stopped at deactivation, ROS entities go at cleanup."""
        self.params = None

    def _apply_parameters(self, params: parameters.RtcParameters) -> None:
        """A new s_min changes the synchronous baseline's pause from the loop's next tick on."""
        if self.params is None:
            return  # unconfigured: configure reads them
        self.params = params
        if self.loop is not None:
            self._executor_specs.publish(params.executor_spec())
        self._joints.set_time_limits(self._joints.spec.max_age_s, params.max_clock_skew_s)

    # -- callbacks ---------------------------------------------------------------------
    def _on_joint_state(self, message: JointState) -> None:
        stamp = message.header.stamp.sec + message.header.stamp.nanosec * 1e-9
        now_s = self.get_clock().now().nanoseconds * 1e-9
        try:
            self._joints.add_joint_state(message.name, message.position, stamp, now_s)
        except ObservationError as error:
            self.get_logger().warning(f"rejected joint state: {error}", throttle_duration_sec=5.0)
            return
        if not self._awaiting_joint_states:
            return
        fresh, _ = self._joints.assemble(now_s)
        if fresh is not None:  # every configured joint seen, none stale
            self._awaiting_joint_states = False
            self._filter.reset(self._joints.joint_positions())
            self._thread.start()
            self.get_logger().info("joint states received: control loop started")

    def _log_realtime(self, status: RealtimeStatus) -> None:
        """Once, as the loop starts: what it got, and if anything was refused, the one warning
        that names how to allow it.
        """
        self.get_logger().info(f"control loop real-time settings: {status.summary}")
        if status.warning:
            self.get_logger().warning(status.warning)

    def _on_chunk(self, message: ActionChunk) -> None:
        try:
            chunk = message_to_chunk(
                message, self.params.joint_names, self.params.prediction_horizon
            )
        except ValueError as error:
            self.rejected_chunks += 1
            self.get_logger().error(
                f"rejected chunk {message.sequence}: {error}", throttle_duration_sec=2.0
            )
            return
        if self.loop is None:
            # Not activated yet: the transient-local chunk is redelivered at subscription only.
            return
        state = self.loop.executor.state
        if not state.plans(chunk):
            # E.g. the last chunk of a previous run of this node, kept by transient-local QoS: its
            # ticks count on a clock that no longer exists.
            self.rejected_chunks += 1
            self.get_logger().warning(
                f"rejected chunk {message.sequence}: planned for controller run {chunk.run_id} "
                f"epoch {chunk.epoch}, "
                f"this controller is run {state.run_id} epoch {state.epoch}",
                throttle_duration_sec=2.0,
            )
            return
        self._chunks.publish(chunk)

    def _on_tick(self, result, command) -> None:
        # Counters live, percentiles as of the last health report (sorting a window per tick
        # would cost the control loop for a figure read once a second).
        report = dataclasses.replace(
            self._report,
            commands_published=self.loop.commands_published,
            swaps=self.loop.executor.swaps,
            underruns=self.loop.executor.underruns,
        )
        self._tick_publisher.publish(
            controller_tick_message(
                self.loop.executor.state, report, self.params.period_s, self.get_clock().now()
            )
        )

    def _publish_health(self) -> None:
        self._report = self.loop.report()
        health = self.health.controller(
            dataclasses.replace(
                self._report, rejected_chunks=self._report.rejected_chunks + self.rejected_chunks
            )
        )
        self._diagnostics_publisher.publish(
            diagnostic_array(
                self.get_clock().now(),
                self.get_fully_qualified_name(),
                self.params.hardware_id,
                {"controller": health},
            )
        )


def main(args=None) -> None:
    run(ControllerNode, args, usage=__doc__)


if __name__ == "__main__":
    main(sys.argv)
