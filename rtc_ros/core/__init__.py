"""The Real-Time Chunking algorithm, free of ROS: guidance, masks, scheduling, handover, baselines.

The functional API (paper's convention, tau = 0 noise -> 1 actions) is stable:
:func:`prefix_weights`, :func:`guidance_weight`, :func:`guided_sample`.
"""
from rtc_ros.core.guidance import GuidanceMode, guidance_weight, guided_sample, pad_to_horizon
from rtc_ros.core.handover import AtomicSlot, SharedMemorySlot, shared_chunk_slot, shared_state_slot
from rtc_ros.core.masks import MaskSchedule, prefix_weights
from rtc_ros.core.methods import BidConfig, ChunkGenerator, ChunkingConfig, Method, make_executor
from rtc_ros.core.policy import FlowPolicy, TimeConvention, VelocityField, paper_velocity
from rtc_ros.core.scheduler import (
    INITIAL_CONTROLLER_STATE,
    Chunk,
    ChunkExecutor,
    ControllerState,
    DelayEstimator,
    InferencePlanner,
    InferenceRequest,
    TemporalEnsembling,
    TickResult,
)

__all__ = [
    "AtomicSlot", "BidConfig", "Chunk", "ChunkExecutor", "ChunkGenerator", "ChunkingConfig",
    "ControllerState", "DelayEstimator", "FlowPolicy", "GuidanceMode", "INITIAL_CONTROLLER_STATE",
    "InferencePlanner", "InferenceRequest", "MaskSchedule", "Method", "SharedMemorySlot",
    "TemporalEnsembling", "TickResult", "TimeConvention", "VelocityField", "guidance_weight",
    "guided_sample", "make_executor", "pad_to_horizon", "paper_velocity", "prefix_weights",
    "shared_chunk_slot", "shared_state_slot",
]
