"""Delay-robustness benchmark: the paper's Fig. 5 on this package's tasks, policies and core.

    python -m rtc_ros.bench.delay --output DIR [--quick]
    python -m rtc_ros.bench.delay train [--output rtc_ros/bench/checkpoints]

For every task, method and inference delay d = 0..4 (H = 8) it plays B rollouts with the
delay simulated exactly in ticks while the world keeps moving, at execution horizon
s = max(d, s_min) with s_min = 1, and again at d = 1 for s = 1..5. It writes
``DIR/results.csv`` (one row per task, method, delay, execution horizon), ``DIR/results.md``
(its tables) and three plots: success against delay, success against execution
horizon, and one rollout's actions with the chunk seams of naive async, temporal ensembling
and RTC. ``--quick`` runs a few rollouts of one task, to check the harness in under a minute.

Policies come from ``rtc_ros/bench/checkpoints`` (``--checkpoints``); a task without a
checkpoint there is trained first (a few minutes on CPU) and saved in ``DIR/checkpoints``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import pathlib
import sys
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from rtc_ros.bench.delay_harness import (
    Generate,
    Rollouts,
    run_rollouts,
    smoothness,
    wilson_interval,
)
from rtc_ros.bench.delay_policies import (
    SHIPPED_CHECKPOINTS,
    PolicyRecipe,
    TaskPolicies,
    load_or_train,
    save_task_policies,
    train_task_policies,
)
from rtc_ros.bench.tasks import TASKS, Task, make_task
from rtc_ros.core import ChunkGenerator, ChunkingConfig, GuidanceMode, Method

METHODS: tuple[ChunkingConfig, ...] = (
    ChunkingConfig(method=Method.SYNC),
    ChunkingConfig(method=Method.NAIVE_ASYNC),
    ChunkingConfig(method=Method.TEMPORAL_ENSEMBLING),
    ChunkingConfig(method=Method.BID),
    ChunkingConfig(method=Method.RTC_HARD, guidance=GuidanceMode.VJP),
    ChunkingConfig(method=Method.RTC_HARD, guidance=GuidanceMode.STOP_GRADIENT),
    ChunkingConfig(method=Method.RTC_SOFT, guidance=GuidanceMode.VJP),
    ChunkingConfig(method=Method.RTC_SOFT, guidance=GuidanceMode.STOP_GRADIENT),
)
"""Every method through the core's interface; defaults are the paper's (n = 5, beta = 5,
BID N = 32, K = 3, ACT's ensembling decay 0.01)."""

EXPERT_REFERENCE = "expert_chunks"
"""Not a method but a reference row: the scripted expert's own chunks (one strategy per
episode, planned from the true state) executed by naive async under the same delay. Its chunks
never disagree at a seam, so its success is what the delay alone costs: the most that any
handling of seams (TE, BID, RTC) can be expected to recover with this policy."""

TRAJECTORY_METHODS = ("naive_async", "temporal_ensembling", "rtc_soft/vjp")

COLUMNS = (
    "task",
    "method",
    "delay",
    "execution_horizon",
    "rollouts",
    "successes",
    "success_rate",
    "success_ci_low",
    "success_ci_high",
    "jerk_mean",
    "jerk_max",
    "seam_jump_max",
    "seam_jump_mean",
    "step_mean",
    "prefix_error",
    "inferences",
    "underruns",
    "paused_ticks",
    "wall_s",
)
"""results.csv columns; see docs/benchmarks/delay/README.md for their definitions."""


@dataclasses.dataclass(frozen=True)
class Sweep:
    """Which cells to run. Each (d, s) pair runs every task and method once."""

    tasks: tuple[str, ...]
    delays: tuple[int, ...] = (0, 1, 2, 3, 4)
    min_execution_horizon: int = 1
    """s_min of the delay sweep: s = max(d, s_min)."""
    horizon_sweep_delay: int = 1
    execution_horizons: tuple[int, ...] = (1, 2, 3, 4, 5)
    rollouts: int = 512
    prediction_horizon: int = 8
    trajectory_task: str = "navigation"
    trajectory_delay: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks:
            raise ValueError(
                f"tasks must be a non-empty subset of {', '.join(TASKS)}, got {self.tasks}"
            )
        if self.rollouts < 1:
            raise ValueError(f"rollouts must be >= 1, got {self.rollouts}")
        for d, s in self.cells():
            if not d <= s < self.prediction_horizon or s + d > self.prediction_horizon:
                raise ValueError(
                    f"delay {d} with execution horizon {s} needs d <= s and s + d <= H = "
                    f"{self.prediction_horizon}"
                )
        if self.trajectory_task not in self.tasks or self.trajectory_delay not in self.delays:
            raise ValueError(
                "trajectory_task and trajectory_delay must be among the swept tasks and delays"
            )

    def execution_horizon(self, delay: int) -> int:
        return max(delay, self.min_execution_horizon)

    def cells(self) -> list[tuple[int, int]]:
        """(d, s) pairs of the delay sweep, then the execution-horizon sweep, without repeats."""
        pairs = [(d, self.execution_horizon(d)) for d in self.delays]
        pairs += [(self.horizon_sweep_delay, s) for s in self.execution_horizons]
        return list(dict.fromkeys(pairs))


FULL_SWEEP = Sweep(tasks=tuple(TASKS))
QUICK_SWEEP = Sweep(
    tasks=("navigation",),
    delays=(0, 1),
    execution_horizons=(1, 2),
    rollouts=16,
    trajectory_delay=1,
)


def run_cell(
    task_name: str,
    policies: TaskPolicies | None,
    config: ChunkingConfig | None,
    delay: int,
    execution_horizon: int,
    sweep: Sweep,
) -> tuple[dict, Rollouts]:
    """One result row and the raw rollouts of one (task, method, d, s) cell.

    ``config`` None plays the :data:`EXPERT_REFERENCE` (no policy needed). Every cell of a
    task starts from the same initial states and action-noise stream (common random numbers),
    so methods differ only by what they command.
    """
    started = time.perf_counter()
    task_seed = sweep.seed * 1000 + sorted(TASKS).index(task_name)
    task = make_task(task_name)
    if config is None:
        label, config = EXPERT_REFERENCE, ChunkingConfig(method=Method.NAIVE_ASYNC)
        generate = _expert_chunks(task, sweep.prediction_horizon)
    else:
        label = config.label
        generate = ChunkGenerator(
            policies.strong,
            config,
            weak_policy=policies.weak,
            generator=torch.Generator().manual_seed(task_seed),
        ).generate
    rollouts = run_rollouts(
        task,
        generate,
        config,
        sweep.prediction_horizon,
        delay,
        execution_horizon,
        sweep.rollouts,
        task_seed,
    )
    metrics = smoothness(np.clip(rollouts.actions, -1.0, 1.0), rollouts.running, rollouts.seams)
    successes = int(rollouts.success.sum())
    low, high = wilson_interval(successes, sweep.rollouts)
    row = dict(
        task=task_name,
        method=label,
        delay=delay,
        execution_horizon=execution_horizon,
        rollouts=sweep.rollouts,
        successes=successes,
        success_rate=successes / sweep.rollouts,
        success_ci_low=low,
        success_ci_high=high,
        **dataclasses.asdict(metrics),
        prefix_error=rollouts.prefix_error,
        inferences=len(rollouts.request_ticks),
        underruns=rollouts.underruns,
        paused_ticks=int(rollouts.paused.sum()),
        wall_s=time.perf_counter() - started,
    )
    return row, rollouts


def _expert_chunks(task: Task, prediction_horizon: int) -> Generate:
    """The expert's chunks planned from the task's true state, for the running episodes."""

    def generate(observation, unexecuted, inference_delay, execution_horizon):
        return torch.as_tensor(task.expert_chunk(prediction_horizon)[task.running()])

    return generate


def run_sweep(
    sweep: Sweep,
    policies: Mapping[str, TaskPolicies],
    methods: Sequence[ChunkingConfig | None] = METHODS + (None,),
    log: Callable[[str], None] = lambda line: None,
) -> tuple[list[dict], dict[str, Rollouts]]:
    """All result rows, and the trajectory-plot cells' rollouts keyed by method label.

    ``None`` among ``methods`` stands for the :data:`EXPERT_REFERENCE` rows.
    """
    rows, traces = [], {}
    trajectory_cell = (sweep.trajectory_delay, sweep.execution_horizon(sweep.trajectory_delay))
    for task_name in sweep.tasks:
        for delay, execution_horizon in sweep.cells():
            for config in methods:
                row, rollouts = run_cell(
                    task_name, policies[task_name], config, delay, execution_horizon, sweep
                )
                rows.append(row)
                log(
                    f"{task_name:10s} {row['method']:22s} d={delay} s={execution_horizon}  "
                    "success "
                    f"{row['success_rate']:.3f} [{row['success_ci_low']:.3f}, "
                    f"{row['success_ci_high']:.3f}]  "
                    f"seam jump {row['seam_jump_max']:.3f}  ({row['wall_s']:.1f} s)"
                )
                if (
                    task_name == sweep.trajectory_task
                    and (delay, execution_horizon) == trajectory_cell
                    and row["method"] in TRAJECTORY_METHODS
                ):
                    traces[row["method"]] = rollouts
    return rows, traces


def write_csv(rows: Sequence[dict], path: pathlib.Path) -> None:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in row.items()})


