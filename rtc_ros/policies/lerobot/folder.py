"""LeRobot ``save_pretrained`` folders: loaded with their processors,
and written with random weights.

A folder as LeRobot 0.4.4 saves a policy (``policy.save_pretrained`` + the processors'
``save_pretrained``, as ``lerobot-train`` does) holds:

* ``config.json``: the policy configuration; ``type`` is ``smolvla``, ``pi0`` or ``pi05``,
  ``input_features`` / ``output_features`` give the state, camera and action sizes;
* ``model.safetensors``: the weights;
* ``policy_preprocessor.json`` and ``policy_postprocessor.json`` with their state files
  (``policy_preprocessor_step_<i>_normalizer_processor.safetensors``, ...): the steps from robot
  observation to model input (tokenizer, normalisation with the dataset's statistics) and from
  model output to robot action (unnormalisation).

LeRobot stores sizes, not joint names. This package adds an optional ``rtc_ros.json`` with
``state_names`` and ``action_names`` (the dataset's ``meta/info.json`` names them): where it
exists the node checks them against its ``joint_names``. :func:`write_random_folder` writes it.

Observations reach the model as they do in LeRobot: each ROS camera image (uint8) becomes a
float image in [0, 1] under its image feature key, resized to the feature's size; the state
vector goes in ``observation.state``; the language instruction in ``task``. Then the saved
preprocessor runs (tokenisation, normalisation, device) and the policy's own image and state
preparation (resize with padding, [-1, 1], padding to ``max_state_dim``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from rtc_ros.policies.lerobot import model as lerobot_model

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PREPROCESSOR_FILE = "policy_preprocessor.json"
POSTPROCESSOR_FILE = "policy_postprocessor.json"
NAMES_FILE = "rtc_ros.json"
"""This package's addition to a LeRobot folder: joint names, and whether the weights are
trained."""
LOCAL_VLM_FOLDER = "vlm"
"""SmolVLA folders written by :func:`write_random_folder`: the VLM's configuration and a small
tokenizer, so that they load without the Hugging Face hub."""

_STATE_KEY = "observation.state"
_ACTION_KEY = "action"
_IMAGE_PREFIX = "observation.images."
_POLICY_CLASSES = {"smolvla": "SmolVLAPolicy", "pi0": "PI0Policy", "pi05": "PI05Policy"}
_CONFIG_CLASSES = {
    "smolvla": ("smolvla", "SmolVLAConfig"),
    "pi0": ("pi0", "PI0Config"),
    "pi05": ("pi05", "PI05Config"),
}


class FolderError(ValueError):
    """A LeRobot folder that cannot be loaded; the text says what is wrong with it."""


def read_policy_type(folder: pathlib.Path) -> str:
    """``config.json``'s ``type``; FolderError when there is no readable config.json."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise FolderError(f"{folder} has no {CONFIG_FILE}: not a LeRobot save_pretrained folder")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise FolderError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(config, dict) or not isinstance(config.get("type"), str):
        raise FolderError(
            f"{path} has no 'type' (smolvla, pi0, pi05); set policy_type to say which"
        )
    return config["type"]


@dataclasses.dataclass(frozen=True)
class FolderInterface:
    """What a folder's policy expects from the robot, from its config.json and rtc_ros.json."""

    state_dim: int
    action_dim: int
    image_keys: tuple[str, ...]
    """The image features, in config.json's order (the cameras map to them in this order)."""
    image_shapes: tuple[tuple[int, int, int], ...]
    state_names: tuple[str, ...] | None
    action_names: tuple[str, ...] | None
    trained: bool


