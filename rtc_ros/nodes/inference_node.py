"""Inference node: observations in, RTC chunks out to the controller, health out to /diagnostics.

A managed node (:mod:`rtc_ros.nodes.lifecycle`): ``configure`` checks the parameters (see
:mod:`rtc_ros.nodes.parameters`), loads the policy and warms it up, and subscribes to
``joint_states`` and ``<camera>/image_raw``; ``activate`` starts, from the measured joint
positions, a controller link (thread, process or topic) and a background
:class:`InferenceWorker` running the core's planner and guided sampler, and publishes 1 Hz
``/diagnostics`` and ``~/status`` and every chunk on ``~/chunks``; ``deactivate`` stops both
and the robot holds its last command; ``cleanup`` releases the policy and its GPU memory.

A control loop of its own (thread or process) that dies is fatal: within a tenth of a second
the node reports it as ERROR on /diagnostics, logs it, stops inference and exits non-zero,
so that launch can shut the system down or respawn the node. Nothing is commanded meanwhile.
Periodic work runs on the steady clock, so ``use_sim_time`` without a /clock cannot stall it.

``~/hold`` (std_msgs/Bool) is for the robot's resets between episodes: true stops commanding at
once and drops every chunk, the executing one and any being computed; false resumes from the
measured joint state with a fresh chunk, made from the first observation stamped after it.
"""

from __future__ import annotations

import enum
import gc
import os
import sys

import numpy as np
import rclpy.parameter
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.duration import Duration
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, String

from rtc_ros.core.methods import ChunkGenerator
from rtc_ros.core.scheduler import Chunk, InferencePlanner
from rtc_ros.msg import ActionChunk, RtcStatus
from rtc_ros.nodes import parameters
from rtc_ros.nodes.controller_links import (
    CHUNK_QOS,
    QOS_OVERRIDES,
    ProcessControllerLink,
    ThreadControllerLink,
    TopicControllerLink,
)
from rtc_ros.nodes.diagnostics import (
    ERROR,
    OK,
    Health,
    HealthMonitor,
    diagnostic_array,
    status_message,
)
from rtc_ros.nodes.lifecycle import ManagedNode
from rtc_ros.nodes.messages import ObservationError, chunk_to_message, image_message_to_array
from rtc_ros.nodes.parameters import ControllerPlacement, RtcParameters
from rtc_ros.nodes.runner import STEADY, run
from rtc_ros.policies.registry import PolicyLoadError, RobotSetup, load_policy
from rtc_ros.runtime.control_loop import ControlMode
from rtc_ros.runtime.inference_worker import InferenceWorker
from rtc_ros.runtime.observation import ObservationAssembler, ObservationSpec
from rtc_ros.runtime.stats import RollingStats