def delay_sweep_rows(rows: Sequence[dict], sweep: Sweep) -> list[dict]:
    return [
        r
        for r in rows
        if r["delay"] in sweep.delays
        and r["execution_horizon"] == sweep.execution_horizon(r["delay"])
    ]


def horizon_sweep_rows(rows: Sequence[dict], sweep: Sweep) -> list[dict]:
    return [
        r
        for r in rows
        if r["delay"] == sweep.horizon_sweep_delay
        and r["execution_horizon"] in sweep.execution_horizons
    ]


def _success_cell(selected: Sequence[dict]) -> str:
    if len(selected) > 1:  # the mean over tasks
        return f"{100 * np.mean([r['success_rate'] for r in selected]):.1f}"
    r = selected[0]
    low, high = 100 * r["success_ci_low"], 100 * r["success_ci_high"]
    return f"{100 * r['success_rate']:.1f} ({low:.0f}-{high:.0f})"


def _table(
    rows: Sequence[dict], column: str, panel: str, cell: Callable[[Sequence[dict]], str]
) -> list[str]:
    """Markdown rows: one per method, one column per value of
    ``column``, for a task or the mean.
    """
    values = sorted({r[column] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    short = {"delay": "d", "execution_horizon": "s"}[column]
    lines = [
        f"**{panel}**",
        "",
        "| method | " + " | ".join(f"{short}={v}" for v in values) + " |",
        "|---|" + "---|" * len(values),
    ]
    for method in methods:
        cells = [
            cell(
                [
                    r
                    for r in rows
                    if r["method"] == method and r[column] == v and panel in ("mean", r["task"])
                ]
            )
            for v in values
        ]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines + [""]


def markdown_tables(rows: Sequence[dict], sweep: Sweep) -> str:
    """Success per method against delay and execution horizon, then
    seam jumps, prefix error, jerk.
    """
    panels = list(sweep.tasks) + (["mean"] if len(sweep.tasks) > 1 else [])
    delay_rows, horizon_rows = delay_sweep_rows(rows, sweep), horizon_sweep_rows(rows, sweep)
    s_rule = f"s = max(d, {sweep.min_execution_horizon}), {sweep.rollouts} rollouts per cell"

    def mean_of(key: str) -> Callable[[Sequence[dict]], str]:
        return lambda selected: f"{np.mean([r[key] for r in selected]):.3f}"

    sections = [
        (
            f"Success rate, % (95% Wilson interval); {s_rule}",
            delay_rows,
            "delay",
            _success_cell,
            panels,
        ),
        (
            f"Success rate, % (95% Wilson interval); d = {sweep.horizon_sweep_delay}, "
            f"{sweep.rollouts} "
            "rollouts per cell",
            horizon_rows,
            "execution_horizon",
            _success_cell,
            panels,
        ),
        (
            f"Largest seam jump per rollout |a_t - a_t-1|, mean over rollouts; {s_rule}",
            delay_rows,
            "delay",
            mean_of("seam_jump_max"),
            sweep.tasks,
        ),
        (
            f"Prefix error: |new chunk - committed actions| over the d frozen actions; {s_rule}",
            delay_rows,
            "delay",
            mean_of("prefix_error"),
            sweep.tasks,
        ),
        (
            f"Mean jerk |third difference of actions| per tick; {s_rule}",
            delay_rows,
            "delay",
            mean_of("jerk_mean"),
            sweep.tasks,
        ),
    ]
    lines = []
    for title, selected, column, cell, section_panels in sections:
        lines += [f"### {title}", ""]
        for panel in section_panels:
            lines += _table(selected, column, panel, cell)
    return "\n".join(lines)


def write_outputs(
    rows: Sequence[dict], traces: Mapping[str, Rollouts], sweep: Sweep, output: pathlib.Path
) -> None:
    from rtc_ros.bench.delay_plots import plot_success, plot_trajectories  # matplotlib only here

    output.mkdir(parents=True, exist_ok=True)
    write_csv(rows, output / "results.csv")
    (output / "results.md").write_text(markdown_tables(rows, sweep))
    h = sweep.prediction_horizon
    plot_success(
        delay_sweep_rows(rows, sweep),
        "delay",
        "inference delay d (ticks)",
        f"Success against inference delay (H={h}, s=max(d,{sweep.min_execution_horizon}), "
        f"{sweep.rollouts} rollouts)",
        output / "success_vs_delay.png",
    )
    plot_success(
        horizon_sweep_rows(rows, sweep),
        "execution_horizon",
        "execution horizon s (ticks)",
        f"Success against execution horizon (H={h}, d={sweep.horizon_sweep_delay}, "
        f"{sweep.rollouts} rollouts)",
        output / "success_vs_execution_horizon.png",
    )
    d = sweep.trajectory_delay
    ordered = {m: traces[m] for m in TRAJECTORY_METHODS if m in traces}
    plot_trajectories(
        ordered,
        0,
        f"{sweep.trajectory_task}, rollout 0, d={d}, s={sweep.execution_horizon(d)}",
        output / "trajectory.png",
    )


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rtc_ros.bench.delay", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--output", type=pathlib.Path, help="results directory (required to run the benchmark)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a few rollouts of one task: checks the harness"
    )
    parser.add_argument("--rollouts", type=int, help="rollouts per cell (default 512, quick 16)")
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), help="default: all tasks")
    parser.add_argument(
        "--checkpoints",
        type=pathlib.Path,
        default=SHIPPED_CHECKPOINTS,
        help="directory with <task>.pt and <task>_weak.pt (default: the shipped ones)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    commands = parser.add_subparsers(dest="command")
    train = commands.add_parser(
        "train", help="collect demonstrations and train every task's policies"
    )
    train.add_argument(
        "--output",
        type=pathlib.Path,
        default=SHIPPED_CHECKPOINTS,
        dest="checkpoint_output",
        help="where to write the checkpoints (default: the shipped directory)",
    )
    train.add_argument("--tasks", nargs="+", choices=sorted(TASKS), dest="train_tasks")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.command == "train":
        for task_name in args.train_tasks or args.tasks or list(TASKS):
            save_task_policies(
                train_task_policies(task_name, PolicyRecipe(), _log),
                args.checkpoint_output,
                task_name,
            )
            _log(f"{task_name}: checkpoints written to {args.checkpoint_output}")
        return 0
    if args.output is None:
        parser.error("--output DIR is required to run the benchmark")
    sweep = QUICK_SWEEP if args.quick else FULL_SWEEP
    if args.tasks:
        trajectory_task = (
            sweep.trajectory_task if sweep.trajectory_task in args.tasks else args.tasks[0]
        )
        sweep = dataclasses.replace(
            sweep, tasks=tuple(args.tasks), trajectory_task=trajectory_task
        )
    if args.rollouts:
        sweep = dataclasses.replace(sweep, rollouts=args.rollouts)
    started = time.perf_counter()
    policies = {
        t: load_or_train(t, args.checkpoints, args.output / "checkpoints", log=_log)
        for t in sweep.tasks
    }
    rows, traces = run_sweep(sweep, policies, log=_log)
    write_outputs(rows, traces, sweep, args.output)
    _log(
        f"wrote {args.output}/results.csv, results.md and 3 plots in "
        f"{time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