class LeRobotInputs:
    """Robot observation and task -> the inputs of a folder's model, as LeRobot would make them.

    The robot observation is ``{"state": (B, S), "image": (B, 3 N, H, W) uint8}``: the node's
    observation, N cameras stacked in ``interface.image_keys`` order.
    """

    def __init__(self, kind: str, wrapper, preprocessor, interface: FolderInterface) -> None:
        self.kind = kind
        self.wrapper = wrapper
        self.preprocessor = preprocessor
        self.interface = interface

    def __call__(self, observation: Mapping[str, Any], task: str) -> dict:
        from lerobot.utils.constants import OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS

        state = torch.as_tensor(np.asarray(observation["state"]), dtype=torch.float32)
        batch_size = state.shape[0]
        batch: dict[str, Any] = {_STATE_KEY: state, "task": [task] * batch_size}
        if self.interface.image_keys:
            images = torch.as_tensor(np.asarray(observation["image"]))
            cameras = images.reshape(
                batch_size, len(self.interface.image_keys), 3, *images.shape[-2:]
            )
            for index, (key, shape) in enumerate(
                zip(self.interface.image_keys, self.interface.image_shapes)
            ):
                image = cameras[:, index].to(torch.float32) / 255.0
                if tuple(image.shape[-2:]) != shape[1:]:
                    image = torch.nn.functional.interpolate(
                        image, size=shape[1:], mode="bilinear", antialias=True, align_corners=False
                    )
                batch[key] = image
        with torch.no_grad():
            processed = self.preprocessor(batch)
            if self.kind == "smolvla":
                images, masks = self.wrapper.prepare_images(processed)
            else:
                images, masks = self.wrapper._preprocess_images(processed)
            # pi0.5 has no state input (its preprocessor puts the state in the tokens)
            prepared_state = (
                self.wrapper.prepare_state(processed)
                if hasattr(self.wrapper, "prepare_state")
                else processed[_STATE_KEY]
            )
        return {
            "images": torch.stack(images, dim=1),
            "image_masks": torch.stack(masks, dim=1),
            "tokens": processed[OBS_LANGUAGE_TOKENS],
            "token_masks": processed[OBS_LANGUAGE_ATTENTION_MASK],
            "state": prepared_state,
        }


@dataclasses.dataclass(frozen=True)
class LoadedFolder:
    flow: lerobot_model.LeRobotFlowPolicy
    inputs: LeRobotInputs
    interface: FolderInterface


