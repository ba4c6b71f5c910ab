"""A small reference flow-matching action-chunking policy, and its training routine.

It observes a state vector and optionally a camera image, encodes them once per chunk, and
predicts the velocity of a chunk with an MLP conditioned on that encoding and the flow time.
Actions and states are normalised with statistics of the training data; the flow runs in the
normalised action space (the paper's convention, tau = 0 noise -> 1 actions).
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from rtc_ros.core.policy import TimeConvention


@dataclasses.dataclass(frozen=True)
class ReferencePolicyConfig:
    prediction_horizon: int
    action_dim: int
    state_dim: int
    image_shape: tuple[int, int, int] | None = None
    """(channels, height, width) of the camera image, None for state-only policies."""
    hidden_dim: int = 256
    num_layers: int = 3
    time_embedding_dim: int = 32
    velocity_network: str = "residual"
    """"residual" (pre-LayerNorm residual blocks, trains several times faster) or "mlp" (plain)."""
    network_output: str = "velocity"
    """"velocity": the network outputs v directly. "actions": it outputs the clean chunk a_hat and
    ``velocity`` returns ``(a_hat - x) / (1 - tau)``, which is exactly E[v | x] when a_hat = E[a |
    x].
    The network's hidden width (``hidden_dim``) is far below H * M: through that bottleneck it
    cannot pass the full-rank noise in x that a direct v must contain, but a_hat, smooth and
    determined mostly by the observation, passes easily."""

    def __post_init__(self) -> None:
        if self.velocity_network not in ("residual", "mlp"):
            raise ValueError(
                f"velocity_network must be residual or mlp, got {self.velocity_network!r}"
            )
        if self.network_output not in ("velocity", "actions"):
            raise ValueError(
                f"network_output must be velocity or actions, got {self.network_output!r}"
            )
        for name in ("prediction_horizon", "action_dim", "state_dim", "hidden_dim", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.image_shape is not None:
            object.__setattr__(self, "image_shape", tuple(int(v) for v in self.image_shape))


def _mlp(in_dim: int, hidden: int, out_dim: int, layers: int) -> nn.Sequential:
    dims = [in_dim] + [hidden] * layers
    blocks: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        blocks += [nn.Linear(a, b), nn.GELU()]
    return nn.Sequential(*blocks, nn.Linear(dims[-1], out_dim))


class _ResidualMlp(nn.Module):
    """Pre-LayerNorm residual MLP: trains several times faster than a
    plain MLP on chunk velocities.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, blocks: int) -> None:
        super().__init__()
        self.input = nn.Linear(in_dim, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.LayerNorm(hidden),
                nn.Linear(hidden, 2 * hidden),
                nn.GELU(),
                nn.Linear(2 * hidden, hidden),
            )
            for _ in range(blocks)
        )
        self.output = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input(x)
        for block in self.blocks:
            x = x + block(x)
        return self.output(x)


class _ImageEncoder(nn.Module):
    """A small CNN ending in a spatial softmax: each feature map becomes the expected image
    position of what it detects, which is what locating objects for reaching needs, with few
    parameters (Levine et al. 2016).
    """

    def __init__(
        self, image_shape: tuple[int, int, int], out_dim: int, keypoints: int = 32
    ) -> None:
        super().__init__()
        channels, height, width = image_shape
        # A 4x4 patchifying first layer keeps training on a CPU in minutes (~4 MMAC per 96x96
        # image); the spatial softmax still locates objects to a fraction of a patch.
        self.conv = nn.Sequential(
            nn.Conv2d(channels, 16, 4, stride=4),
            nn.GELU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(32, keypoints, 1),
        )
        with torch.no_grad():
            _, _, rows, cols = self.conv(torch.zeros(1, *image_shape)).shape
        ys, xs = torch.meshgrid(
            torch.linspace(-1, 1, rows), torch.linspace(-1, 1, cols), indexing="ij"
        )
        self.register_buffer("grid", torch.stack([xs.flatten(), ys.flatten()], dim=-1))
        self.head = nn.Sequential(nn.Linear(2 * keypoints, out_dim), nn.GELU())

    def forward(self, image_uint8: torch.Tensor) -> torch.Tensor:
        image = image_uint8.to(self.grid.dtype) / 127.5 - 1.0
        attention = torch.softmax(self.conv(image).flatten(2), dim=-1)  # (B, K, rows * cols)
        keypoints = attention @ self.grid  # (B, K, 2): expected x, y of each feature
        return self.head(keypoints.flatten(1))


