"""The inference worker takes new settings between two chunks, never within one."""

import dataclasses

import numpy as np
import pytest
import torch

from rtc_ros.core import (
    INITIAL_CONTROLLER_STATE,
    ChunkGenerator,
    ChunkingConfig,
    ControllerState,
    GuidanceMode,
    InferencePlanner,
    InferenceSettings,
)
from rtc_ros.policies.reference import ReferenceFlowPolicy, ReferencePolicyConfig
from rtc_ros.runtime.inference_worker import InferenceWorker

H, M, STATE, S_MIN = 8, 2, 3, 3


class CountingPolicy:
    """A reference policy that counts velocity evaluations and can
    act on the first one of a chunk.
    """

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.inner = ReferenceFlowPolicy(ReferencePolicyConfig(H, M, STATE, hidden_dim=16)).eval()
        self.prediction_horizon, self.action_dim = H, M
        self.time_convention, self.device, self.dtype = (
            self.inner.time_convention,
            self.inner.device,
            self.inner.dtype,
        )
        self.to_model_space, self.from_model_space = (
            self.inner.to_model_space,
            self.inner.from_model_space,
        )
        self.calls_per_chunk: list[int] = []
        self.on_first_velocity = None

    def encode(self, observation):
        self.calls_per_chunk.append(0)
        return self.inner.encode(observation)

    def velocity(self, actions, time, context):
        if self.calls_per_chunk[-1] == 0 and self.on_first_velocity is not None:
            self.on_first_velocity()
        self.calls_per_chunk[-1] += 1
        return self.inner.velocity(actions, time, context)


class Harness:
    """A worker whose controller state the test sets; every chunk it publishes is kept."""

    def __init__(self, config: ChunkingConfig = ChunkingConfig()) -> None:
        self.policy = CountingPolicy()
        self.state = INITIAL_CONTROLLER_STATE
        self.chunks = []
        observation = {"state": np.zeros((1, STATE), np.float32)}
        self.worker = InferenceWorker(
            InferencePlanner(H, S_MIN),
            ChunkGenerator(self.policy, config),
            lambda: observation,
            lambda: self.state,
            self.chunks.append,
        )

    def next_chunk(self):
        """Let the controller run the newest chunk until the worker makes the next one."""
        executing = self.chunks[-1] if self.chunks else None
        for tick in range(0 if executing is None else executing.start_tick, 100):
            if executing is not None:
                self.state = ControllerState(tick, executing.sequence, executing.start_tick, 0)
            torch.manual_seed(1)
            chunk = self.worker.step()
            if chunk is not None:
                return chunk
        raise AssertionError("no chunk was made")


def _settings(worker: InferenceWorker, **changes) -> InferenceSettings:
    chunking_changes = {k: v for k, v in changes.items() if k != "min_execution_horizon"}
    return InferenceSettings(
        dataclasses.replace(worker.settings.chunking, **chunking_changes),
        changes.get("min_execution_horizon", worker.settings.min_execution_horizon),
    )


def test_settings_changed_while_a_chunk_is_sampled_apply_from_the_next_chunk():
    harness = Harness(ChunkingConfig(num_steps=5, guidance=GuidanceMode.STOP_GRADIENT))
    harness.policy.on_first_velocity = lambda: harness.worker.reconfigure(
        _settings(harness.worker, num_steps=2)
    )
    harness.next_chunk()
    harness.policy.on_first_velocity = None
    harness.next_chunk()
    assert harness.policy.calls_per_chunk == [5, 2]


@pytest.mark.parametrize(
    "change",
    [
        {"num_steps": 3},
        {"beta": 0.5},
        {"guidance": GuidanceMode.STOP_GRADIENT},
        {"min_execution_horizon": 5},
    ],
    ids=lambda change: next(iter(change)),
)
def test_each_setting_changes_the_next_chunk(change):
    def second_chunk(reconfigure: bool):
        harness = Harness()
        harness.next_chunk()
        if reconfigure:
            harness.worker.reconfigure(_settings(harness.worker, **change))
        chunk = harness.next_chunk()
        return chunk.start_tick, chunk.actions

    unchanged_tick, unchanged = second_chunk(False)
    changed_tick, changed = second_chunk(True)
    assert changed_tick != unchanged_tick or not np.allclose(changed, unchanged)


def test_the_method_cannot_change_while_running():
    harness = Harness()
    with pytest.raises(ValueError, match="method is fixed"):
        harness.worker.reconfigure(_settings(harness.worker, method="sync"))


class _ConstantGenerator:
    """Stands in for ChunkGenerator: every chunk is ``value`` everywhere."""

    config = ChunkingConfig()

    def __init__(self, value: float) -> None:
        self.value = value

    def generate(self, observation, unexecuted, inference_delay, execution_horizon):
        return torch.full((1, H, M), self.value)


def _worker(published: list, value: float = 0.5, **kwargs) -> InferenceWorker:
    return InferenceWorker(
        InferencePlanner(H, S_MIN),
        _ConstantGenerator(value),
        lambda: {"state": torch.zeros(1, M)},
        lambda: INITIAL_CONTROLLER_STATE,
        published.append,
        **kwargs,
    )


def test_emulated_latency_pads_each_inference_to_at_least_that_wall_time():
    published = []
    worker = _worker(published, emulated_latency_s=0.05)
    worker.step()
    assert published[0].latency_s >= 0.05
    assert worker.report().emulated_latency_ms == 50.0


def test_actions_outside_the_joint_limits_are_clipped_onto_them_and_counted():
    published = []
    limits = (np.array([0.0, -1.0]), np.array([1.0, 0.2]))
    worker = _worker(published, value=0.5, action_limits=limits)
    worker.step()
    assert np.all(published[0].actions[:, 0] == 0.5) and np.all(published[0].actions[:, 1] == 0.2)
    assert worker.report().actions_clipped == H


def test_a_chunk_from_a_stale_observation_starts_at_the_tick_the_observation_saw():
    published = []
    state = ControllerState(tick=0, sequence=-1, start_tick=0, observed_delay=0)
    worker = InferenceWorker(
        InferencePlanner(H, S_MIN),
        _ConstantGenerator(0.5),
        lambda: {"state": torch.zeros(1, M)},
        lambda: state,
        published.append,
        observation_age_ticks=lambda: 2,
    )
    first = worker.step()
    assert first.start_tick == 0  # nothing moved before the first chunk: it starts now
    state = ControllerState(
        tick=S_MIN + 2, sequence=first.sequence, start_tick=0, observed_delay=0
    )
    second = worker.step()
    assert (second.start_tick, second.execution_horizon) == (S_MIN, S_MIN)
