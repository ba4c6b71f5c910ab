"""Resolve the ``policy`` parameter to a FlowPolicy on a device."""
from __future__ import annotations

import pathlib

import torch

from rtc_ros.core.policy import FlowPolicy
from rtc_ros.policies.reference import ReferenceFlowPolicy

CHECKPOINTS = pathlib.Path(__file__).parent / "checkpoints"
BIMANUAL_DEMO_CHECKPOINT = CHECKPOINTS / "bimanual_demo.pt"
"""Made by ``python -m rtc_ros.sim.train_demo_policy`` from the simulator's scripted expert."""


def load_policy(spec: str, device: str) -> FlowPolicy:
    """``""``: the shipped bimanual demo policy; otherwise a reference-policy checkpoint path."""
    path = BIMANUAL_DEMO_CHECKPOINT if spec == "" else pathlib.Path(spec).expanduser()
    if not path.is_file():
        hint = " (make it with: python -m rtc_ros.sim.train_demo_policy)" if spec == "" else ""
        raise ValueError(f"policy checkpoint {str(path)!r} does not exist{hint}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but torch sees no CUDA device; use device:=cpu")
    return ReferenceFlowPolicy.load(path, device=device)
