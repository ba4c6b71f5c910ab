import numpy as np
import pytest
import torch

from rtc_ros.core import (
    ChunkExecutor,
    ChunkGenerator,
    ChunkingConfig,
    GuidanceMode,
    InferencePlanner,
    Method,
    TimeConvention,
)
from rtc_ros.core.simulated_time import SimulatedTimeLoop
from rtc_ros.policies.reference import ReferenceFlowPolicy, ReferencePolicyConfig

H, M, STATE = 8, 2, 3


@pytest.fixture(scope="module")
def policy():
    torch.manual_seed(0)
    return (
        ReferenceFlowPolicy(ReferencePolicyConfig(H, M, STATE, hidden_dim=64))
        .eval()
        .requires_grad_(False)
    )


class OneToZero:
    """The same model as ``inner`` written in pi0/LeRobot's convention: t = 1 - tau, u = -v."""

    time_convention = TimeConvention.NOISE_AT_1

    def __init__(self, inner):
        self.inner = inner
        self.prediction_horizon, self.action_dim = inner.prediction_horizon, inner.action_dim
        self.device, self.dtype = inner.device, inner.dtype
        self.encode = inner.encode
        self.to_model_space, self.from_model_space = inner.to_model_space, inner.from_model_space

    def velocity(self, actions, time, context):
        return -self.inner.velocity(actions, 1.0 - time, context)


def _observation(batch=1):
    return {"state": torch.linspace(-1, 1, batch * STATE).reshape(batch, STATE)}


@pytest.mark.parametrize("guidance", list(GuidanceMode))
def test_a_policy_in_the_one_to_zero_convention_gives_the_same_guided_chunk(policy, guidance):
    config = ChunkingConfig(method="rtc_soft", guidance=guidance)
    noise = torch.randn(1, H, M)
    previous = torch.randn(1, H - 3, M)
    paper = ChunkGenerator(policy, config).generate(_observation(), previous, 2, 3, noise=noise)
    pi0 = ChunkGenerator(OneToZero(policy), config).generate(
        _observation(), previous, 2, 3, noise=noise
    )
    assert torch.allclose(paper, pi0, atol=1e-5)


def test_naive_async_ignores_the_previous_chunk(policy):
    noise = torch.randn(1, H, M)
    generator = ChunkGenerator(policy, ChunkingConfig(method="naive_async"))
    a = generator.generate(_observation(), torch.randn(1, H - 3, M), 2, 3, noise=noise)
    b = generator.generate(_observation(), None, 0, 0, noise=noise)
    assert torch.equal(a, b)


def test_rtc_follows_the_previous_chunk_on_the_frozen_prefix_more_than_naive_async(policy):
    torch.manual_seed(1)
    observation, previous = _observation(16), torch.randn(16, H - 3, M) * 2
    noise = torch.randn(16, H, M)
    errors = {}
    for name in ("naive_async", "rtc_soft"):
        chunk = ChunkGenerator(policy, ChunkingConfig(method=name)).generate(
            observation, previous, 2, 3, noise=noise
        )
        errors[name] = (chunk[:, :2] - previous[:, :2]).abs().mean()
    assert errors["rtc_soft"] < 0.3 * errors["naive_async"]


def test_bid_picks_the_sample_most_coherent_with_the_previous_chunk(policy):
    torch.manual_seed(2)
    config = ChunkingConfig(method="bid")
    generator = ChunkGenerator(policy, config)
    observation, previous = _observation(4), torch.randn(4, H - 3, M)
    chosen = generator.generate(observation, previous, 2, 3)
    unguided = ChunkGenerator(policy, ChunkingConfig(method="naive_async")).generate(
        {"state": observation["state"].repeat_interleave(32, 0)}, None, 0, 0
    )
    typical = (
        (unguided.reshape(4, 32, H, M)[:, :, : H - 3] - previous[:, None])
        .pow(2)
        .sum((-1, -2))
        .mean(1)
    )
    chosen_error = (chosen[:, : H - 3] - previous).pow(2).sum((-1, -2))
    assert chosen.shape == (4, H, M) and bool((chosen_error < typical).all())


@pytest.mark.parametrize("method", list(Method))
def test_every_method_runs_in_the_real_time_loop_without_skipping_actions(policy, method):
    config = ChunkingConfig(
        method=method, bid=ChunkingConfig().bid.__class__(num_samples=4, mode_size=2)
    )
    generator = ChunkGenerator(policy, config)
    executor = ChunkExecutor(config.executor_spec(min_execution_horizon=2))
    planner = InferencePlanner(H, min_execution_horizon=2)

    def infer(request):
        unexecuted = (
            None if request.warmup else torch.tensor(request.unexecuted, dtype=torch.float32)[None]
        )
        return generator.generate(
            _observation(), unexecuted, request.inference_delay, request.execution_horizon
        )[0].numpy()

    loop = SimulatedTimeLoop(executor, planner, infer, lambda r: 0 if r.warmup else 2)
    loop.start()
    for _ in range(30):
        result = loop.tick()
        assert result.action is not None and np.isfinite(result.action).all()
        loop.after_world_step()
    assert executor.underruns == 0 and executor.swaps >= 5


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(method="dagger"), "method"),
        (dict(guidance="adjoint"), "guidance"),
        (dict(beta=0.0), "beta"),
        (dict(num_steps=0), "num_steps"),
    ],
)
def test_bad_chunking_config_raises_value_error_naming_the_field(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ChunkingConfig(**kwargs)


def test_labels_name_the_guidance_mode_only_for_rtc():
    assert (
        ChunkingConfig(method="rtc_soft", guidance="stop_gradient").label
        == "rtc_soft/stop_gradient"
    )
    assert ChunkingConfig(method="bid").label == "bid"


@pytest.mark.parametrize(
    "method, guidance",
    [
        ("naive_async", "vjp"),
        ("rtc_soft", "vjp"),
        ("rtc_soft", "stop_gradient"),
        ("rtc_hard", "vjp"),
    ],
)
def test_the_compiled_sampler_gives_the_same_chunks_as_guided_sample(policy, method, guidance):
    noise, previous = torch.randn(2, H, M), torch.randn(2, H - 3, M)
    chunks = [
        ChunkGenerator(
            policy, ChunkingConfig(method=method, guidance=guidance, compiled=compiled)
        ).generate(_observation(2), previous, 2, 3, noise=noise)
        for compiled in (False, True)
    ]
    assert torch.allclose(chunks[0], chunks[1], atol=1e-5)
