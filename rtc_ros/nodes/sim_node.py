"""Simulated bimanual robot node: behaves like the robot's ROS interface.

Subscribes to ``commands`` (the format the controller publishes), steps the simulator in real
time, publishes ``joint_states`` (sensor QoS) and ``<camera>/image_raw`` at their rates, and
reports the task on ``/diagnostics`` (``success``, ``target_distance_m``). Invalid commands
(wrong joints, NaN) are rejected with a warning; the arms keep tracking the last valid one.
With ``use_sim_time:=true`` it also publishes the simulated time on ``/clock`` (100 Hz), as a
simulator does, so that nodes running on simulated time have a clock.

Episodes: the world of one starts with the first command after its reset
(``start_episode_on_first_command``: the policy's first chunk is made before the world moves, as
in the in-process evaluation) and ends at the time limit or, with ``end_episode_on_success``, at
the first success (as the in-process evaluation counts them); ``~/episode`` carries every change.
The next one
starts at once (``reset_on_episode_end``) or when a message arrives on ``~/reset``, as an
evaluation harness that holds the controller during the reset wants it.
"""

from __future__ import annotations

import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Empty

from rtc_ros.core.config import parse_enum
from rtc_ros.msg import Episode
from rtc_ros.nodes.controller_links import COMMAND_QOS
from rtc_ros.nodes.messages import COMMAND_TYPES, array_to_image_message, command_positions
from rtc_ros.nodes.parameters import CommandFormat
from rtc_ros.nodes.runner import run
from rtc_ros.sim.bimanual import BimanualSim, episode_rng
from rtc_ros.sim.config import BimanualConfig