def load_folder(
    folder: str | os.PathLike,
    kind: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> LoadedFolder:
    """Load a LeRobot folder saved for ``kind`` with its pre- and postprocessor onto ``device``."""
    folder = pathlib.Path(folder).expanduser().resolve()
    module = lerobot_model._import_lerobot(kind)
    for name in (CONFIG_FILE, WEIGHTS_FILE, PREPROCESSOR_FILE, POSTPROCESSOR_FILE):
        if not (folder / name).is_file():
            raise FolderError(
                f"{folder} has no {name}: a LeRobot folder saved with save_pretrained has "
                f"{CONFIG_FILE}, {WEIGHTS_FILE}, {PREPROCESSOR_FILE} and {POSTPROCESSOR_FILE}"
            )
    config = _read_config(folder, kind)
    config.device = torch.device(device).type
    if getattr(config, "adapt_to_pi_aloha", False):
        raise FolderError(
            f"{folder}: adapt_to_pi_aloha is not supported (its gripper mapping is not "
            "affine, so guidance could not run in the model's action space)"
        )
    interface = _interface(folder, config)
    vlm_name = getattr(config, "vlm_model_name", None)
    local_vlm = folder / vlm_name if vlm_name and (folder / vlm_name).is_dir() else None
    if local_vlm is not None:
        config.vlm_model_name = str(local_vlm)
    policy_class = getattr(module, _POLICY_CLASSES[kind])
    try:
        with _smolvlm_without_hub(local_vlm) if kind == "smolvla" else contextlib.nullcontext():
            wrapper = policy_class.from_pretrained(str(folder), config=config, strict=True)
    except Exception as error:  # torch, safetensors and draccus each raise their own types
        raise FolderError(
            f"{folder}: LeRobot could not load the {kind} weights: {_first_line(error)}"
        ) from error
    wrapper = wrapper.to(device=device, dtype=dtype).eval()
    preprocessor, action_offset, action_scale = _processors(folder, config, local_vlm, device)
    flow = lerobot_model.LeRobotFlowPolicy(kind, wrapper.model, action_offset, action_scale)
    return LoadedFolder(flow, LeRobotInputs(kind, wrapper, preprocessor, interface), interface)


def _read_config(folder: pathlib.Path, kind: str):
    """config.json parsed as ``kind``'s configuration (the ``type`` in the file is ignored, so a
    policy_type override can name it).
    """
    import importlib

    import draccus

    package, class_name = _CONFIG_CLASSES[kind]
    config_class = getattr(
        importlib.import_module(f"lerobot.policies.{package}.configuration_{package}"), class_name
    )
    values = json.loads((folder / CONFIG_FILE).read_text())
    values.pop("type", None)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(values, file)
    try:
        with draccus.config_type("json"):
            return draccus.parse(config_class, file.name, args=[])
    except (Exception, SystemExit) as error:  # draccus reports a bad field with SystemExit
        raise FolderError(
            f"{folder / CONFIG_FILE} is not a valid {kind} configuration: {_first_line(error)}"
        ) from None
    finally:
        os.unlink(file.name)


def _interface(folder: pathlib.Path, config) -> FolderInterface:
    inputs, outputs = config.input_features, config.output_features
    if _STATE_KEY not in inputs or _ACTION_KEY not in outputs:
        raise FolderError(
            f"{folder / CONFIG_FILE}: input_features needs {_STATE_KEY!r} and output_features "
            f"{_ACTION_KEY!r}, got {sorted(inputs)} and {sorted(outputs)}"
        )
    image_keys = tuple(key for key in inputs if key.startswith(_IMAGE_PREFIX))
    names: dict = {}
    if (folder / NAMES_FILE).is_file():
        try:
            names = json.loads((folder / NAMES_FILE).read_text())
        except ValueError as error:
            raise FolderError(f"{folder / NAMES_FILE} is not valid JSON: {error}") from None
    state_names, action_names = names.get("state_names"), names.get("action_names")
    return FolderInterface(
        state_dim=int(inputs[_STATE_KEY].shape[0]),
        action_dim=int(outputs[_ACTION_KEY].shape[0]),
        image_keys=image_keys,
        image_shapes=tuple(tuple(int(v) for v in inputs[k].shape) for k in image_keys),
        state_names=tuple(state_names) if state_names is not None else None,
        action_names=tuple(action_names) if action_names is not None else None,
        trained=bool(names.get("trained", True)),
    )


def _processors(folder: pathlib.Path, config, local_vlm: pathlib.Path | None, device):
    """The saved preprocessor (on ``device``), and the action
    unnormalisation as offset and scale.
    """
    from lerobot.configs.types import FeatureType, NormalizationMode
    from lerobot.processor import PolicyProcessorPipeline, UnnormalizerProcessorStep
    from lerobot.processor.converters import (
        policy_action_to_transition,
        transition_to_policy_action,
    )

    saved = json.loads((folder / PREPROCESSOR_FILE).read_text())
    step_names = {step.get("registry_name") for step in saved.get("steps", [])}
    overrides: dict[str, dict] = {}
    if "device_processor" in step_names:
        overrides["device_processor"] = {"device": str(device)}
    if "tokenizer_processor" in step_names:
        # Every chunk's prefix the same length whatever the task (masks hide the padding): the
        # task may change while running, and a CUDA graph replays fixed shapes.
        overrides["tokenizer_processor"] = {"padding": "max_length"}
        if local_vlm is not None:
            overrides["tokenizer_processor"]["tokenizer_name"] = str(local_vlm)
    try:
        preprocessor = PolicyProcessorPipeline.from_pretrained(
            str(folder), config_filename=PREPROCESSOR_FILE, overrides=overrides
        )
        postprocessor = PolicyProcessorPipeline.from_pretrained(
            str(folder),
            config_filename=POSTPROCESSOR_FILE,
            to_transition=policy_action_to_transition,
            to_output=transition_to_policy_action,
        )
    except Exception as error:  # transformers, safetensors and the hub each raise their own types
        hint = ""
        if "tokenizer" in str(error).lower() or "huggingface" in str(error).lower():
            hint = (
                f" (the tokenizer {getattr(config, 'vlm_model_name', '')!r} comes from the "
                "Hugging Face "
                "hub: download it once into the cache, e.g. with huggingface-cli download)"
            )
        raise FolderError(
            f"{folder}: LeRobot could not load the processors: {_first_line(error)}{hint}"
        ) from error
    unnormalizers = [s for s in postprocessor.steps if isinstance(s, UnnormalizerProcessorStep)]
    dims = int(config.output_features[_ACTION_KEY].shape[0])
    offset, scale = torch.zeros(dims), torch.ones(dims)
    if unnormalizers:
        step = unnormalizers[0]
        mode = step.norm_map.get(FeatureType.ACTION, NormalizationMode.IDENTITY)
        stats = {
            k: torch.as_tensor(v, dtype=torch.float32).flatten()
            for k, v in step._tensor_stats.get(_ACTION_KEY, {}).items()
        }
        offset, scale = _affine(mode, stats, offset, scale, folder)
    return preprocessor, offset, scale


def _affine(
    mode,
    stats: dict[str, torch.Tensor],
    offset: torch.Tensor,
    scale: torch.Tensor,
    folder: pathlib.Path,
) -> tuple[torch.Tensor, torch.Tensor]:
    """LeRobot's action unnormalisation as ``x = model * scale +
    offset`` (every mode is affine).
    """
    from lerobot.configs.types import NormalizationMode

    bounds = {
        NormalizationMode.MIN_MAX: ("min", "max"),
        NormalizationMode.QUANTILES: ("q01", "q99"),
        NormalizationMode.QUANTILE10: ("q10", "q90"),
    }
    if mode == NormalizationMode.IDENTITY or not stats:
        return offset, scale
    if mode == NormalizationMode.MEAN_STD:
        needed = ("mean", "std")
    elif mode in bounds:
        needed = bounds[mode]
    else:
        raise FolderError(f"{folder}: action normalisation {mode} is not supported")
    missing = [k for k in needed if k not in stats]
    if missing:
        raise FolderError(
            f"{folder}: the postprocessor's action statistics lack {', '.join(missing)} "
            f"for {mode.value} normalisation"
        )
    if mode == NormalizationMode.MEAN_STD:
        return stats["mean"], stats["std"]
    low, high = (stats[k] for k in needed)
    half_range = (high - low) / 2.0
    return low + half_range, half_range


@contextlib.contextmanager
def _smolvlm_without_hub(local_vlm: pathlib.Path | None) -> Iterator[None]:
    """SmolVLA reads its VLM's configuration and two image-token ids from the hub. A folder with a
    local ``vlm/`` gives both; otherwise the hub's (Hugging Face cache), else SmolVLM2-500M's.
    """
    if local_vlm is not None:
        vlm = json.loads((local_vlm / CONFIG_FILE).read_text())
        ids = (vlm.get("fake_image_token_id", 1), vlm.get("global_image_token_id", 2))
        with lerobot_model.offline_smolvlm(vlm, ids):
            yield
        return
    try:
        from transformers import AutoConfig, AutoProcessor

        AutoConfig.from_pretrained(lerobot_model.SMOLVLM2_500M_NAME)
        AutoProcessor.from_pretrained(lerobot_model.SMOLVLM2_500M_NAME)
        cached = True
    except OSError:
        cached = False
    with (
        contextlib.nullcontext()
        if cached
        else lerobot_model.offline_smolvlm(
            lerobot_model.SMOLVLM2_500M, lerobot_model.SMOLVLM2_IMAGE_TOKEN_IDS
        )
    ):
        yield


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:400]


