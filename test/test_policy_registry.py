"""The policy registry: kinds detected from paths and names, checkpoints written by
make_checkpoint,
their fit to the robot checked, broken ones refused with a clear error.
"""

import json
import shutil

import numpy as np
import pytest
import torch

from rtc_ros.core.guidance import GuidanceMode, guided_sample, pad_to_horizon
from rtc_ros.core.masks import prefix_weights
from rtc_ros.core.policy import FlowPolicy, paper_velocity
from rtc_ros.policies import make_checkpoint
from rtc_ros.policies.lerobot.model import lerobot_available
from rtc_ros.policies.registry import (
    PolicyKind,
    PolicyLoadError,
    RobotSetup,
    detect_kind,
    example_observation,
    load_policy,
)
from rtc_ros.sim.config import BimanualConfig

pytestmark = pytest.mark.usefixtures("one_cpu_thread")
SMOLVLA_MISSING = lerobot_available("smolvla")
needs_smolvla = pytest.mark.skipif(SMOLVLA_MISSING is not None, reason=str(SMOLVLA_MISSING))
SIM_JOINTS = tuple(BimanualConfig().joint_names)
SIM_ROBOT = RobotSetup(SIM_JOINTS, ("top",))


@pytest.fixture(scope="module")
def smolvla_folder(tmp_path_factory):
    if SMOLVLA_MISSING:
        pytest.skip(SMOLVLA_MISSING)
    return make_checkpoint.make_checkpoint("smolvla", "tiny", tmp_path_factory.mktemp("smolvla"))


def copy_folder(folder, tmp_path):
    return shutil.copytree(folder, tmp_path / "copy")


def guided_chunk(loaded, mode=GuidanceMode.VJP, steps=3):
    """One RTC chunk in robot units from a random robot observation."""
    policy = loaded.policy
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        context = policy.encode(example_observation(loaded, generator=generator))
    horizon = policy.prediction_horizon
    noise = torch.randn((1, horizon, policy.action_dim), generator=generator)
    previous = policy.to_model_space(torch.zeros(1, horizon - 25, loaded.interface.action_dim))
    sample = guided_sample(
        paper_velocity(policy, context),
        noise,
        pad_to_horizon(previous, horizon),
        prefix_weights(horizon, 25, 5),
        steps,
        5.0,
        mode,
    )
    return policy.from_model_space(sample)


@needs_smolvla
def test_tiny_smolvla_folder_is_lerobot_format_and_loads_through_the_registry(smolvla_folder):
    names = sorted(p.name for p in smolvla_folder.iterdir())
    assert {
        "config.json",
        "model.safetensors",
        "policy_preprocessor.json",
        "policy_postprocessor.json",
        "rtc_ros.json",
    } <= set(names)
    assert any(
        n.startswith("policy_preprocessor_step_")
        and n.endswith("normalizer_processor.safetensors")
        for n in names
    )
    assert json.loads((smolvla_folder / "config.json").read_text())["type"] == "smolvla"
    assert detect_kind(str(smolvla_folder)) is PolicyKind.SMOLVLA
    loaded = load_policy(str(smolvla_folder))
    assert isinstance(loaded.policy, FlowPolicy)
    assert loaded.kind is PolicyKind.SMOLVLA and not loaded.interface.trained
    assert "untrained" in loaded.label
    assert loaded.interface.state_names == SIM_JOINTS == loaded.interface.action_names
    assert loaded.interface.image_keys == ("observation.images.top",)
    assert loaded.mismatches(SIM_ROBOT) == []
    loaded.set_task("pick up the red cube")
    chunk = guided_chunk(loaded)
    assert chunk.shape == (1, 50, len(SIM_JOINTS)) and torch.isfinite(chunk).all()


@needs_smolvla
def test_lerobot_normalisation_statistics_map_model_space_to_joint_units(smolvla_folder):
    loaded = load_policy(str(smolvla_folder))
    sim = BimanualConfig()
    middle = (torch.tensor(sim.position_lower) + torch.tensor(sim.position_upper)) / 2
    model = loaded.policy.to_model_space(middle.expand(1, 50, -1))
    assert model.shape == (1, 50, loaded.policy.action_dim)
    torch.testing.assert_close(model, torch.zeros_like(model), atol=1e-5, rtol=0)
    torch.testing.assert_close(loaded.policy.from_model_space(model)[0, 0], middle)


@needs_smolvla
def test_the_task_reaches_the_model_as_tokens(smolvla_folder):
    loaded = load_policy(str(smolvla_folder))
    observation = example_observation(loaded, generator=torch.Generator().manual_seed(1))
    first = loaded.policy.inputs(observation, "open")["tokens"]
    second = loaded.policy.inputs(observation, "close")["tokens"]
    assert first.shape == second.shape and not torch.equal(first, second)


@needs_smolvla
def test_camera_images_of_another_size_are_resized_to_the_checkpoint_features(smolvla_folder):
    loaded = load_policy(str(smolvla_folder))
    observation = example_observation(loaded, image_size=(48, 64))
    assert loaded.policy.inputs(observation, "")["images"].shape[:2] == (1, 1)


