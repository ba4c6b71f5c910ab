"""Prefix weights W over a chunk: which actions guidance pulls toward the previous chunk."""

from __future__ import annotations

import enum
import math

import torch

from rtc_ros.core.config import parse_enum


class MaskSchedule(enum.Enum):
    """How W decays over the overlap ``d <= i < H - s`` (the paper's Eq. 5 is EXP)."""

    EXP = "exp"
    LINEAR = "linear"
    HARD = "hard"
    ONES = "ones"


def prefix_weights(
    prediction_horizon: int,
    execution_horizon: int,
    inference_delay: int,
    schedule: MaskSchedule | str = MaskSchedule.EXP,
) -> torch.Tensor:
    """W of length H (float32): 1 on the frozen prefix, decaying over the overlap, 0 after.

    Eq. 5: ``W_i = 1`` for ``i < d``; ``c_i (e^c_i - 1) / (e - 1)`` with
    ``c_i = (H - s - i) / (H - s - d + 1)`` for ``d <= i < H - s``; ``0`` for ``i >= H - s``.
    """
    schedule = parse_enum(MaskSchedule, schedule, "schedule")
    horizon, s, d = prediction_horizon, execution_horizon, inference_delay
    if horizon < 1:
        raise ValueError(f"prediction_horizon must be >= 1, got {horizon}")
    if not 0 <= s < horizon:
        raise ValueError(
            f"execution_horizon must be in [0, prediction_horizon={horizon}), got {s}"
        )
    if not 0 <= d <= horizon - s:
        raise ValueError(
            "inference_delay must be in [0, prediction_horizon - execution_horizon = "
            f"{horizon - s}], got {d}"
        )
    i = torch.arange(horizon, dtype=torch.float64)
    overlap_end = horizon - s
    c = (overlap_end - i) / (overlap_end - d + 1)
    if schedule is MaskSchedule.EXP:
        decay = c * torch.expm1(c) / (math.e - 1.0)
    elif schedule is MaskSchedule.LINEAR:
        decay = c
    elif schedule is MaskSchedule.HARD:
        decay = torch.zeros_like(c)
    else:
        decay = torch.ones_like(c)
    weights = torch.where(i < d, torch.ones_like(c), decay)
    weights = torch.where(i >= overlap_end, torch.zeros_like(c), weights)
    return weights.to(torch.float32)