# -- writing --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RobotDescription:
    """The robot a random folder is made for: joints (state = action
    = joint positions) and cameras.
    """

    joint_names: tuple[str, ...]
    position_lower: tuple[float, ...]
    position_upper: tuple[float, ...]
    camera_names: tuple[str, ...]
    image_height: int
    image_width: int


def write_random_folder(
    kind: str,
    tiny: bool,
    robot: RobotDescription,
    output: str | os.PathLike,
    prediction_horizon: int = 50,
    seed: int = 0,
) -> pathlib.Path:
    """A LeRobot folder for ``kind`` with random weights, fitted to
    ``robot``, in LeRobot's saved format.

    The statistics are those of joint positions spread evenly over their limits (mean mid-range,
    std a quarter of the range), so that a random policy's actions stay in the robot's range.
    """
    module = lerobot_model._import_lerobot(kind)
    output = pathlib.Path(output).expanduser().resolve()
    output.mkdir(parents=True, exist_ok=True)
    from lerobot.configs.types import FeatureType, PolicyFeature

    dims = len(robot.joint_names)
    image_keys = [f"{_IMAGE_PREFIX}{camera}" for camera in robot.camera_names]
    input_features = {_STATE_KEY: PolicyFeature(FeatureType.STATE, (dims,))}
    for key in image_keys:
        input_features[key] = PolicyFeature(
            FeatureType.VISUAL, (3, robot.image_height, robot.image_width)
        )
    output_features = {_ACTION_KEY: PolicyFeature(FeatureType.ACTION, (dims,))}
    config = _random_config(
        kind, tiny, input_features, output_features, prediction_horizon, output
    )
    torch.manual_seed(seed)
    policy_class = getattr(module, _POLICY_CLASSES[kind])
    local_vlm = output / LOCAL_VLM_FOLDER if kind == "smolvla" else None
    with _smolvlm_without_hub(local_vlm) if kind == "smolvla" else contextlib.nullcontext():
        if local_vlm is not None:
            config.vlm_model_name = str(local_vlm)
        policy = policy_class(config)
    if local_vlm is not None:
        config.vlm_model_name = LOCAL_VLM_FOLDER  # relative: the folder stays movable
    policy.save_pretrained(output)
    stats = _joint_stats(robot)
    _write_processors(kind, config, {_STATE_KEY: stats, _ACTION_KEY: stats}, output, local_vlm)
    (output / NAMES_FILE).write_text(
        json.dumps(
            {
                "state_names": list(robot.joint_names),
                "action_names": list(robot.joint_names),
                "trained": False,
                "note": "random weights from rtc_ros.policies.make_checkpoint: "
                "for tests and load trials, not a policy",
            },
            indent=2,
        )
        + "\n"
    )
    return output


