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
import json
import pathlib
import sys
import time
from collections.abc import Callable, Sequence

import torch

from rtc_ros.bench.handover import format_results, measure_handover
from rtc_ros.bench.latency_measure import environment, measure_chunks
from rtc_ros.bench.latency_policies import MODELS, SIZES, LatencyConfig, build_policy


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
