"""A built-in flow policy with pi0's architecture, for latency benchmarks without LeRobot.

pi0 (Black et al. 2024) is a vision-language model (a SigLIP image encoder and a Gemma 2B
language model) that encodes the observation into a prefix of about 800 tokens, and an
action expert (a Gemma 300M transformer) that attends, layer by layer, to the prefix's keys
and values while it denoises a chunk. This module builds the same shapes with random weights:

* ``encode``: images through the vision tower, language tokens through an embedding, both
  through the prefix transformer once per chunk; the result is the per-layer KV cache of the
  prefix (:class:`PrefixCache`), as in pi0's ``sample_actions``;
* ``velocity``: one pass of the action expert over the state token and the H action tokens,
  attending to [prefix KV ; own KV]; pi0's time convention (t = 1 noise -> 0 actions).

It is a stand-in for timing, not a trained policy: the language embedding has a small
vocabulary (a lookup costs the same), suffix tokens attend to each other bidirectionally (pi0
masks the state token from the actions; the cost is the same), and the last prefix layer's
attention output and MLP are skipped (the expert reads only that layer's keys and values).
``velocity`` is CUDA-graph safe: the flow time enters only as a Python float multiplier.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from rtc_ros.core.policy import TimeConvention


@dataclasses.dataclass(frozen=True)
class TransformerShape:
    """Sizes of one Gemma-style transformer (openpi's ``gemma.Config``)."""

    width: int
    depth: int
    mlp_dim: int
    num_heads: int
    num_kv_heads: int
    head_dim: int

    def __post_init__(self) -> None:
        for name in ("width", "depth", "mlp_dim", "num_heads", "num_kv_heads", "head_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads "
                f"({self.num_kv_heads})"
            )


@dataclasses.dataclass(frozen=True)
class VisionShape:
    """Sizes of a ViT image encoder (SigLIP)."""

    width: int
    depth: int
    mlp_dim: int
    num_heads: int
    patch_size: int
    image_size: int

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size ({self.image_size}) must be a multiple of patch_size "
                f"({self.patch_size})"
            )
        if self.width % self.num_heads:
            raise ValueError(
                f"width ({self.width}) must be a multiple of num_heads ({self.num_heads})"
            )

    @property
    def tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2


GEMMA_300M = TransformerShape(
    width=1024, depth=18, mlp_dim=4096, num_heads=8, num_kv_heads=1, head_dim=256
)
GEMMA_2B = TransformerShape(
    width=2048, depth=18, mlp_dim=16_384, num_heads=8, num_kv_heads=1, head_dim=256
)
SIGLIP_SO400M = VisionShape(
    width=1152, depth=27, mlp_dim=4304, num_heads=16, patch_size=14, image_size=224
)


