"""What the latency benchmark measures: its settings and the policy they build.

The models and sizes of ``python -m rtc_ros.bench.latency``, validated when the settings are made;
the policy comes with one observation of its own inputs (or, with ``policy``, loaded through
rtc_ros.policies.registry and fed robot observations).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

MODELS = ("reference", "builtin-pi0", "lerobot-pi0", "lerobot-pi05", "lerobot-smolvla")
SIZES = ("full", "tiny")


@dataclasses.dataclass(frozen=True)
class LatencyConfig:
    model: str = "reference"
    size: str = "full"
    """``tiny``: builtin-pi0 and lerobot-smolvla at a size for tests on a CPU."""
    device: str = "cpu"
    dtype: str = "auto"
    """``auto``: bfloat16 on CUDA, float32 elsewhere."""
    chunks: int = 200
    warmup: int = 10
    batch_size: int = 1
    num_steps: int = 5
    beta: float = 5.0
    prediction_horizon: int = 50
    action_dim: int | None = None
    """M; None: 14 for the reference policy, 32 (pi0's max_action_dim) for the VLAs."""
    execution_horizon: int = 25
    """s: the previous chunk's unexecuted actions are its last H - s."""
    inference_delay: int = 6
    """d, for the soft mask W."""
    sampler: str = "compiled"
    """``compiled``: CompiledGuidedSampler (CUDA graphs on CUDA); ``core``: guided_sample,
    eager."""
    cuda_graph: bool = True
    policy: str | None = None
    """A registry spec (path or name); replaces ``model``."""
    policy_type: str = ""
    handover_reads: int = 20_000
    threads: int | None = None
    """torch's intra-op CPU threads; None: 1 on CPU (batch-1 chunks gain nothing from more, and
    idle worker threads spin against other load), torch's default with CUDA."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.size not in SIZES:
            raise ValueError(f"size must be one of {', '.join(SIZES)}, got {self.size!r}")
        if self.size == "tiny" and self.model not in (
            "reference",
            "builtin-pi0",
            "lerobot-smolvla",
        ):
            raise ValueError(
                f"size tiny exists for builtin-pi0 and lerobot-smolvla, not {self.model}"
            )
        if self.sampler not in ("compiled", "core"):
            raise ValueError(f"sampler must be compiled or core, got {self.sampler!r}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(
                f"dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}"
            )
        if self.chunks < 1 or self.warmup < 1:
            raise ValueError(
                f"chunks and warmup must be >= 1, got {self.chunks} and {self.warmup}"
            )
        if not 0 < self.execution_horizon < self.prediction_horizon:
            raise ValueError(
                f"execution_horizon must be in (0, {self.prediction_horizon}), "
                f"got {self.execution_horizon}"
            )
        if not 0 <= self.inference_delay <= self.prediction_horizon - self.execution_horizon:
            raise ValueError(f"inference_delay must be in [0, H - s], got {self.inference_delay}")
        if self.action_dim is None:
            object.__setattr__(self, "action_dim", 14 if self.model == "reference" else 32)
        if self.threads is None and not self.device.startswith("cuda"):
            object.__setattr__(self, "threads", 1)
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")

    @property
    def torch_dtype(self) -> torch.dtype:
        if self.dtype == "auto":
            return torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        return getattr(torch, self.dtype)


@dataclasses.dataclass
class BuiltPolicy:
    policy: Any
    observation: dict
    description: dict


def build_policy(config: LatencyConfig) -> BuiltPolicy:
    """The policy under test and one observation for it, on ``config.device``."""
    device, dtype = torch.device(config.device), config.torch_dtype
    generator = torch.Generator().manual_seed(config.seed)
    horizon, action_dim = config.prediction_horizon, config.action_dim
    if config.policy is not None:
        return _load_through_registry(config, dtype, generator)
    if config.model == "reference":
        from rtc_ros.policies.reference import ReferenceFlowPolicy, ReferencePolicyConfig

        torch.manual_seed(config.seed)
        policy = ReferenceFlowPolicy(
            ReferencePolicyConfig(horizon, action_dim, state_dim=action_dim)
        )
        policy = policy.to(device).eval().requires_grad_(False)
        policy = policy.to(dtype)
        observation = {
            "state": torch.randn(
                (config.batch_size, policy.config.state_dim), generator=generator
            ).to(device=device, dtype=dtype)
        }
        parameters = {"total": sum(p.numel() for p in policy.parameters())}
        return BuiltPolicy(policy, observation, {"parameters": parameters})
    if config.model == "builtin-pi0":
        from rtc_ros.policies.action_expert import ActionExpertPolicy, pi0_config, tiny_config

        make = tiny_config if config.size == "tiny" else pi0_config
        policy = ActionExpertPolicy(
            make(action_dim, horizon), device=device, dtype=dtype, seed=config.seed
        )
        return BuiltPolicy(
            policy,
            policy.example_observation(config.batch_size, generator),
            {
                "parameters": policy.parameter_counts(),
                "prefix_tokens": policy.config.prefix_tokens,
            },
        )
    from rtc_ros.policies.lerobot.model import build_lerobot_policy

    policy = build_lerobot_policy(
        config.model.removeprefix("lerobot-"),
        device=device,
        dtype=dtype,
        prediction_horizon=horizon,
        action_dim=action_dim,
        tiny=config.size == "tiny",
    )
    observation = policy.example_observation(config.batch_size, generator)
    with torch.no_grad():
        prefix_tokens = policy.prefix_tokens(policy.encode(observation))
    return BuiltPolicy(
        policy,
        observation,
        {
            "parameters": policy.parameter_counts(),
            "prefix_tokens": prefix_tokens,
            **policy.versions(),
        },
    )


def _load_through_registry(
    config: LatencyConfig, dtype: torch.dtype, generator: torch.Generator
) -> BuiltPolicy:
    from rtc_ros.policies.registry import example_observation, load_policy

    loaded = load_policy(config.policy, config.device, config.policy_type, dtype=dtype)
    observation = example_observation(loaded, config.batch_size, generator=generator)
    model = getattr(loaded.policy, "flow", loaded.policy)
    description: dict[str, Any] = {
        "policy": loaded.label,
        "kind": loaded.kind.value,
        "parameters": {"total": sum(p.numel() for p in _parameters(model))},
    }
    if hasattr(model, "parameter_counts"):
        description["parameters"] = model.parameter_counts()
    if hasattr(model, "versions"):
        description.update(model.versions())
    return BuiltPolicy(loaded.policy, observation, description)


def _parameters(model) -> list[torch.Tensor]:
    module = model if isinstance(model, torch.nn.Module) else getattr(model, "model", None)
    return list(module.parameters()) if isinstance(module, torch.nn.Module) else []
