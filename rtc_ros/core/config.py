"""What selects and parameterises a chunking method, free of torch.

The controller (:mod:`rtc_ros.core.scheduler`) needs only the method and the executor spec made
from it, so this module, like the scheduler and the handover, imports numpy at most: a control
process built from it never loads torch.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import TypeVar

from rtc_ros.core.scheduler import ExecutorSpec, TemporalEnsembling

E = TypeVar("E", bound=enum.Enum)


def parse_enum(kind: type[E], value: E | str, name: str) -> E:
    """``value`` as a member of ``kind``; the error names ``name`` and the valid values."""
    try:
        return kind(value)
    except ValueError:
        names = ", ".join(str(m.value) for m in kind)
        raise ValueError(f"{name} must be one of {names}, got {value!r}") from None


class Method(enum.Enum):
    SYNC = "sync"
    """Execute s actions, hold while the next chunk is inferred, resume at its first action."""
    NAIVE_ASYNC = "naive_async"
    """Infer while executing, no guidance, switch as soon as the chunk is ready."""
    TEMPORAL_ENSEMBLING = "temporal_ensembling"
    """ACT: execute a weighted average of every prediction made for the current tick."""
    BID = "bid"
    """Bidirectional decoding: sample N chunks, keep the most coherent and most typical one."""
    RTC_HARD = "rtc_hard"
    """RTC guided only on the frozen prefix (W = 1 for i < d, else 0)."""
    RTC_SOFT = "rtc_soft"
    """RTC with the paper's exponentially decaying soft mask (Eq. 5)."""

    @property
    def guided(self) -> bool:
        """True for the RTC methods, which guide each chunk toward the previous one."""
        return self in (Method.RTC_HARD, Method.RTC_SOFT)


class GuidanceMode(enum.Enum):
    """How the guidance gradient ``g = e^T dA1_hat/dA`` is computed (step 4)."""

    VJP = "vjp"
    """Exact: one backward pass through the velocity network per step."""
    STOP_GRADIENT = "stop_gradient"
    """v treated as constant, so ``g = e``: no backward pass, no autograd graph."""


@dataclasses.dataclass(frozen=True)
class BidConfig:
    """Bidirectional decoding (Liu et al. 2024); the paper used N=32, K=3."""

    num_samples: int = 32
    mode_size: int = 3

    def __post_init__(self) -> None:
        if self.num_samples < 2:
            raise ValueError(f"BID num_samples must be >= 2, got {self.num_samples}")
        if not 1 <= self.mode_size < self.num_samples:
            raise ValueError(f"BID mode_size must be in [1, num_samples), got {self.mode_size}")


@dataclasses.dataclass(frozen=True)
class ChunkingConfig:
    """Everything that selects and parameterises one method. Strings are accepted for enums."""

    method: Method = Method.RTC_SOFT
    num_steps: int = 5
    """n, denoising steps."""
    beta: float = 5.0
    """Guidance-weight clip."""
    guidance: GuidanceMode = GuidanceMode.VJP
    bid: BidConfig = BidConfig()
    ensembling: TemporalEnsembling = TemporalEnsembling()
    compiled: bool = False
    """Sample with :class:`~rtc_ros.core.compiled.CompiledGuidedSampler`: preallocated buffers and,
    on CUDA, one CUDA graph per mode. Same results as ``guided_sample``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", parse_enum(Method, self.method, "method"))
        object.__setattr__(self, "guidance", parse_enum(GuidanceMode, self.guidance, "guidance"))
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")

    @property
    def label(self) -> str:
        """e.g. ``rtc_soft/vjp``; the guidance mode only where it matters."""
        if self.method.guided:
            return f"{self.method.value}/{self.guidance.value}"
        return self.method.value

    def executor_spec(self, min_execution_horizon: int) -> ExecutorSpec:
        """The controller-side behaviour of the method (picklable, for a control process)."""
        if self.method is Method.SYNC:
            return ExecutorSpec(pause_after=min_execution_horizon)
        if self.method is Method.TEMPORAL_ENSEMBLING:
            return ExecutorSpec(ensembling=self.ensembling)
        return ExecutorSpec()


@dataclasses.dataclass(frozen=True)
class InferenceSettings:
    """What the inference side may change while running, applied between two chunks."""

    chunking: ChunkingConfig
    min_execution_horizon: int
    """s_min: actions of a chunk executed before the next inference starts."""
    emulated_latency_s: float = 0.0
    """Every inference is padded to at least this wall time, so that a machine that infers in
    milliseconds runs the whole pipeline at a large model's delay; 0: off."""

    def __post_init__(self) -> None:
        if not self.emulated_latency_s >= 0:
            raise ValueError(f"emulated_latency_s must be >= 0, got {self.emulated_latency_s}")
