"""One registry for every policy that the nodes, the demo and the benchmarks run.

``policy`` is a path or a name:

* ``""``: the shipped bimanual demo policy (``reference``);
* ``builtin-pi0`` / ``builtin-pi0-tiny``: the built-in expert with pi0's architecture (or a small
  one) and random weights, fitted to the robot's joints and cameras. Untrained: it exists for
  latency and load tests and says so wherever it runs;
* a ``.pt`` file of this package: ``reference`` or ``builtin-pi0``, as the file says;
* a LeRobot ``save_pretrained`` folder: ``smolvla``, ``pi0`` or ``pi05``, from its config.json.

``policy_type`` overrides the detection. Every kind comes back as a :class:`LoadedPolicy`:
a FlowPolicy that takes robot observations (``{"state": (B, S), "image": (B, 3 N, H, W)
uint8}`` with the joints in ``joint_names`` order and the cameras stacked in order) plus a
language ``task``, and what the checkpoint expects of the robot (:class:`PolicyInterface`),
which :meth:`LoadedPolicy.check_robot` compares with the node's configuration.
"""

from __future__ import annotations

import dataclasses
import enum
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from rtc_ros.core.policy import FlowPolicy

CHECKPOINTS = pathlib.Path(__file__).parent / "checkpoints"
BIMANUAL_DEMO_CHECKPOINT = CHECKPOINTS / "bimanual_demo.pt"
"""Made by ``python -m rtc_ros.sim.train_demo_policy`` from the simulator's scripted expert."""


class PolicyKind(enum.Enum):
    REFERENCE = "reference"
    """rtc_ros.policies.reference: this package's small flow policy (state and one image)."""
    BUILTIN_PI0 = "builtin-pi0"
    """rtc_ros.policies.action_expert: pi0's architecture, random weights (untrained)."""
    SMOLVLA = "smolvla"
    PI0 = "pi0"
    PI05 = "pi05"


LEROBOT_KINDS = (PolicyKind.SMOLVLA, PolicyKind.PI0, PolicyKind.PI05)
BUILTIN_NAMES = {"builtin-pi0": "full", "builtin-pi0-tiny": "tiny"}
UNTRAINED = "random weights, untrained: for latency and load tests only"


class PolicyLoadError(ValueError):
    """A policy that cannot be loaded or does not fit the robot; the text says why."""


@dataclasses.dataclass(frozen=True)
class RobotSetup:
    """The robot side of the match: what the node is configured with."""

    joint_names: tuple[str, ...]
    camera_names: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class PolicyInterface:
    """What a checkpoint expects from the robot."""

    state_dim: int
    action_dim: int
    num_cameras: int
    state_names: tuple[str, ...] | None = None
    """None where the checkpoint does not name them (then only sizes are checked)."""
    action_names: tuple[str, ...] | None = None
    image_keys: tuple[str, ...] = ()
    """The checkpoint's image features, which the cameras feed in order (LeRobot)."""
    trained: bool = True


class RobotFlowPolicy:
    """A FlowPolicy on robot observations: ``inputs(observation, task)`` makes the model's inputs.

    :attr:`task` is the language instruction, read once per chunk; the node sets it while running.
    """

    def __init__(
        self,
        flow: FlowPolicy,
        inputs: Callable[[Mapping[str, Any], str], Mapping[str, Any]],
        task: str = "",
    ) -> None:
        self.flow = flow
        self.inputs = inputs
        self.task = task
        self.prediction_horizon = flow.prediction_horizon
        self.action_dim = flow.action_dim
        self.time_convention = flow.time_convention
        self.device, self.dtype = flow.device, flow.dtype

    def encode(self, observation: Mapping[str, Any]) -> Any:
        return self.flow.encode(self.inputs(observation, self.task))

    def velocity(self, actions: torch.Tensor, time: float, context: Any) -> torch.Tensor:
        return self.flow.velocity(actions, time, context)

    def to_model_space(self, actions: torch.Tensor) -> torch.Tensor:
        return self.flow.to_model_space(actions)

    def from_model_space(self, model_actions: torch.Tensor) -> torch.Tensor:
        return self.flow.from_model_space(model_actions)


