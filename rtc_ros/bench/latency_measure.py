"""Chunk latency of one policy in the three modes, interleaved, with its
breakdown, and the machine it ran on.
"""

from __future__ import annotations

import gc
import os
import platform
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from rtc_ros.bench.latency_policies import BuiltPolicy, LatencyConfig
from rtc_ros.core.compiled import CompiledGuidedSampler
from rtc_ros.core.guidance import GuidanceMode, guided_sample, pad_to_horizon
from rtc_ros.core.masks import prefix_weights
from rtc_ros.core.policy import paper_velocity

MODES: dict[str, GuidanceMode | None] = {
    "vanilla": None,
    "stop_gradient": GuidanceMode.STOP_GRADIENT,
    "vjp": GuidanceMode.VJP,
}


class _Stamps:
    """Points in time on the device's stream (CUDA events) or on the host clock."""

    def __init__(self, device: torch.device, count: int) -> None:
        self._cuda = device.type == "cuda"
        self._events = (
            [torch.cuda.Event(enable_timing=True) for _ in range(count)] if self._cuda else None
        )
        self._times = [0.0] * count

    def mark(self, index: int) -> None:
        if self._cuda:
            self._events[index].record()
        else:
            self._times[index] = time.perf_counter()

    def elapsed_ms(self, start: int, end: int) -> float:
        """Call only once the work after ``end`` has completed (the chunk reached the host)."""
        if self._cuda:
            return self._events[start].elapsed_time(self._events[end])
        return (self._times[end] - self._times[start]) * 1e3


def measure_chunks(
    built: BuiltPolicy, config: LatencyConfig, log: Callable[[str], None] = print
) -> dict:
    """Per mode: chunk latency statistics, ratios to vanilla, breakdown and peak memory."""
    policy = built.policy
    device = torch.device(policy.device)
    dtype = policy.dtype
    horizon, action_dim = policy.prediction_horizon, policy.action_dim
    shape = (config.batch_size, horizon, action_dim)
    generator = torch.Generator().manual_seed(config.seed + 1)
    noise = torch.randn(shape, generator=generator).to(device=device, dtype=dtype)
    unexecuted = torch.randn(
        (config.batch_size, horizon - config.execution_horizon, action_dim), generator=generator
    ).to(device=device, dtype=dtype)
    previous = pad_to_horizon(unexecuted, horizon)
    weights = prefix_weights(horizon, config.execution_horizon, config.inference_delay).to(device)
    sampler = None
    if config.sampler == "compiled":
        sampler = CompiledGuidedSampler(
            policy,
            config.batch_size,
            config.num_steps,
            config.beta,
            cuda_graph=config.cuda_graph and device.type == "cuda",
        )
    stamps = _Stamps(device, 3)

    def chunk(mode: GuidanceMode | None) -> tuple[float, float, float]:
        target, mask = (None, None) if mode is None else (previous, weights)
        started = time.perf_counter()
        stamps.mark(0)
        with torch.no_grad():
            context = policy.encode(built.observation)
        stamps.mark(1)
        if sampler is not None:
            model_actions = sampler.sample(context, noise, target, mask, mode or GuidanceMode.VJP)
        else:
            model_actions = guided_sample(
                paper_velocity(policy, context),
                noise,
                target,
                mask,
                config.num_steps,
                config.beta,
                mode or GuidanceMode.VJP,
            )
        stamps.mark(2)
        with torch.no_grad():
            policy.from_model_space(model_actions).float().cpu()
        total_ms = (time.perf_counter() - started) * 1e3
        return total_ms, stamps.elapsed_ms(0, 1), stamps.elapsed_ms(1, 2)

    peak_gib: dict[str, float | None] = {}
    for name, mode in MODES.items():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        for _ in range(config.warmup):
            chunk(mode)
        peak_gib[name] = (
            (torch.cuda.max_memory_allocated(device) / 2**30) if device.type == "cuda" else None
        )
        log(f"  warm-up {name}: {config.warmup} chunks in {time.perf_counter() - started:.1f} s")
    samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in MODES}
    names = list(MODES)
    gc.collect()
    for round_index in range(config.chunks):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(chunk(MODES[name]))
    results = {name: _summarise(np.asarray(values)) for name, values in samples.items()}
    vanilla = results["vanilla"]
    for name, result in results.items():
        result["ratio_p50_to_vanilla"] = result["latency_ms"]["p50"] / vanilla["latency_ms"]["p50"]
        result["ratio_p95_to_vanilla"] = result["latency_ms"]["p95"] / vanilla["latency_ms"]["p95"]
        breakdown = result["breakdown_ms"]
        breakdown["guidance_p50"] = (
            breakdown["denoise_p50"] - vanilla["breakdown_ms"]["denoise_p50"]
        )
        result["peak_memory_gib"] = peak_gib[name]
    return results


def _summarise(values: np.ndarray) -> dict:
    total, prefix, denoise = values[:, 0], values[:, 1], values[:, 2]
    return {
        "chunks": int(len(values)),
        "latency_ms": {
            "p50": float(np.percentile(total, 50)),
            "p95": float(np.percentile(total, 95)),
            "max": float(total.max()),
            "mean": float(total.mean()),
        },
        "breakdown_ms": {
            "prefix_p50": float(np.percentile(prefix, 50)),
            "denoise_p50": float(np.percentile(denoise, 50)),
            "other_p50": float(np.percentile(total - prefix - denoise, 50)),
        },
    }


def environment(device: torch.device) -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info.update(
            gpu=torch.cuda.get_device_name(device),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            gpu_memory_gib=torch.cuda.get_device_properties(device).total_memory / 2**30,
        )
    for name in ("transformers", "lerobot"):
        module = sys.modules.get(name)
        if module is not None:
            info[name] = getattr(module, "__version__", "unknown")
    return info