SIM_DECLARATIONS = {
    "command_format": (
        "joint_trajectory",
        "Command message the robot accepts (as the controller's)",
    ),
    "joint_state_rate_hz": (100.0, "Rate of joint_states (Hz)"),
    "camera_rate_hz": (15.0, "Rate of camera images (Hz)"),
    "camera_name": ("top", "Camera; publishes <camera_name>/image_raw"),
    "physics_rate_hz": (250.0, "How often the simulator is advanced to wall time (Hz)"),
    "seed": (
        0,
        "Seed of the simulator's random streams; episode k (from 1) draws from child k - 1 of "
        "it, as the in-process evaluation's episode k - 1 does",
    ),
    "reset_on_episode_end": (
        True,
        "Start a new episode (new cube positions) as soon as one ends; "
        "false: when a message arrives on ~/reset",
    ),
    "end_episode_on_success": (
        True,
        "End an episode at the first success (both cubes held), not only at the time limit",
    ),
    "start_episode_on_first_command": (
        True,
        "The world of an episode (its clock, time limit and moving cubes) "
        "starts with the first command after the reset, as an evaluation "
        "times a policy from when it takes control; false: at the reset",
    ),
}
EPISODE_QOS = QoSProfile(
    depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
"""Every change of the episode reaches a harness, one that joins late included."""


class SimNode(Node):
    def __init__(self, node_name: str = "bimanual_sim", **node_kwargs) -> None:
        super().__init__(node_name, **node_kwargs)
        values = {
            name: self.declare_parameter(
                name, default, ParameterDescriptor(description=text, read_only=True)
            ).value
            for name, (default, text) in SIM_DECLARATIONS.items()
        }
        self.command_format = parse_enum(CommandFormat, values["command_format"], "command_format")
        if not (
            values["joint_state_rate_hz"] > 0
            and values["camera_rate_hz"] > 0
            and values["physics_rate_hz"] > 0
        ):
            raise ValueError("joint_state_rate_hz, camera_rate_hz and physics_rate_hz must be > 0")
        self._seed = values["seed"]
        self.sim = BimanualSim(BimanualConfig(), episode_rng(self._seed, 0))
        self._reset_on_end = values["reset_on_episode_end"]
        self._end_on_success = values["end_episode_on_success"]
        self._start_on_command = values["start_episode_on_first_command"]
        self._waiting_for_command = self._start_on_command
        self.episode = 1
        self._running = True
        self._camera = values["camera_name"]
        self._lock = threading.Lock()
        self.rejected_commands = 0
        self.episodes = 0
        self.successes = 0
        self._joint_publisher = self.create_publisher(
            JointState, "joint_states", qos_profile_sensor_data
        )
        self._image_publisher = self.create_publisher(
            Image, f"{self._camera}/image_raw", qos_profile_sensor_data
        )
        self._diagnostics_publisher = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._episode_publisher = self.create_publisher(Episode, "~/episode", EPISODE_QOS)
        self.create_subscription(
            COMMAND_TYPES[self.command_format], "commands", self._on_command, COMMAND_QOS
        )
        self.create_subscription(Empty, "~/reset", self._on_reset, 10)
        self.create_timer(1.0 / values["joint_state_rate_hz"], self._publish_joint_state)
        self.create_timer(1.0 / values["camera_rate_hz"], self._publish_image)
        self.create_timer(1.0, self._publish_task)
        self._clock_publisher = (
            self.create_publisher(Clock, "/clock", 10)
            if self.get_parameter("use_sim_time").value
            else None
        )
        self._sim_time_ns = 0
        self._physics_period_s = 1.0 / values["physics_rate_hz"]
        self._stop = threading.Event()
        self._physics = threading.Thread(target=self._run_physics, name="sim_physics", daemon=True)
        self._physics.start()
        self._publish_episode(self._episode_message())

    def _on_command(self, message) -> None:
        try:
            positions = command_positions(self.command_format, self.sim.joint_names, message)
        except ValueError as error:
            self.rejected_commands += 1
            self.get_logger().warning(f"rejected command: {error}", throttle_duration_sec=2.0)
            return
        with self._lock:
            self.sim.set_command(positions)
            self._waiting_for_command = False

    def _on_reset(self, message: Empty) -> None:
        with self._lock:
            self._start_episode()
            started = self._episode_message()
        self._publish_episode(started)

    def _start_episode(self) -> None:
        """The next episode's world: its own cubes and arm pose; called with the lock held."""
        self.sim = BimanualSim(self.sim.config, episode_rng(self._seed, self.episode))
        self.episode += 1
        self._running = True
        self._waiting_for_command = self._start_on_command

    def _run_physics(self) -> None:
        """Advance the simulator to wall time at absolute deadlines."""
        last = time.monotonic()
        while not self._stop.wait(max(0.0, last + self._physics_period_s - time.monotonic())):
            now = time.monotonic()
            step_s = min(now - last, 0.1)
            changes = []
            with self._lock:
                if not self._waiting_for_command:
                    self.sim.step(step_s)
                success = self.sim.task_success()
                if self._running and (self.sim.episode_over or (self._end_on_success and success)):
                    self._running = False
                    self.episodes += 1
                    self.successes += int(success)
                    changes.append(self._episode_message(success))
                    if self._reset_on_end:
                        self._start_episode()
                        changes.append(self._episode_message())
            for message in changes:
                self._publish_episode(message)
            last = now
            self._publish_clock(step_s)

    def _publish_clock(self, step_s: float) -> None:
        """Simulated time since start (episode resets do not rewind it), every 10 ms of it."""
        if self._clock_publisher is None:
            return
        previous = self._sim_time_ns
        self._sim_time_ns += int(step_s * 1e9)
        if self._sim_time_ns // 10_000_000 != previous // 10_000_000:
            message = Clock()
            message.clock.sec, message.clock.nanosec = divmod(self._sim_time_ns, 1_000_000_000)
            self._clock_publisher.publish(message)

    def _episode_message(self, success: bool = False) -> Episode:
        """The episode as it is now; called with the lock held."""
        return Episode(
            episode=self.episode,
            running=self._running,
            success=success,
            time_s=self.sim.time_s,
            episodes_completed=self.episodes,
            episodes_succeeded=self.successes,
        )

    def _publish_episode(self, message: Episode) -> None:
        message.header.stamp = self.get_clock().now().to_msg()
        self._episode_publisher.publish(message)

    def _publish_joint_state(self) -> None:
        with self._lock:
            names, positions, velocities = self.sim.joint_state()
        message = JointState(
            name=list(names), position=positions.tolist(), velocity=velocities.tolist()
        )
        message.header.stamp = self.get_clock().now().to_msg()
        self._joint_publisher.publish(message)

    def _publish_image(self) -> None:
        with self._lock:
            pixels = self.sim.render()
        self._image_publisher.publish(
            array_to_image_message(pixels, self.get_clock().now(), self._camera)
        )

    def task_report(self) -> dict[str, str]:
        with self._lock:
            return {
                "success": str(self.sim.task_success()).lower(),
                "target_distance_m": ",".join(f"{d:.3f}" for d in self.sim.target_distances()),
                "episode_time_s": f"{self.sim.time_s:.2f}",
                "episodes_completed": str(self.episodes),
                "episodes_succeeded": str(self.successes),
                "rejected_commands": str(self.rejected_commands),
            }

    def _publish_task(self) -> None:
        values = self.task_report()
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status.append(
            DiagnosticStatus(
                level=DiagnosticStatus.OK,
                name=f"{self.get_fully_qualified_name()}: task",
                message="both cubes grasped"
                if values["success"] == "true"
                else "task in progress",
                hardware_id="bimanual_sim",
                values=[KeyValue(key=k, value=v) for k, v in values.items()],
            )
        )
        self._diagnostics_publisher.publish(array)

    def shutdown(self) -> None:
        self._stop.set()
        self._physics.join(1.0)


def main(args=None) -> None:
    run(SimNode, args, usage=__doc__)


if __name__ == "__main__":
    main(sys.argv)
