"""The inference side of Algorithm 1 as a background thread.

It waits until the controller has consumed s_min actions of the current chunk, takes the
newest observation, generates the next chunk with the configured method (RTC by default)
and publishes it to the controller. Each step is a call to the core; this module only adds
the thread, timing and the handling of missing observations.

Settings changed while running (:meth:`InferenceWorker.reconfigure`) are taken between two
chunks, at the start of a step, so every chunk is planned and sampled with one set of them.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from rtc_ros.core.config import InferenceSettings
from rtc_ros.core.handover import AtomicSlot
from rtc_ros.core.methods import ChunkGenerator
from rtc_ros.core.scheduler import Chunk, ControllerState, InferencePlanner
from rtc_ros.runtime.stats import RollingStats

_LOG = logging.getLogger(__name__)

ObservationSource = Callable[[], Mapping[str, Any] | None]
"""Returns the newest complete, fresh observation (batch of 1, numpy arrays or tensors), or
None."""


@dataclasses.dataclass(frozen=True)
class InferenceReport:
    chunks: int
    latency_p50_ms: float
    latency_p95_ms: float
    latency_max_ms: float
    delay_history: tuple[int, ...]
    inference_delay_estimate: int
    execution_horizon: int
    delay_clamps: int
    waiting_for_observation: bool
    failures: int
    emulated_latency_ms: float
    """Every inference is padded to at least this wall time; 0 when latency is not emulated."""
    actions_clipped: int
    """Action entries the policy placed outside the joint limits, clipped onto them in the
    chunk."""


class InferenceWorker:
    def __init__(
        self,
        planner: InferencePlanner,
        generator: ChunkGenerator,
        observations: ObservationSource,
        controller_state: Callable[[], ControllerState | None],
        publish_chunk: Callable[[Chunk], None],
        poll_period_s: float = 0.001,
        on_chunk: Callable[[Chunk], None] | None = None,
        emulated_latency_s: float = 0.0,
        action_limits: tuple[np.ndarray, np.ndarray] | None = None,
        observation_age_ticks: Callable[[], int] | None = None,
    ) -> None:
        """``emulated_latency_s``: the initial :attr:`InferenceSettings.emulated_latency_s`.

        ``observation_age_ticks``: controller ticks since the observation last returned by
        ``observations`` was taken (None: it is taken now). A stale observation then starts its
        chunk at the tick it saw (:meth:`InferencePlanner.plan`).

        ``action_limits`` (lower, upper): the joint limits. A policy's sample lies outside them
        where it commands a joint to its stop (a closing gripper's target spreads around fully
        closed); such actions are clipped onto the limit in the chunk itself, so that guidance,
        the controller and its clamp counter see the targets the robot can take.
        """
        self._action_limits = action_limits
        self._observation_age_ticks = observation_age_ticks or (lambda: 0)
        self.actions_clipped = 0
        self.planner = planner
        self.generator = generator
        self.settings = InferenceSettings(
            generator.config, planner.min_execution_horizon, emulated_latency_s
        )
        self._next_settings: AtomicSlot[InferenceSettings] = AtomicSlot()
        self._observations = observations
        self._controller_state = controller_state
        self._publish_chunk = publish_chunk
        self._poll_period_s = poll_period_s
        self._on_chunk = on_chunk
        self._current: Chunk | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.latencies_ms = RollingStats(window=1000)
        self.last_execution_horizon = 0
        self.waiting_for_observation = False
        self.failures = 0
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rtc_inference", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def reconfigure(self, settings: InferenceSettings) -> None:
        """Use ``settings`` from the next chunk on; callable from any thread.

        The method itself cannot change: the controller executes chunks by it.
        """
        if settings.chunking.method is not self.settings.chunking.method:
            raise ValueError(
                f"method is fixed at {self.settings.chunking.method.value} while running, "
                f"got {settings.chunking.method.value}"
            )
        self._next_settings.publish(settings)

    def warm_up(self, observation: Mapping[str, Any]) -> float:
        """Run one unguided and one guided inference whose chunks are thrown away; seconds taken.

        The first calls pay one-off costs (allocator growth, autograd set-up, kernel selection)
        that would otherwise land in the first observed delays and inflate d for b chunks.
        """
        started = time.perf_counter()
        observation = _tensors(observation)
        chunk = self.generator.generate(observation, None, 0, 0)
        horizon = chunk.shape[1]
        s = self.planner.min_execution_horizon
        self.generator.generate(observation, chunk[:, s:].cpu(), min(1, horizon - s), s)
        return time.perf_counter() - started

    def step(self) -> Chunk | None:
        """Run one inference if one is due and an observation is available; the new chunk."""
        self._take_new_settings()
        state = self._controller_state()
        # Until the controller has reported, its clock (run id) is unknown: a chunk planned
        # now could not be executed.
        if state is None or not self.planner.ready(state):
            return None
        observation = self._observations()
        self.waiting_for_observation = observation is None
        if observation is None:
            return None
        started = time.perf_counter()
        request = self.planner.plan(state, self._current, self._observation_age_ticks())
        unexecuted = (
            None
            if request.warmup
            else torch.from_numpy(np.array(request.unexecuted))[None].float()
        )
        generated = self.generator.generate(
            _tensors(observation), unexecuted, request.inference_delay, request.execution_horizon
        )
        actions = generated[0].detach().to("cpu", torch.float64).numpy()
        if self._action_limits is not None:
            clipped = np.clip(actions, *self._action_limits)
            self.actions_clipped += int(np.count_nonzero(clipped != actions))
            actions = clipped
        padding_s = started + self.settings.emulated_latency_s - time.perf_counter()
        if padding_s > 0:
            self._stop.wait(padding_s)
        latency_s = time.perf_counter() - started
        chunk = request.chunk(actions, latency_s)
        if not request.warmup:
            self.latencies_ms.add(
                latency_s * 1e3
            )  # the warm-up pays one-off costs (allocation, caches)
        self.last_execution_horizon = request.execution_horizon
        self._current = chunk
        self._publish_chunk(chunk)
        if self._on_chunk is not None:
            self._on_chunk(chunk)
        return chunk

    def _take_new_settings(self) -> None:
        settings = self._next_settings.latest()
        if settings is None or settings is self.settings:
            return
        self.planner.reconfigure(settings.min_execution_horizon)
        self.generator.config = settings.chunking
        self.settings = settings

    def report(self) -> InferenceReport:
        return InferenceReport(
            chunks=self.latencies_ms.count + (self._current is not None),
            latency_p50_ms=self.latencies_ms.percentile(50),
            latency_p95_ms=self.latencies_ms.percentile(95),
            latency_max_ms=self.latencies_ms.max(),
            delay_history=self.planner.delays.history,
            inference_delay_estimate=self.planner.delays.estimate(),
            execution_horizon=self.last_execution_horizon,
            delay_clamps=self.planner.delay_clamps,
            waiting_for_observation=self.waiting_for_observation,
            failures=self.failures,
            emulated_latency_ms=self.settings.emulated_latency_s * 1e3,
            actions_clipped=self.actions_clipped,
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                chunk = self.step()
            except Exception as error:  # noqa: BLE001 - a failed inference must not kill the thread
                # The controller keeps executing the current chunk and then holds (underrun);
                # the planner's pending request is dropped so that the next one can start.
                self.failures += 1
                self.error = error
                _LOG.exception("inference failed; the controller holds after the current chunk")
                self.planner.abandon_pending()
                chunk = None
            if chunk is None:
                self._stop.wait(self._poll_period_s)


def _tensors(observation: Mapping[str, Any]) -> dict[str, Any]:
    """The observation with its arrays as torch tensors (sharing memory), as policies take it."""
    return {
        key: torch.as_tensor(value) if isinstance(value, np.ndarray) else value
        for key, value in observation.items()
    }
