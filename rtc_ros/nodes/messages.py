"""Conversions between ROS messages and the runtime's numpy/torch objects."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Duration
from rclpy.time import Time
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from rtc_ros.core.config import GuidanceMode, Method
from rtc_ros.core.scheduler import Chunk, ControllerState
from rtc_ros.msg import ActionChunk, ControllerTick
from rtc_ros.nodes.parameters import CommandFormat
from rtc_ros.runtime.control_loop import ControllerReport
from rtc_ros.runtime.observation import ObservationError, image_to_array

try:  # ROS 2's cv_bridge, where installed (the PyPI "cv-bridge" is ROS 1's and is not used)
    from cv_bridge import CvBridge
except ImportError:
    CvBridge = None

COMMAND_TYPES = {
    CommandFormat.JOINT_TRAJECTORY: JointTrajectory,
    CommandFormat.FLOAT64_MULTI_ARRAY: Float64MultiArray,
    CommandFormat.JOINT_STATE: JointState,
}


class CommandMessage:
    """The command message in the format the robot's controller expects, built once and refilled
    every tick: the positions go into the message's own float64 array, the stamp into its
    header, so that the control loop builds no message, list or float per tick.

    ``action_indices`` pick this message's joints out of the whole action vector (one command
    group); None: all of them, in order.

    A JointTrajectory keeps ``header.stamp`` zero, which joint_trajectory_controller reads as
    "start now" (when it receives the message), and its one point is due one control period
    later, when the next command replaces it. A stamp set by the sender would make the controller
    drop every command that arrives later than stamp + ``time_from_start`` by its own clock, and
    shorten the motion to the point by the transport delay (README: Command groups).
    """

    def __init__(
        self,
        command_format: CommandFormat,
        joint_names: Sequence[str],
        period_s: float,
        action_indices: Sequence[int] | None = None,
    ) -> None:
        zeros = [0.0] * len(joint_names)
        if command_format is CommandFormat.FLOAT64_MULTI_ARRAY:
            self.message = Float64MultiArray(data=zeros)
            positions = self.message.data
        elif command_format is CommandFormat.JOINT_STATE:
            self.message = JointState(name=list(joint_names), position=zeros)
            positions = self.message.position
        else:
            seconds, fraction = divmod(period_s, 1.0)
            point = JointTrajectoryPoint(
                positions=zeros,
                time_from_start=Duration(sec=int(seconds), nanosec=int(round(fraction * 1e9))),
            )
            self.message = JointTrajectory(joint_names=list(joint_names), points=[point])
            positions = point.positions
        # The message keeps float64 arrays in an array.array: written in place through this view.
        self._positions = np.frombuffer(positions, dtype=np.float64)
        self._indices = (
            np.arange(len(joint_names))
            if action_indices is None
            else np.asarray(action_indices, dtype=np.intp)
        )
        self._stamp = (
            self.message.header.stamp if command_format is CommandFormat.JOINT_STATE else None
        )

    def fill(self, positions: np.ndarray, stamp: Time):
        """The message, now carrying its joints' values of ``positions`` (and ``stamp``, where
        the format stamps commands).
        """
        # mode="clip" writes straight into the message: "raise" would buffer the result first.
        np.take(positions, self._indices, out=self._positions, mode="clip")
        if self._stamp is not None:
            self._stamp.sec, self._stamp.nanosec = divmod(stamp.nanoseconds, 1_000_000_000)
        return self.message


def command_positions(
    command_format: CommandFormat, joint_names: Sequence[str], message
) -> np.ndarray:
    """Positions in ``joint_names`` order from a command message (the simulator's side)."""
    if command_format is CommandFormat.FLOAT64_MULTI_ARRAY:
        values = np.asarray(message.data, dtype=np.float64)
        if values.shape != (len(joint_names),):
            raise ValueError(f"command has {values.size} values, expected {len(joint_names)}")
        return values
    if command_format is CommandFormat.JOINT_STATE:
        names, positions = list(message.name), list(message.position)
    else:
        if len(message.points) == 0:
            raise ValueError("joint trajectory command has no points")
        names, positions = list(message.joint_names), list(message.points[-1].positions)
    if len(names) != len(positions):
        raise ValueError(f"command has {len(names)} joint names but {len(positions)} positions")
    by_name = dict(zip(names, positions))
    missing = [n for n in joint_names if n not in by_name]
    if missing:
        raise ValueError(f"command lacks joints {missing}")
    return np.array([by_name[n] for n in joint_names], dtype=np.float64)


def image_message_to_array(message: Image, expected_shape: tuple[int, int, int]) -> np.ndarray:
    """sensor_msgs/Image -> (C, H, W) uint8, through cv_bridge when it is installed."""
    if CvBridge is not None and message.encoding in ("rgb8", "bgr8", "mono8"):
        pixels = CvBridge().imgmsg_to_cv2(message, desired_encoding="passthrough")
        return image_to_array(
            message.height,
            message.width,
            message.encoding,
            message.width * (1 if message.encoding == "mono8" else 3),
            np.ascontiguousarray(pixels).tobytes(),
            expected_shape,
        )
    return image_to_array(
        message.height,
        message.width,
        message.encoding,
        message.step,
        bytes(message.data),
        expected_shape,
    )


def array_to_image_message(pixels_hwc: np.ndarray, stamp: Time, frame_id: str) -> Image:
    """(H, W, 3) uint8 RGB -> sensor_msgs/Image rgb8."""
    height, width, _ = pixels_hwc.shape
    message = Image(height=height, width=width, encoding="rgb8", is_bigendian=0, step=width * 3)
    message.data = np.ascontiguousarray(pixels_hwc, dtype=np.uint8).tobytes()
    message.header.stamp = stamp.to_msg()
    message.header.frame_id = frame_id
    return message


def chunk_to_message(
    chunk: Chunk, joint_names: Sequence[str], stamp: Time, method: Method, guidance: GuidanceMode
) -> ActionChunk:
    """The chunk as a message; ``guidance`` is ``none`` for the methods that do not guide."""
    horizon, action_dim = chunk.actions.shape
    message = ActionChunk(
        joint_names=list(joint_names),
        prediction_horizon=horizon,
        action_dim=action_dim,
        start_tick=chunk.start_tick,
        inference_delay=chunk.inference_delay,
        execution_horizon=chunk.execution_horizon,
        method=method.value,
        guidance=guidance.value if method.guided else "none",
        latency_ms=float(chunk.latency_s * 1e3),
        sequence=chunk.sequence + 1,
        run_id=chunk.run_id,
        epoch=chunk.epoch,
    )
    message.actions = chunk.actions.astype(np.float32).ravel().tolist()
    message.header.stamp = stamp.to_msg()
    return message


def message_to_chunk(
    message: ActionChunk, joint_names: Sequence[str], prediction_horizon: int
) -> Chunk:
    """Validate an incoming chunk against the controller's configuration;
    ValueError says what is wrong.
    """
    if list(message.joint_names) != list(joint_names):
        raise ValueError(
            f"chunk joints {list(message.joint_names)} differ from the controller's "
            f"{list(joint_names)}"
        )
    shape = (message.prediction_horizon, message.action_dim)
    if shape != (prediction_horizon, len(joint_names)):
        raise ValueError(
            f"chunk is {shape[0]}x{shape[1]}, "
            f"the controller expects {prediction_horizon}x{len(joint_names)}"
        )
    actions = np.asarray(message.actions, dtype=np.float64)
    if actions.size != shape[0] * shape[1]:
        raise ValueError(f"chunk carries {actions.size} values for {shape[0]}x{shape[1]} actions")
    if not np.all(np.isfinite(actions)):
        raise ValueError("chunk contains NaN or infinite actions")
    return Chunk(
        actions.reshape(shape),
        message.start_tick,
        message.sequence - 1,
        message.inference_delay,
        message.execution_horizon,
        message.latency_ms / 1e3,
        message.run_id,
        message.epoch,
    )


def controller_tick_message(
    state: ControllerState, report: ControllerReport, period_s: float, stamp: Time
) -> ControllerTick:
    """Message sequences count from 1 so that 0 can mean "no chunk
    yet"; the core's count from 0.
    """
    message = ControllerTick(
        tick=state.tick,
        run_id=state.run_id,
        epoch=state.epoch,
        chunk_sequence=state.sequence + 1,
        chunk_start_tick=state.start_tick,
        observed_delay=state.observed_delay,
        period_s=period_s,
        commands_published=report.commands_published,
        swaps=report.swaps,
        underruns=report.underruns,
        period_error_p50_ms=report.period_error_p50_ms,
        period_error_p99_ms=report.period_error_p99_ms,
        period_error_max_ms=report.period_error_max_ms,
    )
    message.header.stamp = stamp.to_msg()
    return message


def message_to_controller_state(message: ControllerTick) -> ControllerState:
    return ControllerState(
        tick=message.tick,
        sequence=message.chunk_sequence - 1,
        start_tick=message.chunk_start_tick,
        observed_delay=message.observed_delay,
        run_id=message.run_id,
        epoch=message.epoch,
    )


def message_to_controller_report(message: ControllerTick) -> ControllerReport:
    """What a remote controller reports; the counters it keeps to itself stay at zero."""
    return ControllerReport(
        ticks=message.tick,
        commands_published=message.commands_published,
        swaps=message.swaps,
        underruns=message.underruns,
        period_error_p50_ms=message.period_error_p50_ms,
        period_error_p99_ms=message.period_error_p99_ms,
        period_error_max_ms=message.period_error_max_ms,
        thread_priority=-1,
    )


__all__ = [
    "COMMAND_TYPES",
    "ObservationError",
    "array_to_image_message",
    "chunk_to_message",
    "CommandMessage",
    "command_positions",
    "controller_tick_message",
    "image_message_to_array",
    "message_to_chunk",
    "message_to_controller_report",
    "message_to_controller_state",
]