_MIN_REMAINING_TIME = 0.05


class ReferenceFlowPolicy(nn.Module):
    """Implements the :class:`~rtc_ros.core.policy.FlowPolicy` protocol.

    Observations are mappings with ``"state"`` (B, state_dim) and, when configured,
    ``"image"`` (B, C, H, W) uint8.
    """

    time_convention = TimeConvention.NOISE_AT_0

    def __init__(self, config: ReferencePolicyConfig) -> None:
        super().__init__()
        self.config = config
        self.prediction_horizon = config.prediction_horizon
        self.action_dim = config.action_dim
        hidden = config.hidden_dim
        self.state_encoder = _mlp(config.state_dim, hidden, hidden, 1)
        self.image_encoder = (
            _ImageEncoder(config.image_shape, hidden) if config.image_shape else None
        )
        context_dim = hidden * (2 if self.image_encoder else 1)
        chunk_dim = config.prediction_horizon * config.action_dim
        network = _ResidualMlp if config.velocity_network == "residual" else _mlp
        self.velocity_net = network(
            chunk_dim + context_dim + config.time_embedding_dim,
            hidden,
            chunk_dim,
            config.num_layers,
        )
        for name, dim in (("action", config.action_dim), ("state", config.state_dim)):
            self.register_buffer(f"{name}_mean", torch.zeros(dim))
            self.register_buffer(f"{name}_std", torch.ones(dim))

    @property
    def device(self) -> torch.device:
        return self.action_mean.device

    @property
    def dtype(self) -> torch.dtype:
        return self.action_mean.dtype

    def encode(self, observation: Mapping[str, Any]) -> torch.Tensor:
        state = torch.as_tensor(observation["state"], device=self.device, dtype=self.dtype)
        features = [self.state_encoder((state - self.state_mean) / self.state_std)]
        if self.image_encoder is not None:
            features.append(
                self.image_encoder(torch.as_tensor(observation["image"], device=self.device))
            )
        return torch.cat(features, dim=-1)

    def velocity(
        self, actions: torch.Tensor, time: float | torch.Tensor, context: torch.Tensor
    ) -> torch.Tensor:
        """``time`` is one flow time for the batch, or one per sample (training)."""
        tau = torch.as_tensor(time, device=actions.device, dtype=actions.dtype).expand(
            actions.shape[0]
        )
        inputs = torch.cat([actions.flatten(1), context, self._embed_time(tau)], dim=-1)
        output = self.velocity_net(inputs).view_as(actions)
        if self.config.network_output == "velocity":
            return output
        # The floor keeps training finite near tau = 1 (where 1 / (1 - tau) weights the error);
        # sampling with n <= 20 steps never evaluates tau above 0.95.
        remaining = (1.0 - tau).clamp_min(_MIN_REMAINING_TIME)[:, None, None]
        return (output - actions) / remaining

    def to_model_space(self, actions: torch.Tensor) -> torch.Tensor:
        return (actions - self.action_mean) / self.action_std

    def from_model_space(self, model_actions: torch.Tensor) -> torch.Tensor:
        return model_actions * self.action_std + self.action_mean

    def _embed_time(self, tau: torch.Tensor) -> torch.Tensor:
        half = self.config.time_embedding_dim // 2
        frequencies = torch.exp(
            torch.linspace(0.0, math.log(1000.0), half, device=tau.device, dtype=tau.dtype)
        )
        angles = tau[:, None] * frequencies[None, :]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)

    def save(self, path: str | pathlib.Path, joint_names: Sequence[str] | None = None) -> None:
        """``joint_names``: the robot joints of the state and action
        vectors, checked by the node.
        """
        torch.save(
            {
                "kind": "reference",
                "config": dataclasses.asdict(self.config),
                "state_dict": self.state_dict(),
                "joint_names": list(joint_names) if joint_names is not None else None,
            },
            path,
        )

    @classmethod
    def load(
        cls, path: str | pathlib.Path, device: str | torch.device = "cpu"
    ) -> ReferenceFlowPolicy:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
        # Checkpoints saved before velocity_network existed hold plain MLPs.
        policy = cls(ReferencePolicyConfig(**{"velocity_network": "mlp", **checkpoint["config"]}))
        policy.load_state_dict(checkpoint["state_dict"])
        return policy.to(device).eval().requires_grad_(False)


