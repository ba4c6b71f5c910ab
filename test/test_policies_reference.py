import numpy as np
import pytest
import torch

from rtc_ros.core import ChunkGenerator, ChunkingConfig, FlowPolicy
from rtc_ros.policies.reference import (
    AuxiliaryTask,
    ReferenceFlowPolicy,
    ReferencePolicyConfig,
    TrainingConfig,
    train_flow_policy,
)


def _bimodal_data(n=2000, seed=0):
    """Chunks that go up or down with equal probability, scaled by the state."""
    rng = np.random.default_rng(seed)
    state = rng.uniform(0.5, 1.5, size=(n, 1)).astype(np.float32)
    sign = rng.choice([-1.0, 1.0], size=(n, 1, 1)).astype(np.float32)
    ramp = np.linspace(0.1, 1.0, 4, dtype=np.float32)[None, :, None]
    return {"state": state}, sign * ramp * state[:, :, None]


def test_reference_policy_satisfies_the_flow_policy_protocol():
    assert isinstance(ReferenceFlowPolicy(ReferencePolicyConfig(4, 1, 1)), FlowPolicy)


def test_trained_policy_reproduces_both_modes_without_averaging_them():
    observations, chunks = _bimodal_data()
    policy = ReferenceFlowPolicy(ReferencePolicyConfig(4, 1, 1, hidden_dim=64))
    losses = train_flow_policy(
        policy, observations, chunks, TrainingConfig(steps=1500, batch_size=128)
    )
    # flow matching on bimodal data keeps an irreducible loss; training must still cut it clearly
    assert np.mean(losses[-50:]) < 0.75 * np.mean(losses[:50])
    generator = ChunkGenerator(
        policy, ChunkingConfig(method="naive_async"), generator=torch.Generator().manual_seed(0)
    )
    samples = generator.generate({"state": torch.ones(200, 1)}, None, 0, 0)[:, -1, 0]
    assert (samples > 0.5).float().mean() > 0.3 and (samples < -0.5).float().mean() > 0.3
    assert (samples.abs() < 0.3).float().mean() < 0.15  # the mean of the modes (0) is rare


def test_checkpoint_round_trip_keeps_outputs(tmp_path):
    policy = ReferenceFlowPolicy(
        ReferencePolicyConfig(4, 2, 3, image_shape=(3, 16, 16), hidden_dim=32)
    )
    policy.eval().requires_grad_(False)
    path = tmp_path / "policy.pt"
    policy.save(path)
    loaded = ReferenceFlowPolicy.load(path)
    observation = {
        "state": torch.randn(2, 3),
        "image": torch.randint(0, 255, (2, 3, 16, 16), dtype=torch.uint8),
    }
    actions = torch.randn(2, 4, 2)
    assert torch.allclose(
        policy.velocity(actions, 0.3, policy.encode(observation)),
        loaded.velocity(actions, 0.3, loaded.encode(observation)),
    )


def test_training_rejects_chunks_of_the_wrong_shape():
    policy = ReferenceFlowPolicy(ReferencePolicyConfig(4, 2, 3))
    with pytest.raises(ValueError, match="action_chunks"):
        train_flow_policy(policy, {"state": np.zeros((5, 3))}, np.zeros((5, 4, 3)))


def test_an_auxiliary_target_trains_its_head_and_leaves_the_policy_interface_alone():
    observations, chunks = _bimodal_data(n=500)
    policy = ReferenceFlowPolicy(ReferencePolicyConfig(4, 1, 1, hidden_dim=32))
    targets = 3.0 * observations["state"]  # something the context can predict
    head = torch.nn.Linear(32, 1)
    with torch.no_grad():
        before = torch.nn.functional.mse_loss(
            head(policy.encode({"state": torch.as_tensor(observations["state"])})),
            torch.as_tensor((targets - targets.mean()) / targets.std()),
        )
    train_flow_policy(
        policy,
        observations,
        chunks,
        TrainingConfig(steps=300, batch_size=64),
        auxiliary=AuxiliaryTask(head, targets),
    )
    with torch.no_grad():
        after = torch.nn.functional.mse_loss(
            head(policy.encode({"state": torch.as_tensor(observations["state"])})),
            torch.as_tensor((targets - targets.mean()) / targets.std()),
        )
    assert after < 0.2 * before
    assert set(policy.state_dict()) == set(ReferenceFlowPolicy(policy.config).state_dict())


def _smooth_chunks(n=1000, horizon=16, action_dim=8, seed=0):
    """Chunks determined by a 2-d state: smooth in time, H * M = 128 values each."""
    rng = np.random.default_rng(seed)
    state = rng.uniform(-1.0, 1.0, size=(n, 2)).astype(np.float32)
    t = np.linspace(0.0, 1.0, horizon, dtype=np.float32)[None, :, None]
    joint = np.arange(action_dim, dtype=np.float32)[None, None, :]
    chunks = (
        np.sin(2.0 * t * state[:, None, :1] + joint)
        + t * state[:, None, 1:] * (joint + 1) / action_dim
    )
    return {"state": state}, chunks.astype(np.float32)


def test_predicting_actions_passes_a_chunk_far_wider_than_the_network():
    """hidden_dim = 16 against H * M = 128: a direct velocity must carry the noise in x through
    16 units and cannot; predicting the chunk (low-dimensional given the state) can.
    """
    observations, chunks = _smooth_chunks()
    test_observations, test_chunks = _smooth_chunks(n=64, seed=1)
    errors = {}
    for output in ("velocity", "actions"):
        torch.manual_seed(0)
        policy = ReferenceFlowPolicy(
            ReferencePolicyConfig(16, 8, 2, hidden_dim=16, network_output=output)
        )
        train_flow_policy(policy, observations, chunks, TrainingConfig(steps=600, batch_size=64))
        generator = ChunkGenerator(
            policy,
            ChunkingConfig(method="naive_async"),
            generator=torch.Generator().manual_seed(0),
        )
        samples = generator.generate(
            {"state": torch.as_tensor(test_observations["state"])}, None, 0, 0
        )
        errors[output] = float((samples - torch.as_tensor(test_chunks)).pow(2).mean())
    assert errors["actions"] < 0.5 * errors["velocity"], errors


def test_network_output_is_validated():
    with pytest.raises(ValueError, match="network_output must be velocity or actions"):
        ReferencePolicyConfig(4, 1, 1, network_output="noise")
