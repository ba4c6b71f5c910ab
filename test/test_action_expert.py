"""The built-in pi0-shaped expert, and the compiled guided sampler that runs it fast.

The sampler (rtc_ros.core.compiled) is checked against the core's guided_sample, which is the
specification, on the tiny configuration of the expert.
"""

import pytest
import torch

from rtc_ros.core.compiled import CompiledGuidedSampler
from rtc_ros.core.guidance import GuidanceMode, guided_sample, pad_to_horizon
from rtc_ros.core.masks import prefix_weights
from rtc_ros.core.policy import FlowPolicy, TimeConvention, paper_velocity
from rtc_ros.policies.action_expert import ActionExpertPolicy, PrefixCache, pi0_config, tiny_config

BATCH, HORIZON, ACTION_DIM, STEPS, BETA = 2, 50, 14, 5, 5.0
MODES = [None, GuidanceMode.STOP_GRADIENT, GuidanceMode.VJP]


pytestmark = pytest.mark.usefixtures("one_cpu_thread")


@pytest.fixture(scope="module")
def policy():
    return ActionExpertPolicy(tiny_config(ACTION_DIM, HORIZON))


@pytest.fixture(scope="module")
def inputs(policy):
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        context = policy.encode(policy.example_observation(BATCH, generator))
    noise = torch.randn((BATCH, HORIZON, ACTION_DIM), generator=generator)
    previous = pad_to_horizon(
        torch.randn((BATCH, HORIZON - 25, ACTION_DIM), generator=generator), HORIZON
    )
    return context, noise, previous, prefix_weights(HORIZON, 25, 6)


def reference_chunk(policy, context, noise, previous, weights, mode):
    if mode is None:
        return guided_sample(paper_velocity(policy, context), noise, None, None, STEPS, BETA)
    return guided_sample(
        paper_velocity(policy, context), noise, previous, weights, STEPS, BETA, mode
    )


def test_pi0_config_has_pi0_sizes_a_300m_expert_and_816_prefix_tokens():
    policy = ActionExpertPolicy(pi0_config(), device="meta")
    counts = policy.parameter_counts()
    assert 280e6 < counts["expert"] < 330e6
    assert 1.8e9 < counts["prefix"] < 2.1e9
    assert 0.38e9 < counts["vision"] < 0.45e9
    assert policy.config.prefix_tokens == 3 * 256 + 48
    assert (policy.prediction_horizon, policy.action_dim) == (50, 32)


def test_expert_satisfies_the_flow_policy_protocol_in_pi0_time_convention(policy):
    assert isinstance(policy, FlowPolicy)
    assert policy.time_convention is TimeConvention.NOISE_AT_1
    assert all(not p.requires_grad for p in policy.parameters())


def test_encode_caches_one_key_and_value_per_prefix_layer(policy, inputs):
    context = inputs[0]
    config = policy.config
    assert isinstance(context, PrefixCache)
    prefix = config.prefix
    expected = (prefix.depth, BATCH, prefix.num_kv_heads, config.prefix_tokens, prefix.head_dim)
    assert context.keys.shape == expected and context.values.shape == expected
    assert context.state_token.shape == (BATCH, 1, config.expert.width)


def test_velocity_depends_on_flow_time_and_on_the_prefix(policy, inputs):
    context, noise = inputs[0], inputs[1]
    with torch.no_grad():
        at_noise = policy.velocity(noise, 1.0, context)
        halfway = policy.velocity(noise, 0.5, context)
        other_prefix = PrefixCache(
            context.keys.flip(3), context.values.flip(3), context.state_token
        )
        moved = policy.velocity(noise, 1.0, other_prefix)
    assert at_noise.shape == noise.shape
    assert not torch.allclose(at_noise, halfway)
    assert not torch.allclose(at_noise, moved)


@pytest.mark.parametrize("mode", MODES, ids=["vanilla", "stop_gradient", "vjp"])
def test_compiled_sampler_matches_guided_sample(policy, inputs, mode):
    context, noise, previous, weights = inputs
    sampler = CompiledGuidedSampler(policy, BATCH, STEPS, BETA)
    expected = reference_chunk(policy, context, noise, previous, weights, mode)
    target, mask = (None, None) if mode is None else (previous, weights)
    chunk = sampler.sample(context, noise, target, mask, mode or GuidanceMode.VJP)
    torch.testing.assert_close(chunk, expected, rtol=1e-5, atol=1e-5)


