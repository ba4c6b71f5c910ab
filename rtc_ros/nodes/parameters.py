"""Declared parameters of the RTC nodes, and their validated snapshot.

Every parameter has a description and, where it makes sense, a range that rclpy enforces. H,
the joint names and anything that sizes buffers are read-only: they are fixed when the node
starts (from config/*.yaml). Cross-parameter rules (s_min < H, one limit per joint, ...) live
in :class:`RtcParameters`, a frozen dataclass built when a node is configured (a broken rule
fails the ``configure`` transition, named in the log). The tunable parameters are
those whose descriptor is not read-only (:func:`tunable_names`); :func:`on_change` checks a
run-time change as a whole new snapshot with the same code, refuses it when it breaks a rule,
and hands an accepted snapshot to the node, which passes it on to the runtime.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable, Sequence
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import InvalidTopicNameException, ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.validate_full_topic_name import validate_full_topic_name

from rtc_ros.core.config import ChunkingConfig, GuidanceMode, InferenceSettings, Method, parse_enum
from rtc_ros.core.scheduler import ExecutorSpec
from rtc_ros.runtime.command_filter import JointLimits
from rtc_ros.runtime.realtime import RealtimeSettings
from rtc_ros.sim.config import ARM_JOINT_SUFFIXES, ARMS


class CommandFormat(enum.Enum):
    JOINT_TRAJECTORY = "joint_trajectory"
    """trajectory_msgs/JointTrajectory with one point (ros2_control
    joint_trajectory_controller)."""
    FLOAT64_MULTI_ARRAY = "float64_multi_array"
    """std_msgs/Float64MultiArray in joint_names order (forward_command_controller)."""
    JOINT_STATE = "joint_state"
    """sensor_msgs/JointState with names and positions."""


class ControllerPlacement(enum.Enum):
    THREAD = "thread"
    """Control loop in a thread of the inference node's process, chunks in an in-process slot."""
    PROCESS = "process"
    """Control loop in its own process (no GIL contention with torch), chunks in shared memory."""
    TOPIC = "topic"
    """A separate controller node, possibly on another machine; chunks travel as messages."""


DEFAULT_COMMAND_TOPIC = "commands"


@dataclasses.dataclass(frozen=True)
class CommandGroup:
    """Joints commanded together on one topic, e.g. one arm's joint_trajectory_controller, which
    rejects a command naming a joint it does not own.
    """

    topic: str
    joint_names: tuple[str, ...]
    action_indices: tuple[int, ...]
    """Where each joint's value sits in the policy's action vector (``joint_names`` order)."""


def parse_command_groups(
    entries: Sequence[str] | None, joint_names: Sequence[str]
) -> tuple[CommandGroup, ...]:
    """``command_groups`` entries, each ``"TOPIC: JOINT, JOINT, ..."``, as groups; ValueError
    unless every joint is in exactly one group. None or empty: every joint on ``commands``.
    """
    if not entries:
        return (
            CommandGroup(
                DEFAULT_COMMAND_TOPIC, tuple(joint_names), tuple(range(len(joint_names)))
            ),
        )
    index = {name: i for i, name in enumerate(joint_names)}
    owner: dict[str, str] = {}
    groups = []
    for entry in entries:
        topic, separator, joints_text = entry.partition(":")
        topic = topic.strip()
        joints = tuple(j.strip() for j in joints_text.split(",") if j.strip())
        if not separator or not topic or not joints:
            raise ValueError(
                f"command_groups entries read 'TOPIC: JOINT, JOINT, ...', got {entry!r}"
            )
        # Relative and private names are checked as they would resolve in some namespace.
        resolved = "/node" + topic[1:] if topic.startswith("~") else "/" + topic.lstrip("/")
        try:
            validate_full_topic_name(resolved)
        except InvalidTopicNameException as error:
            raise ValueError(
                f"command_groups: {topic!r} is not a valid topic name: {error}"
            ) from None
        if any(group.topic == topic for group in groups):
            raise ValueError(f"command_groups: topic {topic!r} appears twice")
        for joint in joints:
            if joint not in index:
                raise ValueError(
                    f"command_groups: joint {joint!r} of {topic!r} is not in joint_names"
                )
            if joint in owner:
                raise ValueError(
                    f"command_groups: joint {joint!r} is in both {owner[joint]!r} and {topic!r}"
                )
            owner[joint] = topic
        groups.append(CommandGroup(topic, joints, tuple(index[j] for j in joints)))
    missing = [name for name in joint_names if name not in owner]
    if missing:
        raise ValueError(
            f"command_groups: joints {missing} are in no group; every joint of joint_names "
            "must be in exactly one"
        )
    return tuple(groups)


