"""Rolling percentiles for latency and timing figures, cheap enough for a 50 Hz loop."""

from __future__ import annotations

import numpy as np


class RollingStats:
    """The last ``window`` samples in a preallocated ring; percentiles only when asked for.

    Adding a sample stores one float and allocates nothing. ``memory`` (``window + 1`` float64
    words, e.g. in shared memory) holds the sample count and the ring, so that another process
    can read the figures while one process adds samples: a reader racing the writer sees a
    sample or two of the next tick, never a torn value (each is one aligned 8-byte word).
    """

    def __init__(self, window: int = 3000, memory: np.ndarray | None = None) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if memory is None:
            memory = np.zeros(window + 1)
        elif memory.shape != (window + 1,) or memory.dtype != np.float64:
            raise ValueError(
                f"memory must be {window + 1} float64 words, got {memory.shape} {memory.dtype}"
            )
        self.window = window
        self._memory = memory
        self._ring = memory[1:]
        self._added = int(memory[0])

    @property
    def count(self) -> int:
        """Samples added since the start (also those that left the window)."""
        return int(self._memory[0])

    def add(self, value: float) -> None:
        self._ring[self._added % self.window] = value
        self._added += 1
        self._memory[0] = self._added

    def values(self) -> np.ndarray:
        """The samples in the window, oldest first (a copy)."""
        count = self.count
        if count <= self.window:
            return self._ring[:count].copy()
        start = count % self.window
        return np.concatenate([self._ring[start:], self._ring[:start]])

    def percentile(self, q: float) -> float:
        """NaN when empty."""
        values = self.values()
        return float(np.percentile(values, q)) if values.size else float("nan")

    def max(self) -> float:
        values = self.values()
        return float(values.max()) if values.size else float("nan")