def _stamp_s(header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


class Phase(enum.Enum):
    STARTING = "starting"
    """Active, waiting for the first complete observation."""
    RUNNING = "running"
    HOLDING = "holding"
    """Told to hold (the robot is being reset): nothing is commanded or planned."""
    RESUMING = "resuming"
    """Released: waiting for an observation stamped after the release."""
    INACTIVE = "inactive"
    """Unconfigured or inactive (lifecycle): nothing is commanded or planned."""


class InferenceNode(ManagedNode):
    def __init__(
        self,
        node_name: str = "rtc",
        placement: ControllerPlacement | None = None,
        ros_args: list[str] | None = None,
        **node_kwargs,
    ) -> None:
        super().__init__(node_name, **node_kwargs)
        parameters.declare(self)
        parameters.on_change(self, self._apply_parameters)
        self._requested_placement = placement
        self._ros_args = ros_args or []
        self.params: RtcParameters | None = None
        self.policy = None
        self.worker: InferenceWorker | None = None
        self.failure: str | None = None
        """Why the node must stop (its control loop died); :func:`run` then exits non-zero."""
        self.phase = Phase.INACTIVE

    # -- lifecycle ---------------------------------------------------------------------
    def configure_runtime(self) -> None:
        p = self.params = parameters.read(self)
        self.placement = self._requested_placement or p.controller
        if p.device == "cpu":
            # Idle OpenMP workers spin on every core; the control loop needs one of them.
            torch.set_num_threads(p.cpu_threads or max(1, (os.cpu_count() or 2) - 1))
        robot = RobotSetup(p.joint_names, p.camera_names)
        self.loaded = load_policy(p.policy, p.device, p.policy_type, robot)
        self.loaded.check_robot(robot)
        self.policy = self.loaded.policy
        if self.policy.prediction_horizon != p.prediction_horizon:
            raise PolicyLoadError(
                f"policy {self.loaded.label} makes chunks of {self.policy.prediction_horizon} "
                f"actions but prediction_horizon={p.prediction_horizon}"
            )
        self.loaded.set_task(p.task)
        self.get_logger().info(f"policy: {self.loaded.label}")
        if not self.loaded.interface.trained:
            self.get_logger().warning(
                f"policy {self.loaded.kind.value} has random weights: the robot will move "
                "but not solve a task"
            )
        self.image_shape = (3, p.image_height, p.image_width)
        self.assembler = ObservationAssembler(
            ObservationSpec(
                p.joint_names,
                p.camera_names,
                self.image_shape,
                p.max_observation_age_s,
                p.max_clock_skew_s,
            )
        )
        self._waiting_reason = "no observation yet"
        self.observation_ages_ms = RollingStats(window=1000)
        self._hold_requested = False
        self._hold_announced = False
        self._mode_request = 0
        # The link first: the subscriptions' callbacks hand it the measured joint positions.
        if self.placement is ControllerPlacement.THREAD:
            self.link = ThreadControllerLink(self, p)
        elif self.placement is ControllerPlacement.PROCESS:
            self.link = ProcessControllerLink(self, p, self._ros_args)
        else:
            self.link = TopicControllerLink(self, p)

        self.create_subscription(
            JointState,
            "joint_states",
            self._on_joint_state,
            qos_profile_sensor_data,
            qos_overriding_options=QOS_OVERRIDES,
        )
        for camera in p.camera_names:
            self.create_subscription(
                Image,
                f"{camera}/image_raw",
                lambda m, c=camera: self._on_image(c, m),
                qos_profile_sensor_data,
                qos_overriding_options=QOS_OVERRIDES,
            )
        self.create_subscription(String, "~/task", self._on_task, 10)
        self._chunk_publisher = self.create_lifecycle_publisher(ActionChunk, "~/chunks", CHUNK_QOS)
        self._status_publisher = self.create_lifecycle_publisher(RtcStatus, "~/status", 10)
        self._diagnostics_publisher = self.create_lifecycle_publisher(
            DiagnosticArray, "/diagnostics", 10
        )
        self.create_subscription(Bool, "~/hold", self._on_hold, CHUNK_QOS)
        # On CUDA: preallocated buffers and one CUDA graph per mode for the denoising loop.
        self.generator = ChunkGenerator(self.policy, p.chunking_config())
        self.worker = self._new_worker()
        warm_up_s = self.worker.warm_up(self.assembler.placeholder())
        self.health = HealthMonitor(p.prediction_horizon, p.period_s, p.device)
        self._controller_failure: str | None = None
        emulated = f", inference padded to {p.emulated_latency_ms:.0f} ms (emulated latency)"
        self.get_logger().info(
            f"{p.method.value} ({p.guidance.value}) on {p.device}: H={p.prediction_horizon}, "
            f"s_min={p.min_execution_horizon}, n={p.num_steps}, beta={p.beta}, "
            f"controller={self.placement.value}"
            + (emulated if p.emulated_latency_ms else "")
            + f"; warm-up inference took {warm_up_s * 1e3:.0f} ms"
        )
        if self.placement is ControllerPlacement.TOPIC and self._requested_placement is None:
            self.get_logger().info("controller=topic: run controller_node to execute the chunks")

    def activate_runtime(self) -> None:
        self._controller_failure = None
        self.phase = Phase.STARTING
        self._timers = [
            self.create_timer(period_s, callback, clock=STEADY)
            for period_s, callback in (
                (0.05, self._start_when_observed),
                (0.1, self._watch_controller),
                (1.0, self._publish_health),
            )
        ]

    def deactivate_runtime(self) -> None:
        """No inference starts any more; the loop ends after a complete tick; then an inference
        still in flight is waited for (its chunk is executed by no one).

        The robot's controller holds the last command, which passed the command filter like
        every other; a new activation starts a fresh planner from the measured state.
        """
        for timer in getattr(self, "_timers", ()):
            self.destroy_timer(timer)
        self._timers = []
        if self.worker is not None:
            self.worker.stop(timeout_s=0.0)
        self.link.close()
        if self.worker is not None:
            self.worker.stop()
            self.worker = self._new_worker()
        self.phase = Phase.INACTIVE

    def release_runtime(self) -> None:
        """Drop the policy and the CUDA graphs so that their GPU memory returns to the device."""
        if self.worker is not None:
            self.worker.stop()
        self.worker = self.generator = self.policy = self.params = None
        gc.collect()
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()

    def _new_worker(self) -> InferenceWorker:
        p = self.params
        worker = InferenceWorker(
            InferencePlanner(
                p.prediction_horizon,
                p.min_execution_horizon,
                p.delay_window,
                p.initial_inference_delay,
                on_delay_clamped=self._on_delay_clamped,
            ),
            self.generator,
            self._observation,
            self.link.controller_state,
            self.link.publish_chunk,
            on_chunk=self._on_chunk,
            emulated_latency_s=p.emulated_latency_ms / 1e3,
            action_limits=(np.asarray(p.position_lower), np.asarray(p.position_upper)),
            observation_age_ticks=self._observation_age_ticks,
        )
        worker.reconfigure(
            p.inference_settings()
        )  # the generator keeps the settings of the last worker
        return worker

    # -- callbacks ---------------------------------------------------------------------
    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_joint_state(self, message: JointState) -> None:
        try:
            self.assembler.add_joint_state(
                message.name, message.position, _stamp_s(message.header), self._now_s()
            )
        except ObservationError as error:
            self.get_logger().warning(f"rejected joint state: {error}", throttle_duration_sec=5.0)
            return
        self.link.publish_measured(self.assembler.joint_positions())

    def _on_image(self, camera: str, message: Image) -> None:
        try:
            image = image_message_to_array(message, self.image_shape)
        except ObservationError as error:
            self.assembler.reject(f"camera {camera}: {error}")
            self.get_logger().warning(f"camera {camera}: {error}", throttle_duration_sec=5.0)
            return
        try:
            self.assembler.add_image(camera, image, _stamp_s(message.header), self._now_s())
        except ObservationError as error:
            self.get_logger().warning(f"rejected {error}", throttle_duration_sec=5.0)

    def _observation(self):
        observation, reason = self.assembler.assemble(self._now_s())
        self._waiting_reason = reason
        if observation is None:
            self.get_logger().warning(
                f"waiting for a usable observation: {reason}", throttle_duration_sec=5.0
            )
        return observation

    def _observation_for_inference(self):
        observation = self._observation()
        if observation is not None:
            self.observation_ages_ms.add(self.assembler.last_age_s * 1e3)
        return observation

    def _observation_age_ticks(self) -> int:
        """Ticks the controller executed since the joint positions of the last observation."""
        age_s = self.assembler.last_joint_state_age_s
        return int(age_s // self.params.period_s) if age_s > 0 else 0

    def _start_when_observed(self) -> None:
        """Start (or resume) the controller from the measured joint positions, so that its first
        step is rate limited; announce a hold as soon as the controller has taken it.
        """
        if self.phase is Phase.HOLDING and not self._hold_announced:
            state = self.link.controller_state()
            if state is not None and state.holding:
                self._hold_announced = True
                self._publish_status(
                    self.get_clock().now(), self.worker.report(), self.link.report()
                )
            return
        if self.phase not in (Phase.STARTING, Phase.RESUMING) or self._hold_requested:
            return
        observation = self._observation()
        if observation is None:
            return
        if self.phase is Phase.STARTING:
            self.link.start(self.assembler.joint_positions())
            self.worker.start()
            self.get_logger().info("observation complete: commanding")
        else:
            self._mode_request += 1
            self.link.set_mode(ControlMode(self._mode_request, holding=False))
            self.get_logger().info("resumed: a fresh chunk from the new observation")
        self.phase = Phase.RUNNING

    def _on_hold(self, message: Bool) -> None:
        self._hold_requested = message.data
        if message.data and self.phase is Phase.RUNNING:
            self._mode_request += 1
            self.link.set_mode(ControlMode(self._mode_request, holding=True))
            self.phase = Phase.HOLDING
            self._hold_announced = False
            self.get_logger().info("holding: nothing commanded, every chunk dropped")
        elif not message.data and self.phase is Phase.HOLDING:
            self.assembler.discard_before(self.get_clock().now().nanoseconds * 1e-9)
            self.phase = Phase.RESUMING

    def _on_chunk(self, chunk: Chunk) -> None:
        p = self.params
        self._chunk_publisher.publish(
            chunk_to_message(chunk, p.joint_names, self.get_clock().now(), p.method, p.guidance)
        )

    def _watch_controller(self) -> None:
        """A control loop that died is reported at once; if it was
        this node's own, the node stops.
        """
        failure = self.link.failure()
        if failure == self._controller_failure:
            return
        self._controller_failure = failure
        if failure is None:
            self.get_logger().info("controller is back")
            return
        if not self.link.FATAL:
            self.get_logger().error(f"controller lost: {failure}; chunks wait for it")
            self._publish_health()
            return
        self.worker.stop(timeout_s=0.0)
        self.failure = f"{failure}: nothing is commanded; stopping"
        self.get_logger().fatal(self.failure)
        self._publish_health()
        # Let /diagnostics reach its subscribers before the node is destroyed.
        self._diagnostics_publisher.wait_for_all_acked(Duration(seconds=0.5))

    def _on_delay_clamped(self, delay: int, limit: int) -> None:
        self.get_logger().warning(
            f"inference delay {delay} ticks exceeds H - s = {limit}: lower min_execution_horizon "
            "or speed up "
            "inference",
            throttle_duration_sec=5.0,
        )

    def _publish_health(self) -> None:
        now = self.get_clock().now()
        inference, controller = self.worker.report(), self.link.report()
        healths = {"inference delay": self.health.inference(inference)}
        if self._controller_failure is not None:
            healths["controller"] = Health(
                ERROR,
                f"controller lost: {self._controller_failure}",
                self.health.controller(controller).values,
            )
        elif self.placement is not ControllerPlacement.TOPIC:
            healths["controller"] = self.health.controller(controller)
            healths["controller"].values["phase"] = self.phase.value
            if self.phase in (Phase.HOLDING, Phase.RESUMING):
                healths["controller"] = Health(
                    OK,
                    f"{self.phase.value}: told to hold, nothing commanded",
                    healths["controller"].values,
                )
        healths["observations"] = self.health.observations(
            self.assembler.rejected,
            self.assembler.last_rejection,
            inference.waiting_for_observation or self.phase is Phase.STARTING,
            self._waiting_reason,
        )
        healths["observations"].values.update(
            {
                "observation_age_p50_ms": f"{self.observation_ages_ms.percentile(50):.1f}",
                "observation_age_max_ms": f"{self.observation_ages_ms.max():.1f}",
            }
        )
        self._diagnostics_publisher.publish(
            diagnostic_array(
                now, self.get_fully_qualified_name(), self.params.hardware_id, healths
            )
        )
        self._publish_status(now, inference, controller)

    def _publish_status(self, now, inference, controller) -> None:
        holding = self.phase is Phase.HOLDING and self._hold_announced
        self._status_publisher.publish(
            status_message(
                now,
                inference,
                controller,
                self.assembler.rejected,
                self.params.device,
                self.params.method.value,
                holding,
            )
        )

    def _apply_parameters(self, params: RtcParameters) -> None:
        """The one place where accepted run-time changes reach the runtime.

        The worker takes its new settings between two chunks, and the controller's executor its
        spec at its next tick (the synchronous baseline pauses after the new s_min).
        """
        if self.worker is None:
            return  # unconfigured: configure reads them
        self.params = params
        self.worker.reconfigure(params.inference_settings())
        self.link.reconfigure(params.executor_spec())
        self.assembler.set_time_limits(params.max_observation_age_s, params.max_clock_skew_s)
        self.loaded.set_task(params.task)  # read once per chunk, at the next encode

    def _on_task(self, message: String) -> None:
        """The topic sets the ``task`` parameter, so ``ros2 param get``
        shows what the policy is told.
        """
        result = self.set_parameters([rclpy.parameter.Parameter("task", value=message.data)])[0]
        if result.successful:
            self.get_logger().info(f"task: {message.data!r}")


def main(args=None) -> None:
    """Inference only; the controller is a separate ``controller_node`` reached over topics."""
    run(
        lambda: InferenceNode("rtc_inference", placement=ControllerPlacement.TOPIC),
        args,
        usage="inference_node: RTC inference; chunks to a controller_node on the chunks topic.\n"
        + __doc__,
    )


if __name__ == "__main__":
    main(sys.argv)