def check_device(device: str) -> None:
    """ValueError unless ``device`` is cpu, cuda or cuda:N."""
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise ValueError(f"device must be cpu, cuda or cuda:N, got {device!r}")


@dataclasses.dataclass(frozen=True)
class RtcParameters:
    joint_names: tuple[str, ...]
    position_lower: tuple[float, ...]
    position_upper: tuple[float, ...]
    max_velocity: tuple[float, ...]
    control_rate_hz: float
    command_format: CommandFormat
    command_groups: tuple[CommandGroup, ...]
    prediction_horizon: int
    min_execution_horizon: int
    delay_window: int
    initial_inference_delay: int
    num_steps: int
    beta: float
    guidance: GuidanceMode
    method: Method
    device: str
    cpu_threads: int
    policy: str
    policy_type: str
    task: str
    camera_names: tuple[str, ...]
    image_height: int
    image_width: int
    max_observation_age_s: float
    max_clock_skew_s: float
    emulated_latency_ms: float
    controller: ControllerPlacement
    hardware_id: str
    thread_priority: int
    cpu_affinity: tuple[int, ...]
    lock_memory: bool

    def __post_init__(self) -> None:
        if not self.min_execution_horizon < self.prediction_horizon:
            raise ValueError(
                f"min_execution_horizon (s_min) must be < prediction_horizon (H) = "
                f"{self.prediction_horizon}, got {self.min_execution_horizon}"
            )
        if self.initial_inference_delay > self.prediction_horizon - self.min_execution_horizon:
            raise ValueError(
                f"initial_inference_delay must be <= H - s_min = "
                f"{self.prediction_horizon - self.min_execution_horizon}, "
                f"got {self.initial_inference_delay}"
            )
        check_device(self.device)
        self.joint_limits()  # per-joint lengths and orderings
        self.chunking_config()  # n, beta
        self.realtime_settings()

    @property
    def period_s(self) -> float:
        return 1.0 / self.control_rate_hz

    def chunking_config(self) -> ChunkingConfig:
        """The method and its settings; sampled with CUDA graphs on a CUDA device."""
        return ChunkingConfig(
            method=self.method,
            num_steps=self.num_steps,
            beta=self.beta,
            guidance=self.guidance,
            compiled=self.device.startswith("cuda"),
        )

    def inference_settings(self) -> InferenceSettings:
        """What the inference worker takes between chunks."""
        return InferenceSettings(
            self.chunking_config(), self.min_execution_horizon, self.emulated_latency_ms / 1e3
        )

    def executor_spec(self) -> ExecutorSpec:
        """How the controller executes chunks of this method."""
        return self.chunking_config().executor_spec(self.min_execution_horizon)

    def realtime_settings(self) -> RealtimeSettings:
        """What the control loop asks the system for (see :mod:`rtc_ros.runtime.realtime`)."""
        return RealtimeSettings(self.thread_priority, self.cpu_affinity, self.lock_memory)

    def joint_limits(self) -> JointLimits:
        max_step = tuple(v * self.period_s for v in self.max_velocity)
        return JointLimits(self.joint_names, self.position_lower, self.position_upper, max_step)

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> RtcParameters:
        """Build from raw parameter values (as rclpy holds them), converting enums and lists."""
        v = dict(values)
        for name in (
            "joint_names",
            "position_lower",
            "position_upper",
            "max_velocity",
            "camera_names",
        ):
            v[name] = tuple(v[name])
        v["cpu_affinity"] = tuple(v["cpu_affinity"] or ())  # None: declared without a value
        v["command_format"] = parse_enum(CommandFormat, v["command_format"], "command_format")
        v["command_groups"] = parse_command_groups(v["command_groups"], v["joint_names"])
        v["controller"] = parse_enum(ControllerPlacement, v["controller"], "controller")
        v["guidance"] = parse_enum(GuidanceMode, v["guidance"], "guidance")
        v["method"] = parse_enum(Method, v["method"], "method")
        return cls(**v)


def _describe(
    description: str,
    read_only: bool = False,
    integer_range: tuple[int, int] | None = None,
    float_range: tuple[float, float] | None = None,
) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(description=description, read_only=read_only)
    if integer_range is not None:
        descriptor.integer_range = [
            IntegerRange(from_value=integer_range[0], to_value=integer_range[1], step=1)
        ]
    if float_range is not None:
        descriptor.floating_point_range = [
            FloatingPointRange(from_value=float_range[0], to_value=float_range[1])
        ]
    return descriptor


