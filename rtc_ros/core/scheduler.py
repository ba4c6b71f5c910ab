"""Algorithm 1 of the paper as two tick-driven objects: the controller's executor and the
inference thread's planner.

Time is counted in controller ticks on one clock owned by the executor. A chunk carries the
tick at which its first action is due (``start_tick``: the tick at which its observation was
taken), so at clock ``T`` the controller executes ``actions[T - start_tick]``. A swap therefore
continues at exactly the action that corresponds to now: no action index is ever skipped or
repeated, whatever the delay was. The observed delay of a chunk is the clock at swap minus its
start tick (``t - s`` in Algorithm 1).

The clock stands still while there is nothing to execute by design (before the first chunk,
and in the synchronous baseline while it waits for inference); it runs on during an underrun,
because then the world keeps moving and the next chunk must be indexed by real time.

A tick count means something only on the clock it was read from. Each executor draws a run id
when it is created and counts epochs (bumped when it discards its chunks, e.g. at an episode
reset); a chunk carries the run id and epoch of the controller state it was planned from, and
an executor swaps in only chunks of its own run and epoch. A chunk planned on a previous
controller's clock (it restarted) or before a reset is rejected and counted, never executed.
While the robot is reset between two episodes the controller holds: a new epoch in which
nothing is executed and the planner plans nothing; the release starts another epoch, whose
first chunk is made fresh, without guidance toward a chunk of the previous episode.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import secrets
from collections.abc import Callable

import numpy as np

_LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Chunk:
    """An immutable action chunk, (H, M) or batched (B, H, M), and when its first action is due."""

    actions: np.ndarray
    start_tick: int
    sequence: int
    inference_delay: int = 0
    """d that guidance assumed."""
    execution_horizon: int = 0
    """s: actions of the previous chunk consumed when this one was requested."""
    latency_s: float = 0.0
    run_id: int = 0
    """Run id and epoch of the controller state this chunk was planned from."""
    epoch: int = 0

    def __post_init__(self) -> None:
        actions = self.actions
        # A read-only float64 array is kept as it is: it is a view of another chunk, or of a
        # shared-memory reader's buffer that is never rewritten while a view of it lives
        # (core.handover); copying it again would cost the controller on every new chunk.
        if not (
            isinstance(actions, np.ndarray)
            and actions.dtype == np.float64
            and not actions.flags.writeable
        ):
            actions = np.array(actions, dtype=np.float64, copy=True)
        if actions.ndim < 2:
            raise ValueError(f"actions must be (H, M) or (B, H, M), got shape {actions.shape}")
        actions.setflags(write=False)
        object.__setattr__(self, "actions", actions)

    @classmethod
    def of_read_only_view(
        cls,
        actions: np.ndarray,
        start_tick: int,
        sequence: int,
        inference_delay: int,
        execution_horizon: int,
        latency_s: float,
        run_id: int,
        epoch: int,
    ) -> Chunk:
        """The chunk of ``actions``, a read-only float64 (H, M) array kept as it is.

        For the shared-memory reader (core.handover), which builds one chunk per new chunk on
        the controller's path: the caller guarantees what ``__post_init__`` checks, and the
        frozen dataclass's ``__init__`` (one ``object.__setattr__`` per field) would cost more
        than the rest of the read's decoding. Equal, field by field, to ``Chunk(...)``.
        """
        chunk = object.__new__(cls)
        object.__setattr__(
            chunk,
            "__dict__",
            {
                "actions": actions,
                "start_tick": start_tick,
                "sequence": sequence,
                "inference_delay": inference_delay,
                "execution_horizon": execution_horizon,
                "latency_s": latency_s,
                "run_id": run_id,
                "epoch": epoch,
            },
        )
        return chunk

    @property
    def prediction_horizon(self) -> int:
        return self.actions.shape[-2]


@dataclasses.dataclass(frozen=True)
class ControllerState:
    """What the controller tells the inference side after each tick (immutable snapshot)."""

    tick: int
    """Clock: the tick the controller will execute next."""
    sequence: int
    """Sequence of the chunk it executes, -1 before the first."""
    start_tick: int
    observed_delay: int
    """Clock at the swap to this chunk minus its start tick."""
    run_id: int = 0
    """The executor's run: tick counts of different runs are unrelated."""
    epoch: int = 0
    """Bumped each time the executor discards its chunks; chunks of earlier epochs are rejected."""
    holding: bool = False
    """Told to hold (the robot is being reset): nothing is executed or planned."""

    def plans(self, chunk: Chunk) -> bool:
        """True when ``chunk`` was planned from a state of this run and epoch."""
        return (chunk.run_id, chunk.epoch) == (self.run_id, self.epoch)


