"""RTC and its baselines behind one interface, so that a benchmark swaps them by name.

A method decides two things: how a chunk is generated (:class:`ChunkGenerator`) and how the
controller executes chunks (:meth:`ChunkingConfig.executor_spec`, torch-free in
:mod:`rtc_ros.core.config`). The real-time bookkeeping (when inference starts, s, d) is the
same for all of them (:class:`rtc_ros.core.scheduler.InferencePlanner`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from rtc_ros.core.compiled import CompiledGuidedSampler
from rtc_ros.core.config import ChunkingConfig, Method
from rtc_ros.core.guidance import guided_sample, pad_to_horizon
from rtc_ros.core.masks import MaskSchedule, prefix_weights
from rtc_ros.core.policy import FlowPolicy, paper_velocity

_GUIDED_SCHEDULE = {Method.RTC_HARD: MaskSchedule.HARD, Method.RTC_SOFT: MaskSchedule.EXP}


class ChunkGenerator:
    """Generates chunks for one policy with one method; the policy
    is used only via its protocol.
    """

    def __init__(
        self,
        policy: FlowPolicy,
        config: ChunkingConfig,
        weak_policy: FlowPolicy | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        """``weak_policy``: BID's contrast model (an earlier checkpoint); None uses only the
        strong samples' mode for the forward criterion.
        """
        self.policy = policy
        self.config = config
        self._weak_policy = weak_policy
        self._generator = generator
        self._compiled: dict[tuple, CompiledGuidedSampler] = {}

    def noise(self, batch_size: int) -> torch.Tensor:
        shape = (batch_size, self.policy.prediction_horizon, self.policy.action_dim)
        noise = torch.randn(
            shape,
            generator=self._generator,
            dtype=torch.float32,
            device=self._generator.device if self._generator else "cpu",
        )
        return noise.to(device=self.policy.device, dtype=self.policy.dtype)

    def generate(
        self,
        observation: Mapping[str, Any],
        unexecuted: torch.Tensor | None,
        inference_delay: int,
        execution_horizon: int,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """A (B, H, M) chunk of robot actions for a batched observation.

        ``unexecuted`` is the previous chunk's A_cur[s:] as (B, H - s, M) robot actions, or None
        for the first chunk; ``inference_delay`` d and ``execution_horizon`` s as planned.
        ``noise`` is in the policy's model space.
        """
        batch_size = _batch_size(observation)
        if unexecuted is not None:
            unexecuted = self.policy.to_model_space(
                unexecuted.to(device=self.policy.device, dtype=self.policy.dtype)
            )
        return self.policy.from_model_space(
            self._generate(
                observation, unexecuted, inference_delay, execution_horizon, noise, batch_size
            )
        )

    def _generate(
        self, observation, unexecuted, inference_delay, execution_horizon, noise, batch_size
    ):
        if self.config.method is Method.BID and unexecuted is not None and unexecuted.shape[1] > 0:
            return self._bid(observation, unexecuted, execution_horizon, batch_size)
        if noise is None:
            noise = self.noise(batch_size)
        guided = self.config.method.guided and unexecuted is not None and unexecuted.shape[1] > 0
        return self._sample(
            self.policy,
            observation,
            noise,
            unexecuted if guided else None,
            inference_delay,
            execution_horizon,
        )

    def _sample(self, policy, observation, noise, unexecuted, inference_delay, execution_horizon):
        horizon = policy.prediction_horizon
        # VJP mode differentiates through velocity(), which must not meet inference tensors.
        with torch.no_grad():
            context = policy.encode(observation)
        weights = previous = None
        if unexecuted is not None:
            schedule = _GUIDED_SCHEDULE[self.config.method]
            weights = prefix_weights(horizon, execution_horizon, inference_delay, schedule)
            previous = pad_to_horizon(
                unexecuted.to(device=noise.device, dtype=noise.dtype), horizon
            )
        if self.config.compiled:
            return self._compiled_sampler(policy, noise.shape[0]).sample(
                context, noise, previous, weights, self.config.guidance
            )
        return guided_sample(
            paper_velocity(policy, context),
            noise,
            previous,
            weights,
            self.config.num_steps,
            self.config.beta,
            self.config.guidance,
        )

    def _compiled_sampler(self, policy: FlowPolicy, batch_size: int) -> CompiledGuidedSampler:
        """One sampler (buffers, graphs) per policy, batch size, n and beta, made on first use."""
        key = (id(policy), batch_size, self.config.num_steps, self.config.beta)
        if key not in self._compiled:
            self._compiled[key] = CompiledGuidedSampler(
                policy, batch_size, self.config.num_steps, self.config.beta
            )
        return self._compiled[key]

    def _bid(self, observation, unexecuted, execution_horizon, batch_size):
        """Pick among N samples by backward coherence + forward contrast (Liu et al. 2024)."""
        bid = self.config.bid
        n = bid.num_samples
        repeated = _repeat(observation, n)
        strong = self._sample(self.policy, repeated, self.noise(batch_size * n), None, 0, 0)
        horizon = self.policy.prediction_horizon
        strong = strong.reshape(batch_size, n, horizon, -1)
        overlap = horizon - execution_horizon
        previous = unexecuted.to(strong)[:, None, :overlap]
        backward = ((strong[:, :, :overlap] - previous) ** 2).flatten(2).sum(-1)
        forward = _mean_nearest(strong, strong, bid.mode_size, exclude_self=True)
        if self._weak_policy is not None:
            weak = self._sample(
                self._weak_policy, repeated, self.noise(batch_size * n), None, 0, 0
            )
            forward = forward - _mean_nearest(strong, weak.reshape(strong.shape), bid.mode_size)
        best = torch.argmin(backward + forward, dim=1)
        return strong[torch.arange(batch_size), best]


def _mean_nearest(
    samples: torch.Tensor, references: torch.Tensor, k: int, exclude_self: bool = False
):
    """Mean squared distance of each sample (B, N, H, M) to its k nearest references."""
    distances = torch.cdist(samples.flatten(2), references.flatten(2)) ** 2
    if exclude_self:
        distances = distances + torch.diag_embed(
            torch.full(distances.shape[:2], float("inf"), device=distances.device)
        )
    return distances.topk(k, dim=-1, largest=False).values.mean(-1)


def _batch_size(observation: Mapping[str, Any]) -> int:
    for value in observation.values():
        if isinstance(value, torch.Tensor):
            return value.shape[0]
    raise ValueError("observation must hold at least one batched torch.Tensor")


def _repeat(observation: Mapping[str, Any], n: int) -> dict[str, Any]:
    return {
        k: v.repeat_interleave(n, dim=0) if isinstance(v, torch.Tensor) else v
        for k, v in observation.items()
    }
