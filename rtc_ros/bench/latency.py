"""Chunk latency of vanilla sampling, RTC stop-gradient and RTC VJP, measured side by side.

    python -m rtc_ros.bench.latency [--device cpu|cuda] [--model MODEL] [--output DIR]

For one policy it generates chunks in the three modes, interleaved round-robin (the order
rotates every round) so that machine noise hits all alike, and reports for each mode the
chunk latency (p50 / p95 / max / mean over ``--chunks`` chunks after warm-up), its ratio to
vanilla, the breakdown into prefix (``encode``: image encoders and VLM prefill), denoising
(the n steps) and guidance (denoising time above vanilla's), and peak GPU memory. A chunk's
latency runs from the observation to the chunk in host memory, as the controller gets it.
It also times the controller-side handover read (``AtomicSlot.latest`` and
``SharedMemorySlot.latest``, with and without a new chunk; rtc_ros.bench.handover measures it
alone, as the control process runs). Results go to DIR/latency.json.

Models: ``reference`` (rtc_ros.policies.reference, untrained), ``builtin-pi0`` (the built-in
pi0-shaped expert, rtc_ros.policies.action_expert), and ``lerobot-pi0``, ``lerobot-pi05``,
``lerobot-smolvla`` (rtc_ros.policies.lerobot.model; needs lerobot), all with random weights
and fed the model's own inputs. ``--size tiny`` builds builtin-pi0 and lerobot-smolvla at a
size for a CPU. ``--policy PATH_OR_NAME`` instead loads what the nodes would load through
rtc_ros.policies.registry (a LeRobot folder with its preprocessor, a .pt file, a name) and
feeds it robot observations, so the prefix time includes the preprocessor. Needs numpy and
torch only: no rclpy.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import os
import pathlib
import platform
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from rtc_ros.bench.handover import format_results, measure_handover
from rtc_ros.core.compiled import CompiledGuidedSampler
from rtc_ros.core.guidance import GuidanceMode, guided_sample, pad_to_horizon
from rtc_ros.core.masks import prefix_weights
from rtc_ros.core.policy import paper_velocity

MODES: dict[str, GuidanceMode | None] = {
    "vanilla": None,
    "stop_gradient": GuidanceMode.STOP_GRADIENT,
    "vjp": GuidanceMode.VJP,
}
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


def run(config: LatencyConfig, command: str = "", log: Callable[[str], None] = print) -> dict:
    """Build the policy, measure, and return the report (what latency.json holds)."""
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads or threads)
    try:
        log(f"building {config.policy or config.model} on {config.device} ({config.torch_dtype})")
        started = time.perf_counter()
        built = build_policy(config)
        log(
            f"  built in {time.perf_counter() - started:.1f} s; parameters "
            f"{built.description['parameters']}"
        )
        modes = measure_chunks(built, config, log)
        info = environment(device)
    finally:
        torch.set_num_threads(threads)
    chunk_shape = (built.policy.prediction_horizon, built.policy.action_dim)
    handover = measure_handover(chunk_shape, config.handover_reads)
    if device.type == "cuda":
        overall_peak = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        overall_peak = None
    settings = dataclasses.asdict(config)
    settings["dtype"] = str(config.torch_dtype).removeprefix("torch.")
    return {
        "benchmark": "rtc_ros.bench.latency",
        "command": command,
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "environment": info,
        "model": {
            "name": config.policy or config.model,
            "prediction_horizon": built.policy.prediction_horizon,
            "action_dim": built.policy.action_dim,
            **built.description,
        },
        "settings": settings,
        "modes": modes,
        "peak_memory_gib": overall_peak,
        "handover_read_us": handover,
    }


def format_report(report: dict) -> str:
    model, settings = report["model"], report["settings"]
    machine = report["environment"].get("gpu", report["environment"]["cpu"])
    cuda_graph = settings["cuda_graph"] and settings["device"].startswith("cuda")
    lines = [
        f"{model['name']}{' (tiny)' if settings['size'] == 'tiny' else ''} on {machine}: "
        f"H={model['prediction_horizon']} M={model['action_dim']} n={settings['num_steps']} "
        f"batch={settings['batch_size']} {settings['dtype']} sampler={settings['sampler']}"
        f"{' +cuda-graph' if cuda_graph else ''}, "
        f"{settings['chunks']} chunks per mode, round-robin",
        f"{'mode':<14}{'p50 ms':>11}{'p95 ms':>11}{'max ms':>11}{'p50/van':>9}{'p95/van':>9}"
        f"{'prefix':>11}{'denoise':>11}{'guidance':>11}{'peak GiB':>10}",
    ]
    for name, result in report["modes"].items():
        latency, breakdown = result["latency_ms"], result["breakdown_ms"]
        peak = result["peak_memory_gib"]
        lines.append(
            f"{name:<14}{latency['p50']:11.3f}{latency['p95']:11.3f}{latency['max']:11.3f}"
            f"{result['ratio_p50_to_vanilla']:9.3f}{result['ratio_p95_to_vanilla']:9.3f}"
            f"{breakdown['prefix_p50']:11.3f}{breakdown['denoise_p50']:11.3f}"
            f"{breakdown['guidance_p50']:11.3f}{'-' if peak is None else f'{peak:.2f}':>10}"
        )
    lines.append(format_results(report["handover_read_us"]))
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> tuple[LatencyConfig, pathlib.Path | None]:
    parser = argparse.ArgumentParser(
        prog="python -m rtc_ros.bench.latency", description=__doc__.split("\n")[0]
    )
    defaults = LatencyConfig()
    parser.add_argument("--model", choices=MODELS, default=defaults.model)
    parser.add_argument(
        "--size",
        choices=SIZES,
        default=defaults.size,
        help="tiny: builtin-pi0 or lerobot-smolvla at a size for a CPU",
    )
    parser.add_argument("--device", default=defaults.device, help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--dtype", default=defaults.dtype, choices=["auto", "float32", "bfloat16", "float16"]
    )
    parser.add_argument(
        "--output", type=pathlib.Path, help="folder for latency.json (none: print only)"
    )
    parser.add_argument(
        "--chunks", type=int, default=defaults.chunks, help="measured chunks per mode"
    )
    parser.add_argument(
        "--warmup", type=int, default=defaults.warmup, help="warm-up chunks per mode"
    )
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument(
        "--num-steps", type=int, default=defaults.num_steps, help="n, denoising steps"
    )
    parser.add_argument("--beta", type=float, default=defaults.beta)
    parser.add_argument(
        "--prediction-horizon", type=int, default=defaults.prediction_horizon, help="H"
    )
    parser.add_argument(
        "--action-dim", type=int, help="M (default 14 for reference and tiny, else 32)"
    )
    parser.add_argument(
        "--execution-horizon", type=int, default=defaults.execution_horizon, help="s"
    )
    parser.add_argument("--inference-delay", type=int, default=defaults.inference_delay, help="d")
    parser.add_argument("--sampler", choices=["compiled", "core"], default=defaults.sampler)
    parser.add_argument(
        "--no-cuda-graph", action="store_true", help="compiled sampler without CUDA graphs"
    )
    parser.add_argument(
        "--policy",
        help="path or name loaded through the policy registry, as the nodes do (replaces --model)",
    )
    parser.add_argument(
        "--policy-type", default="", help="overrides the kind the registry detects"
    )
    parser.add_argument("--handover-reads", type=int, default=defaults.handover_reads)
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: 1 on CPU, torch's default with CUDA)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)
    try:
        config = LatencyConfig(
            model=args.model,
            size=args.size,
            device=args.device,
            dtype=args.dtype,
            chunks=args.chunks,
            warmup=args.warmup,
            batch_size=args.batch_size,
            num_steps=args.num_steps,
            beta=args.beta,
            prediction_horizon=args.prediction_horizon,
            action_dim=args.action_dim,
            execution_horizon=args.execution_horizon,
            inference_delay=args.inference_delay,
            sampler=args.sampler,
            cuda_graph=not args.no_cuda_graph,
            policy=args.policy,
            policy_type=args.policy_type,
            handover_reads=args.handover_reads,
            threads=args.threads,
            seed=args.seed,
        )
    except ValueError as error:
        parser.error(str(error))
    return config, args.output


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    config, output = parse_args(argv)
    report = run(config, " ".join(["python -m rtc_ros.bench.latency", *argv]))
    print(format_report(report))
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        path = output / "latency.json"
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