@dataclasses.dataclass(frozen=True)
class ActionExpertConfig:
    """pi0 by default: 3 camera images (768 tokens) + 48 language tokens = 816 prefix tokens."""

    prediction_horizon: int = 50
    action_dim: int = 32
    state_dim: int = 32
    expert: TransformerShape = GEMMA_300M
    prefix: TransformerShape = GEMMA_2B
    vision: VisionShape = SIGLIP_SO400M
    num_images: int = 3
    language_tokens: int = 48
    vocab_size: int = 1024
    time_min_period: float = 4e-3
    time_max_period: float = 4.0

    def __post_init__(self) -> None:
        for name in ("prediction_horizon", "action_dim", "state_dim", "num_images", "vocab_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.language_tokens < 0:
            raise ValueError(f"language_tokens must be >= 0, got {self.language_tokens}")
        shapes = (
            ("expert", TransformerShape),
            ("prefix", TransformerShape),
            ("vision", VisionShape),
        )
        for name, shape_type in shapes:
            value = getattr(self, name)
            if isinstance(value, Mapping):
                object.__setattr__(self, name, shape_type(**value))
        if self.expert.depth != self.prefix.depth:
            raise ValueError(
                f"the expert attends to the prefix layer by layer: expert.depth "
                f"({self.expert.depth}) must equal prefix.depth ({self.prefix.depth})"
            )
        expert, prefix = self.expert, self.prefix
        if (expert.num_kv_heads, expert.head_dim) != (prefix.num_kv_heads, prefix.head_dim):
            raise ValueError(
                "expert and prefix must have the same num_kv_heads and head_dim "
                "(they share attention)"
            )
        if self.expert.width % 2:
            raise ValueError(
                f"expert.width must be even (sine-cosine time embedding), got {self.expert.width}"
            )

    @property
    def prefix_tokens(self) -> int:
        return self.num_images * self.vision.tokens + self.language_tokens


def pi0_config(action_dim: int = 32, prediction_horizon: int = 50) -> ActionExpertConfig:
    """pi0's sizes: SigLIP So400m/14 at 224 px, Gemma 2B prefix, Gemma
    300M expert (~2.7B parameters).
    """
    return ActionExpertConfig(
        prediction_horizon=prediction_horizon, action_dim=action_dim, state_dim=action_dim
    )


def tiny_config(action_dim: int = 14, prediction_horizon: int = 50) -> ActionExpertConfig:
    """The same architecture at a size that runs in milliseconds on a CPU (tests, smoke runs)."""
    return ActionExpertConfig(
        prediction_horizon=prediction_horizon,
        action_dim=action_dim,
        state_dim=action_dim,
        expert=TransformerShape(
            width=32, depth=2, mlp_dim=64, num_heads=4, num_kv_heads=1, head_dim=8
        ),
        prefix=TransformerShape(
            width=48, depth=2, mlp_dim=96, num_heads=4, num_kv_heads=1, head_dim=8
        ),
        vision=VisionShape(
            width=32, depth=1, mlp_dim=64, num_heads=2, patch_size=8, image_size=16
        ),
        num_images=2,
        language_tokens=8,
        vocab_size=64,
    )


@dataclasses.dataclass(frozen=True)
class PrefixCache:
    """What ``encode`` computes once per chunk and ``velocity`` reads n times."""

    keys: torch.Tensor
    """(depth, B, num_kv_heads, prefix_tokens, head_dim), rotary embedding applied."""
    values: torch.Tensor
    """(depth, B, num_kv_heads, prefix_tokens, head_dim)."""
    state_token: torch.Tensor
    """(B, 1, expert.width): the projected robot state, the first suffix token."""


class _RMSNorm(nn.Module):
    """Gemma's RMSNorm: ``x / rms(x) * (1 + weight)``, computed in float32."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * (1.0 + self.weight.float())).to(x.dtype)


class _GemmaLayer(nn.Module):
    def __init__(self, shape: TransformerShape) -> None:
        super().__init__()
        self.shape = shape
        self.input_norm = _RMSNorm(shape.width)
        self.q_proj = nn.Linear(shape.width, shape.num_heads * shape.head_dim, bias=False)
        self.k_proj = nn.Linear(shape.width, shape.num_kv_heads * shape.head_dim, bias=False)
        self.v_proj = nn.Linear(shape.width, shape.num_kv_heads * shape.head_dim, bias=False)
        self.o_proj = nn.Linear(shape.num_heads * shape.head_dim, shape.width, bias=False)
        self.post_norm = _RMSNorm(shape.width)
        self.gate_proj = nn.Linear(shape.width, shape.mlp_dim, bias=False)
        self.up_proj = nn.Linear(shape.width, shape.mlp_dim, bias=False)
        self.down_proj = nn.Linear(shape.mlp_dim, shape.width, bias=False)

    def qkv(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """Queries (B, S, heads, D) and keys, values (B, kv_heads,
        S, D), rotary embedding applied.
        """
        batch, tokens, _ = x.shape
        h = self.input_norm(x)
        q = self.q_proj(h).view(batch, tokens, self.shape.num_heads, self.shape.head_dim)
        k = self.k_proj(h).view(batch, tokens, self.shape.num_kv_heads, self.shape.head_dim)
        v = self.v_proj(h).view(batch, tokens, self.shape.num_kv_heads, self.shape.head_dim)
        q = _rotate(q, cos[:, None], sin[:, None])
        k = _rotate(k, cos[:, None], sin[:, None])
        return q, k.transpose(1, 2), v.transpose(1, 2)

    def finish(
        self, x: torch.Tensor, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
    ):
        """Attention output, residual, MLP, residual."""
        x = x + self.o_proj(_attend(queries, keys, values))
        h = self.post_norm(x)
        return x + self.down_proj(F.gelu(self.gate_proj(h), approximate="tanh") * self.up_proj(h))


class _VisionLayer(nn.Module):
    def __init__(self, shape: VisionShape) -> None:
        super().__init__()
        self.num_heads = shape.num_heads
        self.norm1 = nn.LayerNorm(shape.width)
        self.qkv = nn.Linear(shape.width, 3 * shape.width)
        self.out = nn.Linear(shape.width, shape.width)
        self.norm2 = nn.LayerNorm(shape.width)
        self.fc1 = nn.Linear(shape.width, shape.mlp_dim)
        self.fc2 = nn.Linear(shape.mlp_dim, shape.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        q, k, v = (
            self.qkv(self.norm1(x))
            .view(batch, tokens, 3, self.num_heads, -1)
            .permute(2, 0, 3, 1, 4)
        )
        attended = (
            F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, tokens, width)
        )
        x = x + self.out(attended)
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x)), approximate="tanh"))


class _VisionTower(nn.Module):
    def __init__(self, shape: VisionShape, out_dim: int) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, shape.width, shape.patch_size, stride=shape.patch_size)
        self.position = nn.Parameter(torch.randn(shape.tokens, shape.width) * 0.02)
        self.layers = nn.ModuleList(_VisionLayer(shape) for _ in range(shape.depth))
        self.norm = nn.LayerNorm(shape.width)
        self.projector = nn.Linear(shape.width, out_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch(images).flatten(2).transpose(1, 2) + self.position
        for layer in self.layers:
            x = layer(x)
        return self.projector(self.norm(x))


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding (Gemma's rotate-half form)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def _attend(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Unmasked grouped-query attention: queries (B, S, heads, D), keys and values (B, kv, T, D).

    Returns (B, S, heads * D).

    The query heads of one KV head are folded into the query length, so multi-query attention
    (pi0's one KV head) is one single-head attention that any SDPA kernel runs.
    """
    batch, tokens, heads, dim = queries.shape
    kv_heads = keys.shape[1]
    group = heads // kv_heads
    q = (
        queries.view(batch, tokens, kv_heads, group, dim)
        .permute(0, 2, 3, 1, 4)
        .reshape(batch, kv_heads, group * tokens, dim)
    )
    out = F.scaled_dot_product_attention(q, keys, values)
    out = out.view(batch, kv_heads, group, tokens, dim).permute(0, 3, 1, 2, 4)
    return out.reshape(batch, tokens, heads * dim)


def _rope_tables(
    positions: int, head_dim: int, base: float = 10_000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    inverse = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.arange(positions, dtype=torch.float64)[:, None] * inverse[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().float(), angles.sin().float()


class ActionExpertPolicy(nn.Module):
    """Implements :class:`~rtc_ros.core.policy.FlowPolicy` with pi0's shapes and random weights.

    Observations: ``images`` (B, num_images, 3, S, S) float in [-1, 1], ``tokens`` (B,
    language_tokens)
    int64, ``state`` (B, state_dim); :meth:`example_observation` makes one.
    """

    time_convention = TimeConvention.NOISE_AT_1

    def __init__(
        self,
        config: ActionExpertConfig,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.config = config
        self.prediction_horizon = config.prediction_horizon
        self.action_dim = config.action_dim
        expert, prefix = config.expert, config.prefix
        device = torch.device(device)
        cuda_devices = (
            [device.index if device.index is not None else torch.cuda.current_device()]
            if device.type == "cuda"
            else []
        )
        with torch.random.fork_rng(devices=cuda_devices), torch.device(device):
            torch.manual_seed(seed)
            self.vision = _VisionTower(config.vision, prefix.width)
            self.embedding = nn.Embedding(config.vocab_size, prefix.width)
            self.prefix_layers = nn.ModuleList(_GemmaLayer(prefix) for _ in range(prefix.depth))
            self.expert_layers = nn.ModuleList(_GemmaLayer(expert) for _ in range(expert.depth))
            self.expert_norm = _RMSNorm(expert.width)
            self.state_proj = nn.Linear(config.state_dim, expert.width)
            self.action_in_proj = nn.Linear(config.action_dim, expert.width)
            self.action_time_mlp_in = nn.Linear(2 * expert.width, expert.width)
            self.action_time_mlp_out = nn.Linear(expert.width, expert.width)
            self.action_out_proj = nn.Linear(expert.width, config.action_dim)
            suffix_tokens = 1 + config.prediction_horizon
            cos, sin = _rope_tables(config.prefix_tokens + suffix_tokens, prefix.head_dim)
            fraction = torch.linspace(0.0, 1.0, expert.width // 2, dtype=torch.float64)
            period = (
                config.time_min_period
                * (config.time_max_period / config.time_min_period) ** fraction
            )
            self.register_buffer("action_mean", torch.zeros(config.action_dim))
            self.register_buffer("action_std", torch.ones(config.action_dim))
        self.to(dtype=dtype).eval().requires_grad_(False)
        # Position and time tables stay float32 whatever the dtype; they are cast where used.
        self.register_buffer("rope_cos", cos.to(device), persistent=False)
        self.register_buffer("rope_sin", sin.to(device), persistent=False)
        self.register_buffer(
            "time_frequencies", (2.0 * math.pi / period).float().to(device), persistent=False
        )

    @property
    def device(self) -> torch.device:
        return self.action_mean.device

    @property
    def dtype(self) -> torch.dtype:
        return self.action_mean.dtype

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per part, e.g. ``{"expert": 3.1e8, ...}``."""
        expert_parts = [
            self.expert_layers,
            self.expert_norm,
            self.state_proj,
            self.action_in_proj,
            self.action_time_mlp_in,
            self.action_time_mlp_out,
            self.action_out_proj,
        ]
        count = lambda modules: sum(p.numel() for m in modules for p in m.parameters())  # noqa: E731
        return {
            "vision": count([self.vision]),
            "prefix": count([self.embedding, self.prefix_layers]),
            "expert": count(expert_parts),
        }

    def example_observation(
        self, batch_size: int = 1, generator: torch.Generator | None = None
    ) -> dict:
        """A random observation of the configured shapes, on the policy's device."""
        config = self.config
        size = config.vision.image_size
        images = (
            torch.rand((batch_size, config.num_images, 3, size, size), generator=generator) * 2.0
            - 1.0
        )
        tokens = torch.randint(
            0, config.vocab_size, (batch_size, config.language_tokens), generator=generator
        )
        state = torch.randn((batch_size, config.state_dim), generator=generator)
        return {
            "images": images.to(self.device),
            "tokens": tokens.to(self.device),
            "state": state.to(self.device),
        }

    def encode(self, observation: Mapping[str, Any]) -> PrefixCache:
        """Vision tower + prefix transformer once per chunk -> the prefix KV cache."""
        images = torch.as_tensor(observation["images"], device=self.device).to(self.dtype)
        tokens = torch.as_tensor(observation["tokens"], device=self.device)
        state = torch.as_tensor(observation["state"], device=self.device).to(self.dtype)
        batch = images.shape[0]
        image_tokens = self.vision(images.flatten(0, 1)).reshape(
            batch, -1, self.config.prefix.width
        )
        language = self.embedding(tokens) * math.sqrt(self.config.prefix.width)
        x = torch.cat([image_tokens, language], dim=1)
        count = x.shape[1]
        if count != self.config.prefix_tokens:
            raise ValueError(
                f"observation makes {count} prefix tokens, "
                f"the config expects {self.config.prefix_tokens}"
            )
        cos, sin = self.rope_cos[:count].to(self.dtype), self.rope_sin[:count].to(self.dtype)
        keys, values = [], []
        last = len(self.prefix_layers) - 1
        for index, layer in enumerate(self.prefix_layers):
            q, k, v = layer.qkv(x, cos, sin)
            keys.append(k)
            values.append(v)
            if index < last:  # the expert reads only the last layer's keys and values
                x = layer.finish(x, q, k, v)
        state_token = self.state_proj(state)[:, None, :]
        return PrefixCache(torch.stack(keys), torch.stack(values), state_token)

    def velocity(self, actions: torch.Tensor, time: float, context: PrefixCache) -> torch.Tensor:
        """pi0's u(x_t, o, t) for a (B, H, M) sample at one flow time t (1 noise -> 0 actions)."""
        batch = actions.shape[0]
        x = actions.to(self.dtype)
        angles = (
            self.time_frequencies * time
        )  # float32; a Python float time is baked into a captured graph
        time_embedding = torch.cat([angles.sin(), angles.cos()]).to(self.dtype)
        action_tokens = self.action_in_proj(x)
        fused = torch.cat([action_tokens, time_embedding.expand_as(action_tokens)], dim=-1)
        action_tokens = self.action_time_mlp_out(F.silu(self.action_time_mlp_in(fused)))
        h = torch.cat([context.state_token.expand(batch, -1, -1), action_tokens], dim=1)
        start = self.config.prefix_tokens
        cos = self.rope_cos[start : start + h.shape[1]].to(self.dtype)
        sin = self.rope_sin[start : start + h.shape[1]].to(self.dtype)
        for index, layer in enumerate(self.expert_layers):
            q, k, v = layer.qkv(h, cos, sin)
            keys = torch.cat([context.keys[index], k], dim=2)
            values = torch.cat([context.values[index], v], dim=2)
            h = layer.finish(h, q, keys, values)
        out = self.action_out_proj(self.expert_norm(h[:, 1:]))
        return out.to(actions.dtype)

    def to_model_space(self, actions: torch.Tensor) -> torch.Tensor:
        return (actions - self.action_mean) / self.action_std

    def from_model_space(self, model_actions: torch.Tensor) -> torch.Tensor:
        return model_actions * self.action_std + self.action_mean

    def save(self, path: str | pathlib.Path, joint_names: Sequence[str] | None = None) -> None:
        """``joint_names``: the robot joints of the state and action
        vectors, checked by the node.
        """
        torch.save(
            {
                "kind": "builtin-pi0",
                "config": dataclasses.asdict(self.config),
                "state_dict": self.state_dict(),
                "joint_names": list(joint_names) if joint_names is not None else None,
            },
            path,
        )

    @classmethod
    def load(
        cls,
        path: str | pathlib.Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> ActionExpertPolicy:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        policy = cls(ActionExpertConfig(**checkpoint["config"]), device=device, dtype=dtype)
        policy.load_state_dict(checkpoint["state_dict"])
        return policy


__all__ = [
    "ActionExpertConfig",
    "ActionExpertPolicy",
    "GEMMA_2B",
    "GEMMA_300M",
    "PrefixCache",
    "SIGLIP_SO400M",
    "TransformerShape",
    "VisionShape",
    "pi0_config",
    "tiny_config",
]
