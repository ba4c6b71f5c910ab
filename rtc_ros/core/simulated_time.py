"""Algorithm 1 on a simulated clock: inference takes an exact number
of ticks, the world never waits.

Used by the tests and the benchmarks to put a method under a chosen delay deterministically.
Each tick: the controller acts; after the caller stepped the world, the chunk whose inference
has finished is swapped in and the next inference starts if the planner says so. A chunk
computed from the observation after tick k becomes available ``delay`` ticks later, so the
controller meets it with an observed delay of exactly ``delay``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rtc_ros.core.handover import AtomicSlot
from rtc_ros.core.scheduler import (
    Chunk,
    ChunkExecutor,
    InferencePlanner,
    InferenceRequest,
    TickResult,
)

Infer = Callable[[InferenceRequest], np.ndarray]
"""Computes the chunk's actions for a request from the world's current observation."""


class SimulatedTimeLoop:
    def __init__(
        self,
        executor: ChunkExecutor,
        planner: InferencePlanner,
        infer: Infer,
        delay_ticks: Callable[[InferenceRequest], int],
        observation_age_ticks: int = 0,
    ) -> None:
        """``delay_ticks(request)``: how many ticks that inference takes (0 for the warm-up
        chunk, which the paper makes before the controller starts moving).

        ``observation_age_ticks``: the planner is told that ``infer``'s observation is this many
        ticks old (the caller hands ``infer`` an observation that old), as a robot's stack
        dates its sensor data.
        """
        if observation_age_ticks < 0:
            raise ValueError(f"observation_age_ticks must be >= 0, got {observation_age_ticks}")
        self.observation_age_ticks = observation_age_ticks
        self.executor = executor
        self.planner = planner
        self._infer = infer
        self._delay_ticks = delay_ticks
        self._handover: AtomicSlot[Chunk] = AtomicSlot()
        self._in_flight: tuple[int, Chunk] | None = None
        self.wall_tick = 0

    def start(self) -> None:
        """Make the warm-up chunk (call once the world is reset)."""
        self.after_world_step()

    def tick(self) -> TickResult:
        self._deliver_due()
        result = self.executor.tick(self._handover.latest())
        self.wall_tick += 1
        return result

    def after_world_step(self) -> InferenceRequest | None:
        """Deliver a finished chunk and start an inference if one is
        due, from the world as it is now.
        """
        self._deliver_due()
        if self._in_flight is not None or not self.planner.ready(self.executor.state):
            return None
        request = self.planner.plan(
            self.executor.state, self.executor.current, self.observation_age_ticks
        )
        delay = self._delay_ticks(request)
        if delay < 0:
            raise ValueError(f"delay_ticks must be >= 0, got {delay}")
        chunk = request.chunk(self._infer(request))
        self._in_flight = (self.wall_tick + delay, chunk)
        return request

    def _deliver_due(self) -> None:
        """Algorithm 1 swaps as soon as inference finishes, between two controller ticks."""
        if self._in_flight is not None and self._in_flight[0] <= self.wall_tick:
            self._handover.publish(self._in_flight[1])
            self.executor.receive(self._in_flight[1])
            self._in_flight = None
