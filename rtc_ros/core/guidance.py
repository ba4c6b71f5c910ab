"""Guided flow sampling: the paper's GUIDEDINFERENCE (PiGDM inpainting, clipped weight).

Everything here is in the paper's convention: tau runs from 0 (noise) to 1 (actions) and
``A <- A + (v + w g) / n``. Policies in pi0's 1 -> 0 convention are converted once by
:func:`rtc_ros.core.policy.paper_velocity`.

The loop has no data-dependent Python branch and no host synchronisation: the flow times
and guidance weights are plain floats known before sampling starts, so the same code can
be captured in a CUDA graph.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rtc_ros.core.config import GuidanceMode, parse_enum
from rtc_ros.core.policy import VelocityField


def guidance_weight(tau: float, beta: float) -> float:
    """Clipped PiGDM guidance weight (step 6): ``min(beta, (tau^2 + (1-tau)^2) / (tau (1-tau)))``.

    The unclipped weight ``(1 - tau) / (tau r^2)`` with ``r^2 = (1-tau)^2 / (tau^2 + (1-tau)^2)``
    is infinite at tau = 0 and tau = 1, where the weight is beta.
    """
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must be in [0, 1], got {tau}")
    if tau == 0.0 or tau == 1.0:
        return float(beta)
    return float(min(beta, (tau * tau + (1.0 - tau) ** 2) / (tau * (1.0 - tau))))


def _check_inputs(noise, previous_chunk, weights, num_steps) -> None:
    if noise.ndim != 3:
        raise ValueError(f"noise must be (B, H, M), got shape {tuple(noise.shape)}")
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if previous_chunk is None:
        return
    if previous_chunk.shape != noise.shape:
        raise ValueError(
            f"previous_chunk must have the shape of noise {tuple(noise.shape)}, "
            f"got {tuple(previous_chunk.shape)} (right-pad the unexecuted actions to H)"
        )
    if weights is None or weights.shape != (noise.shape[1],):
        shape = None if weights is None else tuple(weights.shape)
        raise ValueError(f"weights must have length H={noise.shape[1]}, got shape {shape}")
    if not bool(torch.isfinite(previous_chunk).all()):
        raise ValueError("previous_chunk contains NaN or infinite values")


def guided_sample(
    velocity: VelocityField,
    noise: torch.Tensor,
    previous_chunk: torch.Tensor | None,
    weights: torch.Tensor | None,
    num_steps: int,
    beta: float,
    guidance: GuidanceMode | str = GuidanceMode.VJP,
) -> torch.Tensor:
    """Integrate the flow from ``noise`` (B, H, M) to a chunk, guided toward ``previous_chunk``.

    ``previous_chunk`` is (B, H, M): the previous chunk's unexecuted actions right-padded
    to H, or None for plain unguided Euler sampling. ``weights`` (length H) is the prefix
    mask W from :func:`rtc_ros.core.masks.prefix_weights`. In VJP mode gradients flow only
    into the action sample; parameters of the velocity network get no gradient.
    """
    mode = parse_enum(GuidanceMode, guidance, "guidance")
    _check_inputs(noise, previous_chunk, weights, num_steps)
    step = 1.0 / num_steps
    taus = [k * step for k in range(num_steps)]
    if previous_chunk is None or weights is None:  # _check_inputs: both or neither
        with torch.inference_mode():
            return euler_steps(velocity, noise, taus, step)
    target = previous_chunk.to(noise.dtype)
    mask = weights.to(device=noise.device, dtype=noise.dtype)[None, :, None]
    guidance_weights = [guidance_weight(tau, beta) for tau in taus]
    if mode is GuidanceMode.STOP_GRADIENT:
        with torch.inference_mode():
            return euler_steps(velocity, noise, taus, step, target, mask, guidance_weights, mode)
    return euler_steps(velocity, noise, taus, step, target, mask, guidance_weights, mode).detach()


def euler_steps(
    velocity: VelocityField,
    noise: torch.Tensor,
    taus: Sequence[float],
    step: float,
    target: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    guidance_weights: Sequence[float] = (),
    mode: GuidanceMode | None = None,
) -> torch.Tensor:
    """The n Euler steps of GUIDEDINFERENCE from ``noise``, shared by
    the eager and compiled samplers.

    ``mode`` None integrates without guidance; otherwise ``target`` (B, H, M), ``mask`` W as
    (1, H, 1) and one guidance weight per flow time in ``taus``. No host synchronisation and no
    data-dependent branch, so a CUDA graph can capture it. The caller picks the grad-free mode
    around it (``inference_mode`` eagerly, ``no_grad`` under graph capture); VJP mode enables
    gradients for each step's backward pass itself.
    """
    actions = noise
    if mode is None:
        for tau in taus:
            actions = actions + step * velocity(actions, tau)
        return actions
    if target is None or mask is None:
        raise ValueError("guided Euler steps need the target chunk and the mask W")
    if mode is GuidanceMode.STOP_GRADIENT:
        for tau, w in zip(taus, guidance_weights):
            v = velocity(actions, tau)
            error = (target - (actions + (1.0 - tau) * v)) * mask  # steps 2-3
            actions = actions + step * (v + w * error)  # step 7 with g = e
        return actions
    actions = actions.detach()
    for tau, w in zip(taus, guidance_weights):
        with torch.enable_grad():
            sample = actions.detach().requires_grad_(True)
            v = velocity(sample, tau)
            final_estimate = sample + (1.0 - tau) * v  # step 2
            error = (target - final_estimate.detach()) * mask  # step 3
            (vjp,) = torch.autograd.grad(final_estimate, sample, grad_outputs=error)  # step 4
        actions = actions + step * (v.detach() + w * vjp)  # step 7
    return actions


def pad_to_horizon(unexecuted: torch.Tensor, prediction_horizon: int) -> torch.Tensor:
    """Right-pad (B, H - s, M) unexecuted actions with zeros to (B, H, M); W is 0 there."""
    missing = prediction_horizon - unexecuted.shape[1]
    if missing < 0:
        raise ValueError(
            f"previous chunk has {unexecuted.shape[1]} unexecuted actions, more than "
            f"H={prediction_horizon}"
        )
    return torch.nn.functional.pad(unexecuted, (0, 0, 0, missing))


__all__ = ["GuidanceMode", "euler_steps", "guidance_weight", "guided_sample", "pad_to_horizon"]