@dataclasses.dataclass
class LoadedPolicy:
    policy: FlowPolicy
    """Takes robot observations; a :class:`RobotFlowPolicy` where the model needs other inputs."""
    kind: PolicyKind
    source: str
    interface: PolicyInterface

    @property
    def label(self) -> str:
        """E.g. ``smolvla /path/to/pretrained_model`` or ``builtin-pi0
        (random weights, untrained...)``.
        """
        text = (
            f"{self.kind.value} {self.source}"
            if self.source != self.kind.value
            else self.kind.value
        )
        return text if self.interface.trained else f"{text} ({UNTRAINED})"

    def set_task(self, task: str) -> None:
        if isinstance(self.policy, RobotFlowPolicy):
            self.policy.task = task

    def mismatches(self, robot: RobotSetup) -> list[str]:
        """How the checkpoint and the robot's configuration disagree (empty when they agree)."""
        interface, joints = self.interface, robot.joint_names
        problems = []
        for what, dim, names in (
            ("state", interface.state_dim, interface.state_names),
            ("action", interface.action_dim, interface.action_names),
        ):
            if dim != len(joints):
                problems.append(
                    f"the checkpoint's {what} has {dim} dimensions, joint_names has {len(joints)}"
                )
            elif names is not None and tuple(names) != tuple(joints):
                differ = [
                    f"{i}: {a!r} vs {b!r}" for i, (a, b) in enumerate(zip(names, joints)) if a != b
                ]
                problems.append(
                    f"the checkpoint's {what} names differ from joint_names at "
                    f"{', '.join(differ[:4])}{' ...' if len(differ) > 4 else ''} "
                    f"(checkpoint vs joint_names)"
                )
        if interface.num_cameras != len(robot.camera_names):
            keys = f" ({', '.join(interface.image_keys)})" if interface.image_keys else ""
            problems.append(
                f"the checkpoint sees {interface.num_cameras} cameras{keys}, camera_names has "
                f"{len(robot.camera_names)} ({', '.join(robot.camera_names)})"
            )
        return problems

    def check_robot(self, robot: RobotSetup) -> None:
        problems = self.mismatches(robot)
        if problems:
            raise PolicyLoadError(
                f"policy {self.label} does not fit this robot: " + "; ".join(problems)
            )


def detect_kind(spec: str) -> PolicyKind:
    """The kind of what ``spec`` names, from the name, the .pt file or the folder's config.json."""
    from rtc_ros.policies.lerobot.folder import FolderError, read_policy_type

    if spec == "":
        return PolicyKind.REFERENCE
    if spec in BUILTIN_NAMES:
        return PolicyKind.BUILTIN_PI0
    path = pathlib.Path(spec).expanduser()
    if path.is_dir():
        try:
            policy_type = read_policy_type(path)
        except FolderError as error:
            raise PolicyLoadError(str(error)) from None
        return _kind(policy_type, f"{path / 'config.json'} has type {policy_type!r}")
    if path.is_file():
        return _pt_kind(_read_pt(path), path)
    raise PolicyLoadError(
        f"policy {spec!r} is neither a file, a folder nor a name "
        f"(names: '' for the shipped demo policy, {', '.join(map(repr, BUILTIN_NAMES))})"
    )


def _kind(value: str, context: str) -> PolicyKind:
    try:
        return PolicyKind(value)
    except ValueError:
        raise PolicyLoadError(
            f"{context}: unknown policy kind; supported: {', '.join(k.value for k in PolicyKind)}"
        ) from None


def _read_pt(path: pathlib.Path) -> dict:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not a checkpoint
        raise PolicyLoadError(
            f"{path} is not a checkpoint of this package ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:200] if str(error) else ''})"
        ) from None
    if (
        not isinstance(checkpoint, dict)
        or "config" not in checkpoint
        or "state_dict" not in checkpoint
    ):
        raise PolicyLoadError(
            f"{path} is not a checkpoint of this package (no config and state_dict)"
        )
    return checkpoint