# The defaults are the ALOHA-style bimanual layout the shipped config and simulator use.
_DEFAULT_JOINTS = [f"{arm}_{joint}" for arm in ARMS for joint in ARM_JOINT_SUFFIXES]

# name: (default, descriptor). Defaults are the paper's real-robot values at 50 Hz.
DECLARATIONS: dict[str, tuple[Any, ParameterDescriptor]] = {
    "joint_names": (
        _DEFAULT_JOINTS,
        _describe("Joints commanded, in the order of the policy's action vector", read_only=True),
    ),
    "position_lower": (
        [-3.14] * 14,
        _describe("Lower position limit per joint (rad or m)", read_only=True),
    ),
    "position_upper": (
        [3.14] * 14,
        _describe("Upper position limit per joint (rad or m)", read_only=True),
    ),
    "max_velocity": (
        [3.14] * 14,
        _describe(
            "Largest commanded velocity per joint (rad/s or m/s); bounds the command step per "
            "tick",
            read_only=True,
        ),
    ),
    "control_rate_hz": (
        50.0,
        _describe(
            "Controller rate (Hz); the policy's action rate",
            read_only=True,
            float_range=(1.0, 1000.0),
        ),
    ),
    "command_format": (
        "joint_trajectory",
        _describe(
            "Command message: joint_trajectory, float64_multi_array or joint_state", read_only=True
        ),
    ),
    # Declared by type: rclpy cannot type an empty list default.
    "command_groups": (
        Parameter.Type.STRING_ARRAY,
        _describe(
            "Joints per command topic, one 'TOPIC: JOINT, JOINT, ...' per group (e.g. one per "
            "arm's controller), every joint in exactly one; unset: all joints on 'commands'",
            read_only=True,
        ),
    ),
    "prediction_horizon": (
        50,
        _describe(
            "H: actions per chunk (must match the policy)", read_only=True, integer_range=(2, 1000)
        ),
    ),
    "min_execution_horizon": (
        25,
        _describe(
            "s_min: actions executed before the next inference starts", integer_range=(1, 999)
        ),
    ),
    "delay_window": (
        10,
        _describe(
            "b: observed delays kept; d is their maximum", read_only=True, integer_range=(1, 1000)
        ),
    ),
    # Read-only: it only matters until the first chunk's delay is observed, right after start.
    "initial_inference_delay": (
        0,
        _describe(
            "d assumed until the first delay is observed (ticks)",
            read_only=True,
            integer_range=(0, 999),
        ),
    ),
    "num_steps": (5, _describe("n: denoising steps per chunk", integer_range=(1, 100))),
    "beta": (5.0, _describe("Guidance-weight clip (> 0)", float_range=(1e-3, 100.0))),
    "guidance": (
        "stop_gradient",
        _describe(
            "Guidance gradient: stop_gradient (no backward pass; the default, see README) or vjp "
            "(exact)"
        ),
    ),
    "method": (
        "rtc_soft",
        _describe(
            "rtc_soft, rtc_hard, naive_async, bid, temporal_ensembling or sync", read_only=True
        ),
    ),
    "device": ("cpu", _describe("torch device for inference: cpu, cuda, cuda:N", read_only=True)),
    "cpu_threads": (
        0,
        _describe(
            "torch threads for CPU inference; 0: all cores but one, which stays free for the "
            "control loop",
            read_only=True,
            integer_range=(0, 1024),
        ),
    ),
    "policy": (
        "",
        _describe(
            "Policy: a LeRobot save_pretrained folder (smolvla, pi0, pi05), a .pt checkpoint of "
            "this package, "
            "or a name (builtin-pi0, builtin-pi0-tiny: random weights); empty: the demo's shipped "
            "policy",
            read_only=True,
        ),
    ),
    "policy_type": (
        "",
        _describe(
            "Overrides the policy kind detected from the path: reference, builtin-pi0, smolvla, "
            "pi0, pi05",
            read_only=True,
        ),
    ),
    "task": (
        "",
        _describe("Language instruction for VLA policies; also settable on the ~/task topic"),
    ),
    "camera_names": (
        ["top"],
        _describe(
            "Cameras the policy sees; each subscribes to <name>/image_raw (remap in launch)",
            read_only=True,
        ),
    ),
    "image_height": (
        96,
        _describe("Image height the policy expects (px)", read_only=True, integer_range=(1, 4096)),
    ),
    "image_width": (
        96,
        _describe("Image width the policy expects (px)", read_only=True, integer_range=(1, 4096)),
    ),
    "max_observation_age_s": (
        0.5,
        _describe(
            "Observations older than this are rejected as stale (s)", float_range=(0.001, 60.0)
        ),
    ),
    "max_clock_skew_s": (
        0.1,
        _describe(
            "Joint states and images stamped further than this ahead of the node's clock are "
            "rejected (s)",
            float_range=(0.0, 10.0),
        ),
    ),
    "emulated_latency_ms": (
        0.0,
        _describe(
            "Pad every inference to at least this wall time (ms), so that a fast machine runs at "
            "a VLA's delay; "
            "0: off",
            read_only=True,
            float_range=(0.0, 10000.0),
        ),
    ),
    "controller": (
        "process",
        _describe(
            "Where the control loop runs: process (own process, shared memory), thread, or topic "
            "(separate node)",
            read_only=True,
        ),
    ),
    "hardware_id": (
        "rtc_robot",
        _describe("hardware_id reported in /diagnostics", read_only=True),
    ),
    # The control loop's real-time settings, named and defaulted as ros2_control_node's.
    "thread_priority": (
        50,
        _describe(
            "SCHED_FIFO priority of the control loop's thread (1-99); 0: normal scheduling. "
            "Without the "
            "permission (README: Real-time permissions) one warning is logged and the loop runs "
            "as before",
            read_only=True,
            integer_range=(0, 99),
        ),
    ),
    "cpu_affinity": (
        Parameter.Type.INTEGER_ARRAY,
        _describe(
            "CPUs the control loop's thread may run on, e.g. [1]; unset: any", read_only=True
        ),
    ),
    "lock_memory": (
        True,
        _describe(
            "Lock the controller process's memory (mlockall) so that no tick waits for a page "
            "fault; "
            "not with controller: thread, whose process is the inference node's",
            read_only=True,
        ),
    ),
}