def test_compiled_sampler_takes_new_context_and_noise_on_every_call(policy, inputs):
    context, noise, previous, weights = inputs
    sampler = CompiledGuidedSampler(policy, BATCH, STEPS, BETA)
    sampler.sample(context, noise, previous, weights, GuidanceMode.VJP)
    other = PrefixCache(context.keys * 0.5, context.values.flip(3), context.state_token + 1.0)
    chunk = sampler.sample(other, -noise, previous, weights, GuidanceMode.VJP)
    expected = reference_chunk(policy, other, -noise, previous, weights, GuidanceMode.VJP)
    torch.testing.assert_close(chunk, expected, rtol=1e-5, atol=1e-5)


def test_guidance_pulls_the_frozen_prefix_toward_the_previous_chunk(policy, inputs):
    context, noise, previous, weights = inputs
    sampler = CompiledGuidedSampler(policy, BATCH, STEPS, BETA)
    frozen = slice(0, 6)
    vanilla = sampler.sample(context, noise)
    for mode in (GuidanceMode.STOP_GRADIENT, GuidanceMode.VJP):
        guided = sampler.sample(context, noise, previous, weights, mode)
        gap = (guided[:, frozen] - previous[:, frozen]).norm()
        assert gap < 0.5 * (vanilla[:, frozen] - previous[:, frozen]).norm()


def test_vjp_mode_never_gives_parameters_a_gradient(inputs):
    policy = ActionExpertPolicy(tiny_config(ACTION_DIM, HORIZON)).requires_grad_(True)
    context, noise, previous, weights = inputs
    sampler = CompiledGuidedSampler(policy, BATCH, STEPS, BETA)
    sampler.sample(context, noise, previous, weights, GuidanceMode.VJP)
    assert all(p.grad is None for p in policy.parameters())


def test_compiled_sampler_rejects_a_context_of_another_shape(policy, inputs):
    context, noise = inputs[0], inputs[1]
    sampler = CompiledGuidedSampler(policy, BATCH, STEPS, BETA)
    sampler.sample(context, noise)
    shorter = PrefixCache(
        context.keys[:, :, :, :-1], context.values[:, :, :, :-1], context.state_token
    )
    with pytest.raises(ValueError, match="fixed shape"):
        sampler.sample(shorter, noise)
    with pytest.raises(ValueError, match="noise must have shape"):
        sampler.sample(context, noise[:1])


def test_cuda_graphs_need_a_cuda_policy(policy):
    with pytest.raises(ValueError, match="CUDA device"):
        CompiledGuidedSampler(policy, BATCH, STEPS, BETA, cuda_graph=True)


def test_save_and_load_keep_the_weights(policy, inputs, tmp_path):
    context, noise = inputs[0], inputs[1]
    policy.save(tmp_path / "expert.pt")
    loaded = ActionExpertPolicy.load(tmp_path / "expert.pt")
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.velocity(noise, 0.3, context), policy.velocity(noise, 0.3, context)
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", MODES, ids=["vanilla", "stop_gradient", "vjp"])
def test_cuda_graph_replay_matches_guided_sample_in_bfloat16(mode):
    policy = ActionExpertPolicy(
        tiny_config(ACTION_DIM, HORIZON), device="cuda", dtype=torch.bfloat16
    )
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        context = policy.encode(policy.example_observation(BATCH, generator))
    noise = torch.randn((BATCH, HORIZON, ACTION_DIM), generator=generator).cuda().bfloat16()
    previous = torch.randn((BATCH, HORIZON, ACTION_DIM), generator=generator).cuda().bfloat16()
    weights = prefix_weights(HORIZON, 25, 6).cuda()
    sampler = CompiledGuidedSampler(policy, BATCH, STEPS, BETA)
    target, mask = (None, None) if mode is None else (previous, weights)
    for _ in range(2):  # capture, then replay
        chunk = sampler.sample(context, noise, target, mask, mode or GuidanceMode.VJP)
    expected = reference_chunk(policy, context, noise, previous, weights, mode)
    assert ((chunk.float() - expected.float()).norm() / expected.float().norm()) < 2e-2
