"""The Real-Time Chunking algorithm, free of ROS: guidance, masks, scheduling, handover, baselines.

The functional API (paper's convention, tau = 0 noise -> 1 actions) is stable:
:func:`prefix_weights`, :func:`guidance_weight`, :func:`guided_sample`.

The real-time part (:mod:`~rtc_ros.core.scheduler`, :mod:`~rtc_ros.core.handover`,
:mod:`~rtc_ros.core.simulated_time`, :mod:`~rtc_ros.core.config`) needs numpy only. The
sampling modules need torch, so their names are imported on first use: a controller that
imports this package, or one of its real-time modules, never loads torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rtc_ros.core.config import (
    BidConfig,
    ChunkingConfig,
    GuidanceMode,
    InferenceSettings,
    Method,
    parse_enum,
)
from rtc_ros.core.handover import (
    AtomicSlot,
    SharedMemorySlot,
    shared_chunk_slot,
    shared_state_slot,
)
from rtc_ros.core.scheduler import (
    INITIAL_CONTROLLER_STATE,
    Chunk,
    ChunkExecutor,
    ControllerState,
    DelayEstimator,
    ExecutorSpec,
    InferencePlanner,
    InferenceRequest,
    TemporalEnsembling,
    TickResult,
    new_run_id,
)

if TYPE_CHECKING:
    from rtc_ros.core.guidance import guidance_weight, guided_sample, pad_to_horizon
    from rtc_ros.core.masks import MaskSchedule, prefix_weights
    from rtc_ros.core.methods import ChunkGenerator
    from rtc_ros.core.policy import FlowPolicy, TimeConvention, VelocityField, paper_velocity

_TORCH_NAMES = {
    "guidance_weight": "rtc_ros.core.guidance",
    "guided_sample": "rtc_ros.core.guidance",
    "pad_to_horizon": "rtc_ros.core.guidance",
    "MaskSchedule": "rtc_ros.core.masks",
    "prefix_weights": "rtc_ros.core.masks",
    "ChunkGenerator": "rtc_ros.core.methods",
    "FlowPolicy": "rtc_ros.core.policy",
    "TimeConvention": "rtc_ros.core.policy",
    "VelocityField": "rtc_ros.core.policy",
    "paper_velocity": "rtc_ros.core.policy",
}


def __getattr__(name: str) -> Any:
    if name in _TORCH_NAMES:
        return getattr(importlib.import_module(_TORCH_NAMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AtomicSlot",
    "BidConfig",
    "Chunk",
    "ChunkExecutor",
    "ChunkGenerator",
    "ChunkingConfig",
    "ControllerState",
    "DelayEstimator",
    "ExecutorSpec",
    "FlowPolicy",
    "GuidanceMode",
    "INITIAL_CONTROLLER_STATE",
    "InferencePlanner",
    "InferenceSettings",
    "InferenceRequest",
    "MaskSchedule",
    "Method",
    "SharedMemorySlot",
    "TemporalEnsembling",
    "TickResult",
    "TimeConvention",
    "VelocityField",
    "guidance_weight",
    "guided_sample",
    "pad_to_horizon",
    "paper_velocity",
    "parse_enum",
    "new_run_id",
    "prefix_weights",
    "shared_chunk_slot",
    "shared_state_slot",
]