@needs_smolvla
def test_policy_type_overrides_a_folder_without_type(smolvla_folder, tmp_path):
    folder = copy_folder(smolvla_folder, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    del config["type"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(PolicyLoadError, match="no 'type'.*policy_type"):
        load_policy(str(folder))
    assert load_policy(str(folder), policy_type="smolvla").kind is PolicyKind.SMOLVLA


@needs_smolvla
def test_disagreeing_joint_names_are_refused_with_what_differs(smolvla_folder, tmp_path):
    folder = copy_folder(smolvla_folder, tmp_path)
    names = json.loads((folder / "rtc_ros.json").read_text())
    names["state_names"] = names["action_names"] = [f"armA_j{i + 1}" for i in range(14)]
    (folder / "rtc_ros.json").write_text(json.dumps(names))
    loaded = load_policy(str(folder))
    with pytest.raises(
        PolicyLoadError,
        match=r"action names differ from joint_names at 0: 'armA_j1' vs "
        r"'left_waist'",
    ):
        loaded.check_robot(SIM_ROBOT)
    problems = loaded.mismatches(RobotSetup(SIM_JOINTS[:7], ("top", "wrist")))
    assert any("state has 14 dimensions, joint_names has 7" in p for p in problems)
    assert any(
        "sees 1 cameras (observation.images.top), camera_names has 2" in p for p in problems
    )


@needs_smolvla
@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: (f / "config.json").write_text("{not json"), "config.json is not valid JSON"),
        (
            lambda f: (f / "config.json").write_text(json.dumps({"type": "act"})),
            "type 'act': unknown policy kind",
        ),
        (lambda f: (f / "model.safetensors").unlink(), "has no model.safetensors"),
        (
            lambda f: (f / "model.safetensors").write_bytes(b"\0" * 64),
            "could not load the smolvla weights",
        ),
        (lambda f: (f / "config.json").unlink(), "has no config.json"),
    ],
)
def test_broken_or_unknown_folders_give_one_clear_error(smolvla_folder, tmp_path, damage, message):
    folder = copy_folder(smolvla_folder, tmp_path)
    damage(folder)
    with pytest.raises(PolicyLoadError, match=message) as raised:
        load_policy(str(folder))
    assert "Traceback" not in str(raised.value) and len(str(raised.value).splitlines()) == 1


def test_unknown_names_and_files_are_refused(tmp_path):
    with pytest.raises(
        PolicyLoadError,
        match="neither a file, a folder nor a name .names: '' for the shipped demo policy, "
        "'builtin-pi0', 'builtin-pi0-tiny'.$",
    ):
        load_policy("pi7")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(PolicyLoadError, match="not a checkpoint of this package"):
        load_policy(str(junk))
    with pytest.raises(PolicyLoadError, match="unknown policy kind"):
        load_policy("", policy_type="act")


def test_builtin_pi0_by_name_is_fitted_to_the_robot_and_labelled_untrained():
    loaded = load_policy("builtin-pi0-tiny", robot=SIM_ROBOT)
    assert loaded.kind is PolicyKind.BUILTIN_PI0 and "untrained" in loaded.label
    assert loaded.mismatches(SIM_ROBOT) == []
    chunk = guided_chunk(loaded, GuidanceMode.STOP_GRADIENT)
    assert chunk.shape == (1, 50, 14) and torch.isfinite(chunk).all()


def test_builtin_pi0_checkpoint_stores_joint_names(tmp_path):
    assert (
        make_checkpoint.main(
            ["--kind", "builtin-pi0", "--size", "tiny", "--output", str(tmp_path)]
        )
        == 0
    )
    path = tmp_path / make_checkpoint.BUILTIN_FILE
    assert detect_kind(str(path)) is PolicyKind.BUILTIN_PI0
    loaded = load_policy(str(path))
    assert loaded.interface.action_names == SIM_JOINTS and "untrained" in loaded.label
    renamed = RobotSetup(("armA_j1",) + SIM_JOINTS[1:], ("top",))
    with pytest.raises(PolicyLoadError, match="'left_waist' vs 'armA_j1'"):
        loaded.check_robot(renamed)


def test_the_shipped_demo_policy_is_the_default_and_fits_the_simulated_robot():
    loaded = load_policy("")
    assert loaded.kind is PolicyKind.REFERENCE and loaded.interface.trained
    assert loaded.mismatches(SIM_ROBOT) == []


def test_reference_checkpoints_store_their_joint_names(tmp_path):
    from rtc_ros.policies.reference import ReferenceFlowPolicy, ReferencePolicyConfig

    path = tmp_path / "reference.pt"
    ReferenceFlowPolicy(ReferencePolicyConfig(50, 2, 2)).save(path, joint_names=("a", "b"))
    loaded = load_policy(str(path))
    assert loaded.interface.state_names == ("a", "b")
    assert "names differ" in loaded.mismatches(RobotSetup(("a", "c"), ()))[0]


def test_make_checkpoint_reports_a_kind_it_cannot_write(tmp_path, capsys):
    missing = lerobot_available("pi0")
    if missing is None:
        pytest.skip("pi0 is buildable here")
    assert (
        make_checkpoint.main(["--kind", "pi0", "--size", "full", "--output", str(tmp_path)]) == 1
    )
    assert "pi0" in capsys.readouterr().err


def test_make_checkpoint_fits_the_joints_of_a_parameter_file(tmp_path):
    config = tmp_path / "robot.yaml"
    config.write_text(
        "/**:\n  ros__parameters:\n    joint_names: [a, b]\n    position_lower: [-1, -2]\n"
        "    position_upper: [1, 2]\n    camera_names: [front, wrist]\n"
    )
    robot = make_checkpoint.robot_from_parameters(config)
    assert robot.joint_names == ("a", "b") and robot.camera_names == ("front", "wrist")
    path = make_checkpoint.make_checkpoint("builtin-pi0", "tiny", tmp_path / "out", robot)
    loaded = load_policy(str(path))
    assert loaded.mismatches(RobotSetup(("a", "b"), ("front", "wrist"))) == []
    assert np.isfinite(guided_chunk(loaded, GuidanceMode.STOP_GRADIENT).numpy()).all()