def _random_config(kind, tiny, input_features, output_features, prediction_horizon, output):
    import importlib

    package, class_name = _CONFIG_CLASSES[kind]
    config_class = getattr(
        importlib.import_module(f"lerobot.policies.{package}.configuration_{package}"), class_name
    )
    common = dict(
        input_features=input_features,
        output_features=output_features,
        chunk_size=prediction_horizon,
        n_action_steps=prediction_horizon,
        device="cpu",
    )
    if kind != "smolvla":
        if tiny:
            raise ValueError(
                f"--size tiny exists for smolvla: LeRobot fixes {kind}'s sizes by its Gemma "
                "variants"
            )
        return config_class(**common)
    vlm = lerobot_model.TINY_SMOLVLM if tiny else lerobot_model.SMOLVLM2_500M
    local_vlm = output / LOCAL_VLM_FOLDER
    local_vlm.mkdir(exist_ok=True)
    ids = lerobot_model.TINY_IMAGE_TOKEN_IDS if tiny else lerobot_model.SMOLVLM2_IMAGE_TOKEN_IDS
    (local_vlm / CONFIG_FILE).write_text(
        json.dumps(
            {**vlm, "fake_image_token_id": ids[0], "global_image_token_id": ids[1]}, indent=2
        )
        + "\n"
    )
    _write_tokenizer(local_vlm, vlm["text_config"]["vocab_size"])
    config = config_class(
        **common,
        load_vlm_weights=False,
        num_vlm_layers=min(16, vlm["text_config"]["num_hidden_layers"]),
    )
    if tiny:
        config.tokenizer_max_length = 8
        config.resize_imgs_with_padding = (vlm["vision_config"]["image_size"],) * 2
    return config


def _write_tokenizer(folder: pathlib.Path, vocab_size: int) -> None:
    """A character tokenizer (printable ASCII) saved as a Hugging Face fast tokenizer: language
    input for random-weight models without downloading SmolVLM2's tokenizer.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    characters = [chr(c) for c in range(32, 127)] + ["\n"]
    specials = ["<pad>", "<unk>"]
    vocab = {token: index for index, token in enumerate((specials + characters)[:vocab_size])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>"
    ).save_pretrained(folder)


def _joint_stats(robot: RobotDescription) -> dict[str, torch.Tensor]:
    lower = torch.tensor(robot.position_lower, dtype=torch.float32)
    upper = torch.tensor(robot.position_upper, dtype=torch.float32)
    mean, std = (lower + upper) / 2.0, (upper - lower) / 4.0
    return {
        "mean": mean,
        "std": std,
        "min": lower,
        "max": upper,
        "q01": lower,
        "q99": upper,
        "q10": mean - 0.8 * 2 * std,
        "q90": mean + 0.8 * 2 * std,
    }


def _write_processors(
    kind: str, config, stats: dict, output: pathlib.Path, local_vlm: pathlib.Path | None
) -> None:
    """The pre- and postprocessor LeRobot's training would save for ``kind``, with ``stats``."""
    import importlib

    package = _CONFIG_CLASSES[kind][0]
    processors = importlib.import_module(f"lerobot.policies.{package}.processor_{package}")
    make = getattr(processors, f"make_{package}_pre_post_processors")
    if local_vlm is not None:
        config.vlm_model_name = str(local_vlm)
    try:
        preprocessor, postprocessor = make(config, dataset_stats=stats)
    finally:
        if local_vlm is not None:
            config.vlm_model_name = LOCAL_VLM_FOLDER
    preprocessor.save_pretrained(output)
    postprocessor.save_pretrained(output)
    if (
        local_vlm is not None
    ):  # the saved tokenizer_name: relative, resolved against the folder on load
        path = output / PREPROCESSOR_FILE
        saved = json.loads(path.read_text())
        for step in saved["steps"]:
            if step.get("registry_name") == "tokenizer_processor":
                step["config"]["tokenizer_name"] = LOCAL_VLM_FOLDER
        path.write_text(json.dumps(saved, indent=2) + "\n")


__all__ = [
    "FolderError",
    "FolderInterface",
    "LeRobotInputs",
    "LoadedFolder",
    "RobotDescription",
    "load_folder",
    "read_policy_type",
    "write_random_folder",
]