@dataclasses.dataclass(frozen=True)
class AuxiliaryTask:
    """An extra regression target for the observation encoding, used in training only.

    E.g. object positions that the simulator knows: predicting them from the context teaches
    the image encoder where to look far sooner than the flow loss alone. The head is trained
    with the policy and dropped afterwards; the policy never sees the targets as inputs.
    """

    head: nn.Module
    """Maps the policy's context (B, context_dim) to (B, K) predictions."""
    targets: np.ndarray
    """(N, K), one row per training sample; standardised before training."""
    weight: float = 1.0


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    steps: int = 3000
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0


def train_flow_policy(
    policy: ReferenceFlowPolicy,
    observations: Mapping[str, np.ndarray],
    action_chunks: np.ndarray,
    config: TrainingConfig = TrainingConfig(),
    log: Callable[[str], None] | None = None,
    auxiliary: AuxiliaryTask | None = None,
) -> list[float]:
    """Conditional flow matching on (observation, chunk) pairs; returns the loss curve.

    ``x_tau = tau a + (1 - tau) z`` with target velocity ``a - z`` (paper's convention). Flow
    times are drawn from a Beta(1.5, 1) distribution that, like pi0's, favours the noisy end.
    Sets normalisation statistics from the data and leaves the policy in eval mode with
    parameters frozen.
    """
    chunks = torch.as_tensor(action_chunks, dtype=torch.float32)
    if chunks.ndim != 3 or chunks.shape[1:] != (policy.prediction_horizon, policy.action_dim):
        raise ValueError(
            f"action_chunks must be (N, {policy.prediction_horizon}, {policy.action_dim}), "
            f"got {tuple(chunks.shape)}"
        )
    data = {k: torch.as_tensor(v) for k, v in observations.items()}
    if any(v.shape[0] != chunks.shape[0] for v in data.values()):
        raise ValueError("every observation array needs one row per action chunk")
    flat_actions = chunks.reshape(-1, policy.action_dim)
    with torch.no_grad():
        policy.action_mean.copy_(flat_actions.mean(0))
        policy.action_std.copy_(flat_actions.std(0).clamp_min(1e-3))
        policy.state_mean.copy_(data["state"].float().mean(0))
        policy.state_std.copy_(data["state"].float().std(0).clamp_min(1e-3))
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    parameters = list(policy.parameters())
    if auxiliary is not None:
        auxiliary_targets = torch.as_tensor(auxiliary.targets, dtype=torch.float32)
        auxiliary_targets = (
            auxiliary_targets - auxiliary_targets.mean(0)
        ) / auxiliary_targets.std(0).clamp_min(1e-6)
        parameters += list(auxiliary.head.parameters())
    optimizer = torch.optim.AdamW(
        parameters, lr=config.learning_rate, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.steps)
    time_distribution = torch.distributions.Beta(torch.tensor(1.5), torch.tensor(1.0))
    policy.train().requires_grad_(True)
    losses: list[float] = []
    started = time.perf_counter()
    for step in range(config.steps):
        index = torch.randint(0, chunks.shape[0], (config.batch_size,), generator=generator)
        target = policy.to_model_space(chunks[index])
        noise = torch.randn(target.shape, generator=generator)
        tau = 1.0 - time_distribution.sample(
            (config.batch_size,)
        )  # Beta favours tau near 0: noise
        noisy = tau[:, None, None] * target + (1.0 - tau[:, None, None]) * noise
        context = policy.encode({k: v[index] for k, v in data.items()})
        predicted = policy.velocity(noisy, tau, context)
        loss = torch.nn.functional.mse_loss(predicted, target - noise)
        if auxiliary is not None:
            loss = loss + auxiliary.weight * torch.nn.functional.mse_loss(
                auxiliary.head(context), auxiliary_targets[index]
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if log and (step % 500 == 0 or step == config.steps - 1):
            log(f"step {step:5d}  loss {loss.item():.4f}  ({time.perf_counter() - started:.0f} s)")
    policy.eval().requires_grad_(False)
    return losses
