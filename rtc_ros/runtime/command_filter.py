"""Joint limits and rate limits applied to every command before it reaches the robot."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class JointLimits:
    """Per-joint position limits and the largest position change allowed per control tick."""

    names: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    max_step: tuple[float, ...]
    """rad (or m) per tick: bounds the commanded velocity to max_step / period."""

    def __post_init__(self) -> None:
        n = len(self.names)
        if n == 0:
            raise ValueError("joint names must not be empty")
        if len(set(self.names)) != n:
            raise ValueError(f"joint names must be unique, got {list(self.names)}")
        for field in ("lower", "upper", "max_step"):
            if len(getattr(self, field)) != n:
                raise ValueError(
                    f"{field} needs one value per joint ({n}), got {len(getattr(self, field))}"
                )
        for name, low, high, step in zip(self.names, self.lower, self.upper, self.max_step):
            if not low < high:
                raise ValueError(
                    f"joint {name}: lower limit {low} must be below upper limit {high}"
                )
            if not step > 0:
                raise ValueError(f"joint {name}: max_step must be > 0, got {step}")


class CommandFilter:
    """Makes a policy action safe to send: NaN/inf -> hold, then rate limit, then position limits.

    Holding means repeating the last command sent; before any command was sent there is
    nothing safe to send, and :meth:`apply` returns None.
    """

    def __init__(self, limits: JointLimits) -> None:
        self.limits = limits
        self._lower = np.asarray(limits.lower)
        self._upper = np.asarray(limits.upper)
        self._max_step = np.asarray(limits.max_step)
        self.last_command: np.ndarray | None = None
        self.rejected_actions = 0
        self.clamped_commands = 0

    def reset(self, current_positions: np.ndarray | None = None) -> None:
        """Start from the robot's measured positions (so the first step is rate limited too)."""
        self.last_command = (
            None
            if current_positions is None
            else np.clip(np.asarray(current_positions, dtype=np.float64), self._lower, self._upper)
        )

    def apply(self, action: np.ndarray | None) -> np.ndarray | None:
        if action is None:
            return self.last_command
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self._lower.shape or not np.all(np.isfinite(action)):
            self.rejected_actions += 1
            return self.last_command
        command = action
        if self.last_command is not None:
            command = np.clip(
                command, self.last_command - self._max_step, self.last_command + self._max_step
            )
        command = np.clip(command, self._lower, self._upper)
        if not np.array_equal(command, action):
            self.clamped_commands += 1
        self.last_command = command
        return command