INITIAL_CONTROLLER_STATE = ControllerState(tick=0, sequence=-1, start_tick=0, observed_delay=0)


def new_run_id() -> int:
    """A random run id, nonzero and below 2**53 so that it survives a float64 round trip."""
    return 1 + secrets.randbelow(2**53 - 1)


@dataclasses.dataclass(frozen=True)
class TickResult:
    action: np.ndarray | None
    """Action to command now; None before the first chunk (command nothing)."""
    chunk_index: int
    """Index into the executing chunk, -1 when holding."""
    underrun: bool
    swapped: bool
    """A new chunk was swapped in since the previous tick (this tick is its first)."""
    paused: bool


@dataclasses.dataclass(frozen=True)
class TemporalEnsembling:
    """ACT's temporal ensembling: ``w_i = exp(-m i)``, i = 0 for the oldest prediction."""

    decay: float = 0.01
    max_chunks: int = 64


@dataclasses.dataclass(frozen=True)
class ExecutorSpec:
    """How a :class:`ChunkExecutor` executes chunks; picklable, so a control process builds it.

    Made from a method by :meth:`rtc_ros.core.config.ChunkingConfig.executor_spec`.
    """

    pause_after: int | None = None
    """Synchronous baseline: hold after this many actions of a chunk and stop the clock until
    the next chunk arrives; None runs each chunk to its end."""
    ensembling: TemporalEnsembling | None = None
    """Execute ACT's weighted average of every chunk covering the tick; None: the newest chunk."""

    def __post_init__(self) -> None:
        if self.pause_after is not None and self.pause_after < 1:
            raise ValueError(f"pause_after must be >= 1 or None, got {self.pause_after}")


