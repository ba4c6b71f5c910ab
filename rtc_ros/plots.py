"""The run's figures, from plain arrays: the demo draws them from what its monitor received,
``python -m rtc_ros.plot`` from a recorded bag.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np

RESET_STEP_RAD = 0.3
"""A joint-state step above this between two samples is an episode reset (the robot moved home at
once): at the arms' 3.14 rad/s limit a servo moves 0.03 rad between two 100 Hz samples."""


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_joints(
    times_s: np.ndarray,
    stamps_s: np.ndarray,
    names: Sequence[str],
    positions: np.ndarray,
    seams_s: Sequence[float],
    holds_s: Sequence[tuple[float, float]],
    arm: str,
    path: pathlib.Path,
) -> None:
    """One arm's measured joint positions, velocities and accelerations (its grippers left out),
    chunk seams dashed, holds shaded; ``times_s`` on the x axis, derivatives over the robot's
    own ``stamps_s`` (samples received in bursts would draw as velocity spikes over receive
    times).
    """
    plt = _pyplot()
    columns = [
        i for i, n in enumerate(names) if n.startswith(arm + "_") and not n.endswith("gripper")
    ]
    positions = positions[:, columns]
    velocity = np.gradient(positions, stamps_s, axis=0)
    acceleration = np.gradient(velocity, stamps_s, axis=0)
    # A reset's step is left out of the derivatives instead of drawn as spikes.
    steps = np.abs(np.diff(positions, axis=0)).max(axis=1)
    for index in np.flatnonzero(steps > RESET_STEP_RAD) + 1:
        window = slice(max(index - 2, 0), index + 3)
        velocity[window] = np.nan
        acceleration[window] = np.nan
    figure, axes = plt.subplots(3, 1, figsize=(12, 9), sharex=True)
    for axis, values, label in zip(
        axes,
        (positions, velocity, acceleration),
        ("position (rad)", "velocity (rad/s)", "acceleration (rad/s²)"),
    ):
        for k, column in enumerate(columns):
            axis.plot(times_s, values[:, k], linewidth=1.0, label=names[column])
        for seam in seams_s:
            axis.axvline(seam, color="0.6", linewidth=0.6, linestyle="--")
        for held, released in holds_s:
            axis.axvspan(held, released, color="tab:red", alpha=0.15, linewidth=0)
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize=7, ncol=3)
    axes[0].set_title(
        f"{arm} arm, measured joint states; dashed: chunk seams; red: controller held "
        "(robot reset between episodes)"
    )
    axes[2].set_xlabel("time since first command (s)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_delays(
    times_s: np.ndarray,
    inference_delays: np.ndarray,
    execution_horizons: np.ndarray,
    latencies_ms: np.ndarray,
    period_s: float,
    path: pathlib.Path,
) -> None:
    """Per chunk: the inference delay d and execution horizon s it was planned with (ticks), and
    its latency (observation to chunk ready, ms) against the control period.
    """
    plt = _pyplot()
    figure, (delays, latency) = plt.subplots(2, 1, figsize=(12, 6), sharex=True)
    delays.step(times_s, inference_delays, where="post", label="inference delay d")
    delays.step(times_s, execution_horizons, where="post", label="execution horizon s")
    delays.set_ylabel("ticks")
    delays.legend(loc="upper right", fontsize=8)
    latency.plot(times_s, latencies_ms, marker=".", linewidth=0.8, label="chunk latency")
    for ticks in range(1, int(np.nanmax(latencies_ms, initial=0.0) / (period_s * 1e3)) + 1):
        latency.axhline(ticks * period_s * 1e3, color="0.8", linewidth=0.6)
    latency.set_ylabel("latency (ms); grey: whole ticks")
    latency.set_xlabel("time since first command (s)")
    for axis in (delays, latency):
        axis.grid(alpha=0.3)
    delays.set_title("per chunk, at the time it was received")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