def _pt_kind(checkpoint: dict, path: pathlib.Path) -> PolicyKind:
    if "kind" in checkpoint:
        return _kind(checkpoint["kind"], f"{path}")
    # Files saved before they recorded their kind: the configurations' fields tell them apart.
    return PolicyKind.BUILTIN_PI0 if "expert" in checkpoint["config"] else PolicyKind.REFERENCE


def load_policy(
    spec: str,
    device: str = "cpu",
    policy_type: str = "",
    robot: RobotSetup | None = None,
    dtype: torch.dtype = torch.float32,
) -> LoadedPolicy:
    """Load what ``spec`` names onto ``device``; ``policy_type`` (a :class:`PolicyKind` value)
    overrides the detection. ``robot`` fits the policies built by name to the robot.
    """
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PolicyLoadError(
            f"device {device!r} requested but torch sees no CUDA device; use device:=cpu"
        )
    kind = _kind(policy_type, "policy_type") if policy_type else detect_kind(spec)
    if kind in LEROBOT_KINDS:
        return _load_lerobot(spec, kind, device, dtype)
    if kind is PolicyKind.BUILTIN_PI0:
        return _load_builtin(spec, device, dtype, robot)
    return _load_reference(spec, device)


def _load_reference(spec: str, device: str) -> LoadedPolicy:
    from rtc_ros.policies.reference import ReferenceFlowPolicy

    path = BIMANUAL_DEMO_CHECKPOINT if spec == "" else pathlib.Path(spec).expanduser()
    if not path.is_file():
        hint = " (make it with: python -m rtc_ros.sim.train_demo_policy)" if spec == "" else ""
        raise PolicyLoadError(f"policy checkpoint {str(path)!r} does not exist{hint}")
    checkpoint = _read_pt(path)
    try:
        policy = ReferenceFlowPolicy.load(path, device=device)
    except (TypeError, RuntimeError, KeyError) as error:
        raise PolicyLoadError(f"{path} is not a reference-policy checkpoint: {error}") from None
    config = policy.config
    names = checkpoint.get("joint_names")
    names = tuple(names) if names is not None else None
    interface = PolicyInterface(
        config.state_dim, config.action_dim, 1 if config.image_shape else 0, names, names
    )
    return LoadedPolicy(
        policy, PolicyKind.REFERENCE, str(path) if spec else "bimanual demo", interface
    )


def _load_builtin(
    spec: str, device: str, dtype: torch.dtype, robot: RobotSetup | None
) -> LoadedPolicy:
    from rtc_ros.policies.action_expert import ActionExpertPolicy, pi0_config, tiny_config

    if spec in BUILTIN_NAMES:
        joints = len(robot.joint_names) if robot else 32
        config = (tiny_config if BUILTIN_NAMES[spec] == "tiny" else pi0_config)(joints, 50)
        config = dataclasses.replace(
            config, num_images=max(1, len(robot.camera_names)) if robot else 3
        )
        policy, names, source = ActionExpertPolicy(config, device=device, dtype=dtype), None, spec
    else:
        path = pathlib.Path(spec).expanduser()
        checkpoint = _read_pt(path)
        try:
            policy = ActionExpertPolicy.load(path, device=device, dtype=dtype)
        except (TypeError, RuntimeError, KeyError) as error:
            raise PolicyLoadError(f"{path} is not a builtin-pi0 checkpoint: {error}") from None
        names, source = checkpoint.get("joint_names"), str(path)
    config = policy.config
    names = tuple(names) if names is not None else None
    cameras = len(robot.camera_names) if spec in BUILTIN_NAMES and robot else config.num_images
    interface = PolicyInterface(
        config.state_dim, config.action_dim, cameras, names, names, trained=False
    )
    return LoadedPolicy(
        RobotFlowPolicy(policy, BuiltinInputs(policy)), PolicyKind.BUILTIN_PI0, source, interface
    )