class ChunkExecutor:
    """The controller's side: picks the newest chunk and the action that is due at each tick.

    Costs a few microseconds per tick, allocates little, and never blocks: it only reads the
    newest chunk it is handed.
    """

    def __init__(self, spec: ExecutorSpec = ExecutorSpec(), run_id: int = 0) -> None:
        """``run_id``: identifies this executor's clock
        (:func:`new_run_id`); chunks must carry it.
        """
        self.spec = spec
        self._current: Chunk | None = None
        self._ensemble: collections.deque[Chunk] = collections.deque(
            maxlen=spec.ensembling.max_chunks if spec.ensembling else 1
        )
        self._last_action: np.ndarray | None = None
        self._state = dataclasses.replace(INITIAL_CONTROLLER_STATE, run_id=run_id)
        self._swapped_since_tick = False
        self._last_rejected: Chunk | None = None
        self.swaps = 0
        self.underruns = 0
        self.paused_ticks = 0
        self.rejected_chunks = 0
        """Chunks of another run or epoch that were offered and not executed (each counted
        once)."""

    @property
    def state(self) -> ControllerState:
        return self._state

    def reconfigure(self, spec: ExecutorSpec) -> None:
        """Execute by ``spec`` from the next tick on; the chunks received so far are kept.

        The synchronous baseline's pause follows a new s_min at once, so that the clock never
        stands still at a tick where the planner waits for it to move on.
        """
        self._ensemble = collections.deque(
            self._ensemble, maxlen=spec.ensembling.max_chunks if spec.ensembling else 1
        )
        self.spec = spec

    @property
    def current(self) -> Chunk | None:
        return self._current

    def receive(self, newest: Chunk | None) -> bool:
        """Swap to ``newest`` if it is a new chunk; True when it swapped.

        The swap alone already updates :attr:`state` (sequence, observed delay), so that the
        inference side can plan the next chunk from ``t = d`` as Algorithm 1 does.
        """
        if (
            newest is None
            or newest is self._last_rejected
            or (
                self._current is not None
                and newest.sequence == self._current.sequence
                and self._state.plans(newest)
            )
        ):
            return False
        if not self._state.plans(newest):
            self._last_rejected = newest
            self.rejected_chunks += 1
            _LOG.warning(
                "rejected chunk %d: planned for run %d epoch %d, this controller is run %d epoch "
                "%d",
                newest.sequence,
                newest.run_id,
                newest.epoch,
                self._state.run_id,
                self._state.epoch,
            )
            return False
        clock = self._state.tick
        self._current = newest
        self._ensemble.append(newest)
        self.swaps += 1
        self._swapped_since_tick = True
        self._publish(clock, newest, max(0, clock - newest.start_tick))
        return True

    def tick(self, newest: Chunk | None) -> TickResult:
        """Execute one tick given the newest published chunk (may be the one executing)."""
        self.receive(newest)
        swapped, self._swapped_since_tick = self._swapped_since_tick, False
        chunk = self._current
        if chunk is None:
            return TickResult(None, -1, underrun=False, swapped=False, paused=True)
        clock, observed_delay = self._state.tick, self._state.observed_delay
        index = clock - chunk.start_tick
        horizon = chunk.prediction_horizon
        pause_after = self.spec.pause_after
        if pause_after is not None and index >= min(pause_after, horizon):
            self.paused_ticks += 1
            return TickResult(self._last_action, -1, underrun=False, swapped=swapped, paused=True)
        self._publish(clock + 1, chunk, observed_delay)
        if 0 <= index < horizon:
            ensembling = self.spec.ensembling
            action = (
                self._ensembled(clock, ensembling) if ensembling else chunk.actions[..., index, :]
            )
            self._last_action = action
            return TickResult(action, index, underrun=False, swapped=swapped, paused=False)
        self.underruns += 1
        return TickResult(self._last_action, -1, underrun=True, swapped=swapped, paused=False)

    def begin_epoch(self, holding: bool = False) -> None:
        """Discard the executing chunk and reject every chunk planned before now (an episode
        reset): nothing is executed until a chunk planned in the new epoch arrives, and none is
        planned while ``holding``.
        """
        self._current = None
        self._ensemble.clear()
        self._last_action = None
        self._swapped_since_tick = False
        self._state = ControllerState(
            self._state.tick, -1, 0, 0, self._state.run_id, self._state.epoch + 1, holding
        )

    def _publish(self, tick: int, chunk: Chunk, observed_delay: int) -> None:
        self._state = ControllerState(
            tick,
            chunk.sequence,
            chunk.start_tick,
            observed_delay,
            self._state.run_id,
            self._state.epoch,
            self._state.holding,
        )

    def _ensembled(self, clock: int, ensembling: TemporalEnsembling) -> np.ndarray:
        covering = [c for c in self._ensemble if 0 <= clock - c.start_tick < c.prediction_horizon]
        weights = np.exp(-ensembling.decay * np.arange(len(covering)))
        stacked = np.stack([c.actions[..., clock - c.start_tick, :] for c in covering])
        return np.tensordot(weights / weights.sum(), stacked, axes=1)


class DelayEstimator:
    """d = max of the last ``window`` observed delays (the paper's
    Q), or ``initial`` when empty.
    """

    def __init__(self, window: int = 10, initial: int = 0) -> None:
        if window < 1:
            raise ValueError(f"delay window must be >= 1, got {window}")
        if initial < 0:
            raise ValueError(f"initial delay must be >= 0, got {initial}")
        self._history: collections.deque[int] = collections.deque(maxlen=window)
        self._initial = initial

    def record(self, delay: int) -> None:
        if delay < 0:
            raise ValueError(f"observed delay must be >= 0, got {delay}")
        self._history.append(int(delay))

    @property
    def history(self) -> tuple[int, ...]:
        return tuple(self._history)

    def estimate(self) -> int:
        return max(self._history) if self._history else self._initial


@dataclasses.dataclass(frozen=True)
class InferenceRequest:
    """One inference to run: from the observation at ``request_tick``."""

    request_tick: int
    sequence: int
    execution_horizon: int
    """s: actions of the executing chunk consumed by now."""
    inference_delay: int
    """d for guidance, already clamped to H - s."""
    unexecuted: np.ndarray | None
    """A_cur[s:], (..., H - s, M); None for the warm-up chunk."""
    run_id: int = 0
    epoch: int = 0

    @property
    def warmup(self) -> bool:
        return self.unexecuted is None

    def chunk(self, actions: np.ndarray, latency_s: float = 0.0) -> Chunk:
        """The chunk this request produced, stamped with the controller run it was planned for."""
        return Chunk(
            actions,
            self.request_tick,
            self.sequence,
            self.inference_delay,
            self.execution_horizon,
            latency_s,
            self.run_id,
            self.epoch,
        )


