"""LeRobot's flow VLAs through the FlowPolicy protocol (scripts/setup.sh installs lerobot).

SmolVLA runs at a tiny size with random weights. pi0 and pi0.5 need openpi's patched
transformers and a few minutes on a CPU: they run only with RTC_LEROBOT_PI_TESTS=1.
"""

import json
import os

import pytest
import torch

from rtc_ros.core.compiled import CompiledGuidedSampler
from rtc_ros.core.guidance import GuidanceMode, guided_sample, pad_to_horizon
from rtc_ros.core.masks import prefix_weights
from rtc_ros.core.policy import FlowPolicy, TimeConvention, paper_velocity
from rtc_ros.policies.lerobot import model as lerobot_adapter
from rtc_ros.policies.lerobot.model import (
    LeRobotUnavailable,
    build_lerobot_policy,
    lerobot_available,
)

SMOLVLA_MISSING = lerobot_available("smolvla")
needs_smolvla = pytest.mark.skipif(SMOLVLA_MISSING is not None, reason=str(SMOLVLA_MISSING))
BATCH, HORIZON, STEPS, BETA = 2, 50, 5, 5.0
MODES = [None, GuidanceMode.STOP_GRADIENT, GuidanceMode.VJP]


pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def lerobot_sample(policy, observation, noise):
    """LeRobot's own sample_actions (n steps, no guidance) on the same inputs."""
    images = list(observation["images"].unbind(1))
    masks = list(observation["image_masks"].unbind(1))
    args = [images, masks, observation["tokens"], observation["token_masks"]]
    if policy.kind != "pi05":
        args.append(observation["state"])
    kwargs = {} if policy.kind == "smolvla" else {"num_steps": STEPS}
    policy.model.config.num_steps = STEPS
    with torch.no_grad():
        return policy.model.sample_actions(*args, noise=noise.clone(), **kwargs)


def check_policy(policy):
    generator = torch.Generator().manual_seed(0)
    observation = policy.example_observation(BATCH, generator, num_images=2, language_tokens=8)
    with torch.no_grad():
        context = policy.encode(observation)
    noise = torch.randn((BATCH, HORIZON, policy.action_dim), generator=generator)
    previous = pad_to_horizon(
        torch.randn((BATCH, 25, policy.action_dim), generator=generator), HORIZON
    )
    weights = prefix_weights(HORIZON, 25, 6)
    sampler = CompiledGuidedSampler(policy, BATCH, STEPS, BETA)
    torch.testing.assert_close(
        sampler.sample(context, noise), lerobot_sample(policy, observation, noise)
    )
    for mode in MODES[1:]:
        expected = guided_sample(
            paper_velocity(policy, context), noise, previous, weights, STEPS, BETA, mode
        )
        torch.testing.assert_close(
            sampler.sample(context, noise, previous, weights, mode), expected
        )
    assert all(p.grad is None for p in policy.model.parameters())


def test_missing_lerobot_is_reported_with_what_to_install(monkeypatch):
    def not_installed(name):
        raise lerobot_adapter.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(lerobot_adapter.importlib.metadata, "version", not_installed)
    with pytest.raises(LeRobotUnavailable, match=f"lerobot=={lerobot_adapter.LEROBOT_VERSION}"):
        build_lerobot_policy("smolvla")
    assert "lerobot is not installed" in lerobot_available("smolvla")


def test_unknown_policy_kinds_are_rejected():
    with pytest.raises(ValueError, match="smolvla, pi0, pi05"):
        build_lerobot_policy("act")


@needs_smolvla
def test_smolvla_builds_offline_and_runs_the_expert_on_the_cached_prefix():
    policy = build_lerobot_policy("smolvla", tiny=True)
    assert isinstance(policy, FlowPolicy)
    assert policy.time_convention is TimeConvention.NOISE_AT_1
    assert (policy.prediction_horizon, policy.action_dim) == (HORIZON, 32)
    check_policy(policy)


@needs_smolvla
def test_smolvla_model_space_is_normalised_and_padded_to_max_action_dim():
    mean, std = torch.arange(14.0), torch.full((14,), 2.0)
    policy = build_lerobot_policy("smolvla", tiny=True, action_mean=mean, action_std=std)
    robot = torch.randn(1, HORIZON, 14)
    model = policy.to_model_space(robot)
    assert model.shape == (1, HORIZON, 32) and torch.all(model[..., 14:] == 0)
    torch.testing.assert_close(policy.from_model_space(model), robot)


@needs_smolvla
def test_latency_command_runs_smolvla_on_cpu(tmp_path):
    from rtc_ros.bench import latency

    latency.main(
        [
            "--model",
            "lerobot-smolvla",
            "--size",
            "tiny",
            "--chunks",
            "2",
            "--warmup",
            "1",
            "--handover-reads",
            "100",
            "--output",
            str(tmp_path),
        ]
    )
    report = json.loads((tmp_path / "latency.json").read_text())
    assert report["model"]["lerobot"] == lerobot_adapter.LEROBOT_VERSION
    assert (
        report["model"]["prefix_tokens"] == 3 * 4 + 8 + 1
    )  # 3 images of 4 tokens, 8 language, state
    assert set(report["modes"]) == {"vanilla", "stop_gradient", "vjp"}


@pytest.mark.skipif(
    os.environ.get("RTC_LEROBOT_PI_TESTS") != "1", reason="set RTC_LEROBOT_PI_TESTS=1 (minutes)"
)
@pytest.mark.parametrize("kind", ["pi0", "pi05"])
def test_pi_policies_match_lerobot_sampling_with_two_layers(kind, monkeypatch):
    missing = lerobot_available(kind)
    if missing:
        pytest.skip(missing)
    module = lerobot_adapter._import_lerobot(kind)
    full = module.get_gemma_config

    def two_layers(variant):
        config = full(variant)
        config.depth, config.mlp_dim = 2, 256
        return config

    monkeypatch.setattr(module, "get_gemma_config", two_layers)
    check_policy(build_lerobot_policy(kind))