class BuiltinInputs:
    """Robot observation and task -> the built-in expert's inputs: images resized to its size and
    scaled to [-1, 1], the task's characters as tokens, the state padded to its state size.
    """

    def __init__(self, policy) -> None:
        self.config = policy.config
        self.device = policy.device

    def __call__(self, observation: Mapping[str, Any], task: str) -> dict:
        config = self.config
        state = torch.as_tensor(np.asarray(observation["state"]), dtype=torch.float32)
        batch = state.shape[0]
        size = config.vision.image_size
        if "image" in observation:
            images = torch.as_tensor(np.asarray(observation["image"])).to(torch.float32)
            images = images.reshape(batch, -1, 3, *images.shape[-2:])[:, : config.num_images]
            images = torch.nn.functional.interpolate(
                images.flatten(0, 1), size=(size, size), mode="bilinear", align_corners=False
            ).reshape(batch, -1, 3, size, size)
            images = images / 127.5 - 1.0
        else:
            images = torch.zeros(batch, 0, 3, size, size)
        if images.shape[1] < config.num_images:  # a camera short: pad as pi0 does, with -1
            padding = -torch.ones(batch, config.num_images - images.shape[1], 3, size, size)
            images = torch.cat([images, padding], dim=1)
        codes = [ord(c) % config.vocab_size for c in task][: config.language_tokens]
        tokens = torch.tensor(
            codes + [0] * (config.language_tokens - len(codes)), dtype=torch.long
        )
        state = torch.nn.functional.pad(
            state[:, : config.state_dim], (0, max(0, config.state_dim - state.shape[1]))
        )
        return {
            "images": images.to(self.device),
            "tokens": tokens.expand(batch, -1).to(self.device),
            "state": state.to(self.device),
        }


def _load_lerobot(spec: str, kind: PolicyKind, device: str, dtype: torch.dtype) -> LoadedPolicy:
    from rtc_ros.policies.lerobot.folder import FolderError, load_folder
    from rtc_ros.policies.lerobot.model import LeRobotUnavailable

    path = pathlib.Path(spec).expanduser()
    if not path.is_dir():
        raise PolicyLoadError(
            f"policy_type {kind.value} needs a LeRobot save_pretrained folder, got {spec!r}"
        )
    try:
        folder = load_folder(path, kind.value, device=device, dtype=dtype)
    except (FolderError, LeRobotUnavailable) as error:
        raise PolicyLoadError(str(error)) from None
    folder_interface = folder.interface
    interface = PolicyInterface(
        folder_interface.state_dim,
        folder_interface.action_dim,
        len(folder_interface.image_keys),
        folder_interface.state_names,
        folder_interface.action_names,
        folder_interface.image_keys,
        folder_interface.trained,
    )
    return LoadedPolicy(
        RobotFlowPolicy(folder.flow, folder.inputs), kind, str(path.resolve()), interface
    )


def example_observation(
    loaded: LoadedPolicy,
    batch_size: int = 1,
    image_size: Sequence[int] = (96, 96),
    generator: torch.Generator | None = None,
) -> dict:
    """A random robot observation of the sizes ``loaded`` expects (benchmarks, tests)."""
    interface = loaded.interface
    state = torch.randn((batch_size, interface.state_dim), generator=generator).numpy()
    observation = {"state": state}
    if interface.num_cameras:
        shape = (batch_size, 3 * interface.num_cameras, *image_size)
        observation["image"] = torch.randint(
            0, 256, shape, generator=generator, dtype=torch.uint8
        ).numpy()
    return observation


__all__ = [
    "BIMANUAL_DEMO_CHECKPOINT",
    "BUILTIN_NAMES",
    "LEROBOT_KINDS",
    "LoadedPolicy",
    "PolicyInterface",
    "PolicyKind",
    "PolicyLoadError",
    "RobotFlowPolicy",
    "RobotSetup",
    "UNTRAINED",
    "detect_kind",
    "example_observation",
    "load_policy",
]