class InferencePlanner:
    """The inference side of Algorithm 1: when to start, s, d, and the delay history Q."""

    def __init__(
        self,
        prediction_horizon: int,
        min_execution_horizon: int,
        delay_window: int = 10,
        initial_delay: int = 0,
        on_delay_clamped: Callable[[int, int], None] | None = None,
    ) -> None:
        if prediction_horizon < 1:
            raise ValueError(f"prediction_horizon must be >= 1, got {prediction_horizon}")
        self.prediction_horizon = prediction_horizon
        self.reconfigure(min_execution_horizon)
        self.delays = DelayEstimator(delay_window, initial_delay)
        self._on_delay_clamped = on_delay_clamped or _warn_delay_clamped
        self._pending: InferenceRequest | None = None
        self._next_sequence = 0
        self.delay_clamps = 0

    def reconfigure(self, min_execution_horizon: int) -> None:
        """Start the next inference after ``min_execution_horizon`` actions of a chunk."""
        if not 1 <= min_execution_horizon < self.prediction_horizon:
            raise ValueError(
                "min_execution_horizon (s_min) must be in [1, "
                f"prediction_horizon={self.prediction_horizon}), "
                f"got {min_execution_horizon}"
            )
        self.min_execution_horizon = min_execution_horizon

    def ready(self, state: ControllerState) -> bool:
        """True when the next inference should start (t >= s_min on the chunk being executed)."""
        if self._pending is not None:
            if (state.run_id, state.epoch) != (self._pending.run_id, self._pending.epoch):
                # The controller restarted or discarded its chunks: the pending one will never run.
                self._pending = None
            elif state.sequence != self._pending.sequence:
                return False  # the controller has not picked up the last chunk yet
            else:
                self._complete(state)
        if state.holding:
            return False
        if state.sequence < 0:
            return True  # nothing executes yet: make the warm-up chunk
        return state.tick - state.start_tick >= self.min_execution_horizon

    def plan(
        self, state: ControllerState, executing: Chunk | None, observation_age_ticks: int = 0
    ) -> InferenceRequest:
        """Start an inference now: s = t, A_prev = A_cur[s:], d = max(Q) clamped to H - s.

        ``observation_age_ticks``: controller ticks executed since the observation was taken.
        The policy plans from the world as observed, so the chunk starts at the observation's
        tick, and s counts the actions executed by then: its first action continues the
        executing chunk where the observation saw it, and its observed delay (hence d) includes
        the observation's age. A fresh chunk starts now: nothing moved while nothing executed.
        """
        if observation_age_ticks < 0:
            raise ValueError(f"observation_age_ticks must be >= 0, got {observation_age_ticks}")
        if self._pending is not None:
            raise RuntimeError("plan() called while the previous request is still pending")
        sequence = self._next_sequence
        self._next_sequence += 1
        if (
            state.sequence < 0
            or executing is None
            or not state.plans(executing)
            or state.tick - executing.start_tick >= self.prediction_horizon
        ):
            # Nothing of this run and epoch executes, or the executing chunk has run out (an
            # underrun): nothing is left to continue from, so a fresh chunk, as at start-up.
            request = InferenceRequest(state.tick, sequence, 0, 0, None, state.run_id, state.epoch)
        else:
            if executing.sequence != state.sequence:
                raise ValueError(
                    f"executing chunk {executing.sequence} is not the controller's chunk "
                    f"{state.sequence}"
                )
            executed = state.tick - executing.start_tick
            # An observation older than the executing chunk is dated at its start.
            observed_tick = state.tick - min(observation_age_ticks, executed)
            s = min(observed_tick - executing.start_tick, self.prediction_horizon)
            delay = self.delays.estimate()
            if delay > self.prediction_horizon - s:
                self.delay_clamps += 1
                self._on_delay_clamped(delay, self.prediction_horizon - s)
                delay = self.prediction_horizon - s
            request = InferenceRequest(
                observed_tick,
                sequence,
                s,
                delay,
                executing.actions[..., s:, :],
                state.run_id,
                state.epoch,
            )
        self._pending = request
        return request

    def abandon_pending(self) -> None:
        """Forget a planned request whose inference failed, so that the next one can be planned."""
        self._pending = None

    def _complete(self, state: ControllerState) -> None:
        if self._pending is not None and not self._pending.warmup:
            self.delays.record(state.observed_delay)
        self._pending = None


def _warn_delay_clamped(delay: int, limit: int) -> None:
    _LOG.warning(
        "inference delay estimate %d exceeds H - s = %d: the seam falls into the unguided "
        "region; lower min_execution_horizon or speed up inference",
        delay,
        limit,
    )
