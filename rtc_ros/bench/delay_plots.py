"""Plots of the delay benchmark (matplotlib, Agg backend): the paper's Fig. 5 and a seam trace."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from rtc_ros.bench.delay_harness import Rollouts  # noqa: E402

_STYLE = {
    "sync": dict(color="tab:gray", marker="s"),
    "naive_async": dict(color="tab:orange", marker="v"),
    "temporal_ensembling": dict(color="tab:brown", marker="x"),
    "bid": dict(color="tab:purple", marker="D"),
    "rtc_hard/vjp": dict(color="tab:blue", marker="o", linestyle="--"),
    "rtc_hard/stop_gradient": dict(color="tab:cyan", marker="o", linestyle=":"),
    "rtc_soft/vjp": dict(color="tab:red", marker="o"),
    "rtc_soft/stop_gradient": dict(color="tab:pink", marker="o", linestyle=":"),
    "expert_chunks": dict(color="black", marker="", linestyle="--", linewidth=1.0),
}


def _style(method: str) -> dict:
    return _STYLE.get(method, dict(color="black", marker="."))


def plot_success(
    rows: Sequence[dict], x_key: str, x_label: str, title: str, path: pathlib.Path
) -> None:
    """One panel per task plus the mean over tasks; success rate with its 95% Wilson interval.

    ``rows`` are the result rows to plot, already restricted to one sweep (one row per task,
    method and value of ``x_key``).
    """
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    panels = tasks + (["mean over tasks"] if len(tasks) > 1 else [])
    figure, axes = plt.subplots(
        1, len(panels), figsize=(max(4.2 * len(panels), 8.0), 4.2), sharey=True, squeeze=False
    )
    for axis, panel in zip(axes[0], panels):
        for method in methods:
            if panel in tasks:
                points = sorted(
                    (r[x_key], r["success_rate"], r["success_ci_low"], r["success_ci_high"])
                    for r in rows
                    if r["task"] == panel and r["method"] == method
                )
                x, y, low, high = (np.array(v) for v in zip(*points))
                error = [np.maximum(y - low, 0.0), np.maximum(high - y, 0.0)]
                axis.errorbar(x, y, yerr=error, capsize=2, label=method, **_style(method))
            else:
                xs = sorted({r[x_key] for r in rows if r["method"] == method})
                y = [
                    np.mean(
                        [
                            r["success_rate"]
                            for r in rows
                            if r["method"] == method and r[x_key] == x
                        ]
                    )
                    for x in xs
                ]
                axis.plot(xs, y, label=method, **_style(method))
        axis.set_title(panel)
        axis.set_xlabel(x_label)
        axis.set_xticks(sorted({r[x_key] for r in rows}))
        axis.set_ylim(-0.02, 1.02)
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("success rate (95% Wilson interval)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8)
    figure.suptitle(title)
    figure.tight_layout(rect=(0, 0.12, 1, 0.95))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_trajectories(
    traces: dict[str, Rollouts], rollout: int, title: str, path: pathlib.Path
) -> None:
    """Applied actions of one rollout per method against time, chunk seams marked."""
    figure, axes = plt.subplots(
        len(traces), 1, figsize=(9.0, 2.3 * len(traces)), sharex=True, squeeze=False
    )
    for axis, (method, rollouts) in zip(axes[:, 0], traces.items()):
        running = rollouts.running[rollout]
        ticks = np.flatnonzero(running)
        actions = np.clip(rollouts.actions[rollout], -1.0, 1.0)
        for dim in range(actions.shape[-1]):
            axis.plot(ticks, actions[ticks, dim], label=f"action {dim}", linewidth=1.2)
        seams = [t for t in np.flatnonzero(rollouts.seams) if running[t]]
        for t in seams:
            axis.axvline(t - 0.5, color="gray", linewidth=0.6, linestyle=":")
        jumps = [np.linalg.norm(actions[t] - actions[t - 1]) for t in seams]
        largest = max(jumps) if jumps else float("nan")
        outcome = "success" if rollouts.success[rollout] else "failure"
        axis.set_title(f"{method}: {outcome}, largest seam jump {largest:.2f}", fontsize=9)
        axis.set_ylabel("action")
        axis.set_ylim(-1.1, 1.1)
    axes[-1, 0].set_xlabel("tick (dotted lines: a new chunk takes over)")
    axes[0, 0].legend(loc="upper right", fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
