"""The flow-policy protocol: how guidance drives any action-chunking flow model.

A policy plugs in by composition: any object with these attributes and methods works,
no base class is involved. Guidance code only ever calls :func:`paper_velocity`, which
converts the policy's own time convention into the paper's (tau = 0 noise, tau = 1 actions).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import torch

VelocityField = Callable[[torch.Tensor, float], torch.Tensor]
"""``velocity(actions (B, H, M), tau) -> v (B, H, M)`` in the paper's convention."""


class TimeConvention(enum.Enum):
    """Direction in which a policy integrates its flow."""

    NOISE_AT_0 = "noise_at_0"
    """The paper's: tau runs 0 (noise) -> 1 (actions), ``A <- A + v / n``."""
    NOISE_AT_1 = "noise_at_1"
    """pi0, openpi, LeRobot: t runs 1 (noise) -> 0 (actions), ``x <- x - u / n``."""


@runtime_checkable
class FlowPolicy(Protocol):
    """What guided inference needs from an action-chunking flow policy.

    ``encode`` runs once per chunk and returns whatever the model wants to reuse across
    the n denoising steps (image features, a VLM prefix KV cache, ...); ``velocity`` is
    then called n times (or n times with a backward pass) on that context.
    """

    prediction_horizon: int
    """H, actions per chunk."""
    action_dim: int
    """M, dimensions of one action."""
    time_convention: TimeConvention
    device: torch.device
    dtype: torch.dtype

    def encode(self, observation: Mapping[str, Any]) -> Any:
        """Encode a batched observation (leading dimension B) into a context."""
        ...

    def velocity(self, actions: torch.Tensor, time: float, context: Any) -> torch.Tensor:
        """Velocity for a (B, H, M) sample at flow ``time`` in the policy's own convention."""
        ...

    def to_model_space(self, actions: torch.Tensor) -> torch.Tensor:
        """Robot actions -> the space the flow runs in (e.g.
        normalised); guidance happens there.
        """
        ...

    def from_model_space(self, model_actions: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_model_space`."""
        ...


def paper_velocity(policy: FlowPolicy, context: Any) -> VelocityField:
    """The policy's velocity field in the paper's convention (tau = 1 - t, v = -u)."""
    if policy.time_convention is TimeConvention.NOISE_AT_0:
        return lambda actions, tau: policy.velocity(actions, tau, context)
    if policy.time_convention is TimeConvention.NOISE_AT_1:
        return lambda actions, tau: -policy.velocity(actions, 1.0 - tau, context)
    raise ValueError(f"time_convention must be a TimeConvention, got {policy.time_convention!r}")