def widen_integers(requested: list[Parameter]) -> list[Parameter]:
    """Integers given for floating-point parameters, as floats: ``ros2 param set /rtc beta 2``.

    rclpy types a parameter by its default and refuses 2 for a double; YAML and the command line
    write whole numbers without a point, so the pre-set callback converts before validation.
    """
    widened = []
    for parameter in requested:
        default = DECLARATIONS.get(parameter.name, (None,))[0]
        value = parameter.value
        if isinstance(default, float) and parameter.type_ is Parameter.Type.INTEGER:
            parameter = Parameter(parameter.name, Parameter.Type.DOUBLE, float(value))
        elif (
            isinstance(default, list)
            and default
            and isinstance(default[0], float)
            and parameter.type_ is Parameter.Type.INTEGER_ARRAY
        ):
            parameter = Parameter(
                parameter.name, Parameter.Type.DOUBLE_ARRAY, [float(v) for v in value]
            )
        widened.append(parameter)
    return widened


def declare(node: Node, names: tuple[str, ...] | None = None) -> None:
    """Declare the parameters (all, or only ``names``); :func:`read` checks their values."""
    for name, (default, descriptor) in DECLARATIONS.items():
        if names is None or name in names:
            node.declare_parameter(name, default, descriptor)
    node.add_pre_set_parameters_callback(widen_integers)


def read(node: Node, changes: dict[str, Any] | None = None) -> RtcParameters:
    """The node's parameters (defaults for those it does not declare) with ``changes`` applied,
    as a snapshot; raises ValueError naming the broken rule.
    """
    values = {}
    for name, (default, _) in DECLARATIONS.items():
        unset = None if isinstance(default, Parameter.Type) else default
        try:
            values[name] = node.get_parameter(name).value if node.has_parameter(name) else unset
        except ParameterUninitializedException:  # declared by type only, and never set
            values[name] = None
    values.update(changes or {})
    return RtcParameters.from_values(values)


def tunable_names() -> tuple[str, ...]:
    """The parameters that may change while running: those not declared read-only."""
    return tuple(
        name for name, (_, descriptor) in DECLARATIONS.items() if not descriptor.read_only
    )


def on_change(node: Node, apply: Callable[[RtcParameters], None]) -> None:
    """Check run-time changes as a whole snapshot; hand each accepted snapshot to ``apply``.

    rclpy has refused read-only parameters and values out of range already; a change that
    breaks a rule between parameters (s_min < H, ...) is refused with the reason. ``apply``
    runs after the node has stored the new values (also while it is unconfigured: configure
    then reads them).
    """

    def check(parameters: list[Parameter]) -> SetParametersResult:
        try:
            read(node, {p.name: p.value for p in parameters if p.name in DECLARATIONS})
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(check)
    node.add_post_set_parameters_callback(lambda parameters: apply(read(node)))
