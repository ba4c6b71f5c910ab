"""Rolling percentiles for latency and timing figures, cheap enough for a 50 Hz loop."""
from __future__ import annotations

import collections

import numpy as np


class RollingStats:
    """The last ``window`` samples; percentiles are computed only when asked for."""

    def __init__(self, window: int = 3000) -> None:
        self._samples: collections.deque[float] = collections.deque(maxlen=window)
        self.count = 0

    def add(self, value: float) -> None:
        self._samples.append(float(value))
        self.count += 1

    def percentile(self, q: float) -> float:
        """NaN when empty."""
        return float(np.percentile(self._samples, q)) if self._samples else float("nan")

    def max(self) -> float:
        return max(self._samples) if self._samples else float("nan")

    def values(self) -> list[float]:
        return list(self._samples)
