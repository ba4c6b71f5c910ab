"""The controller's fixed-rate loop: one tick of Algorithm 1 every period, never blocking.

Each tick reads the newest chunk from a lock-free slot, lets the
:class:`~rtc_ros.core.scheduler.ChunkExecutor` pick the action that is due, passes it through the
:class:`~rtc_ros.runtime.command_filter.CommandFilter` and hands the command to a sink (a ROS
publisher, a simulator). The loop sleeps until absolute deadlines, so timing errors do not
accumulate; when it falls more than a period behind it restarts its schedule from now rather
than bursting to catch up (a robot must not receive a volley of stale commands).

It runs in a thread of the caller's process, or, because torch inference in the same process
costs a Python thread several milliseconds of jitter through the GIL, in a process of its own
(:class:`ControlProcess`) that exchanges chunks and state through shared memory. That process
never outlives its parent: the kernel sends it SIGTERM when the parent dies (Linux), and each
tick checks that the parent is still its parent; it then stops commanding and removes the
shared memory, which the dead parent can no longer do.

The loop sends nothing until the robot's command subscription is connected (when the sink can
tell): commands published before it matched would be lost, and the robot's first command
would then be several rate-limited steps away from where it stands.

While it runs, the loop's thread has the real-time settings it was given
(:mod:`rtc_ros.runtime.realtime`: SCHED_FIFO priority, CPU affinity, locked memory; refusals
are logged once and the loop runs without them), and the garbage collector is kept out of the
ticks: frozen and disabled, it collects at safe points, right after a tick has sent its command.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import multiprocessing
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable
from multiprocessing import shared_memory
from typing import Any, Protocol

import numpy as np

from rtc_ros.core.handover import (
    SharedMemorySlot,
    shared_chunk_slot,
    shared_executor_spec_slot,
    shared_state_slot,
    stateless,
)
from rtc_ros.core.scheduler import (
    Chunk,
    ChunkExecutor,
    ControllerState,
    ExecutorSpec,
    TickResult,
    new_run_id,
)
from rtc_ros.runtime.command_filter import CommandFilter, JointLimits
from rtc_ros.runtime.realtime import (
    GarbageCollectorGuard,
    RealtimeSettings,
    RealtimeStatus,
    realtime,
)
from rtc_ros.runtime.stats import RollingStats

_LOG = logging.getLogger(__name__)


class StopSignal(Protocol):
    """What ends :meth:`ControlLoop.run`: a ``threading.Event`` or
    the control process's condition.
    """

    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool: ...


class Slot(Protocol):
    def publish(self, item) -> None: ...
    def latest(self): ...


CommandSink = Callable[[np.ndarray], None]


_MAX_CPU_IN_MASK = 52


@dataclasses.dataclass(frozen=True)
class ControllerReport:
    """Counters and timing of the control loop, as published for diagnostics."""

    ticks: int = 0
    commands_published: int = 0
    swaps: int = 0
    underruns: int = 0
    rejected_actions: int = 0
    rejected_chunks: int = 0
    """Chunks planned for another controller run or epoch (see ChunkExecutor)."""
    clamped_commands: int = 0
    overruns: int = 0
    period_error_p50_ms: float = float("nan")
    period_error_p99_ms: float = float("nan")
    period_error_max_ms: float = float("nan")
    underrun_active: bool = False
    thread_priority: int = 0
    """SCHED_FIFO priority the loop's thread got; 0: normal scheduling; -1: unknown (a separate
    controller node, which reports its own)."""
    cpu_affinity_mask: int = 0
    """Bit i set: the loop's thread may run on CPU i (CPUs 0-52, exact in shared memory's float64;
    0 before the loop started)."""
    memory_locked: bool = False
    realtime_refused: bool = False
    """A real-time setting asked for was refused (the log says which, and how to allow it)."""
    garbage_collections: int = 0
    """Collections the loop ran at its safe points (automatic collection is off while it runs)."""

    @property
    def cpu_affinity(self) -> tuple[int, ...]:
        """The CPUs in :attr:`cpu_affinity_mask`."""
        return tuple(
            cpu for cpu in range(_MAX_CPU_IN_MASK + 1) if self.cpu_affinity_mask >> cpu & 1
        )

    paused_ticks: int = 0
    seam_step_p50_rad: float = float("nan")
    """Largest joint step of the command at a chunk swap (the first action of the new chunk against
    the last command of the previous one in the same epoch); p50 of the last 1000 seams."""
    seam_step_max_rad: float = float("nan")
    in_chunk_step_p50_rad: float = float("nan")
    """The same between two actions of one chunk; p50 of the last 3000 ticks."""

    def to_array(self) -> np.ndarray:
        return np.array(dataclasses.astuple(self), dtype=np.float64)

    @classmethod
    def from_array(cls, values: np.ndarray) -> ControllerReport:
        kinds = [f.type for f in dataclasses.fields(cls)]
        fields: list[Any] = [
            bool(v) if k in ("bool", bool) else int(v) if k in ("int", int) else float(v)
            for k, v in zip(kinds, values)
        ]
        return cls(*fields)


_REPORT_WORDS = len(dataclasses.fields(ControllerReport))


@dataclasses.dataclass(frozen=True)
class ControlMode:
    """What the inference side asks of the control loop, read at every tick.

    Each new ``request`` (a number that increases) begins a new epoch of the loop's executor:
    every chunk is dropped and nothing is executed until a chunk planned in that epoch arrives;
    ``holding`` (the robot is being reset) also stops planning.
    """

    request: int
    holding: bool

    def to_array(self) -> np.ndarray:
        return np.array([self.request, self.holding], dtype=np.float64)

    @classmethod
    def from_array(cls, values: np.ndarray) -> ControlMode:
        return cls(int(values[0]), bool(values[1]))


class ControlLoop:
    def __init__(
        self,
        period_s: float,
        executor: ChunkExecutor,
        chunks: Slot,
        states: Slot,
        command_filter: CommandFilter,
        command_sink: CommandSink,
        on_tick: Callable[[TickResult, np.ndarray | None], None] | None = None,
        robot_connected: Callable[[], bool] | None = None,
        executor_specs: Slot | None = None,
        realtime_settings: RealtimeSettings = RealtimeSettings.off(),
        on_safe_point: Callable[[], None] | None = None,
        safe_point_period_s: float = 0.2,
        period_errors_ms: RollingStats | None = None,
        modes: Slot | None = None,
        measured_positions: Callable[[], np.ndarray | None] | None = None,
        on_realtime_applied: Callable[[RealtimeStatus], None] | None = None,
    ) -> None:
        """``robot_connected``: True once the robot's command subscription has matched the sink's
        publisher; the loop waits for it before its first tick. ``executor_specs``: where a new
        :class:`ExecutorSpec` arrives while running (a new s_min for the synchronous baseline's
        pause); the executor takes it at the next tick. ``on_safe_point`` runs every
        ``safe_point_period_s`` right after a tick has sent its command, after the garbage
        collection (e.g. to publish :meth:`report`); ``period_errors_ms`` keeps the period errors
        elsewhere (shared memory). ``modes``: where the inference side publishes
        :class:`ControlMode` (hold and resume). ``measured_positions``: the robot's newest
        measured joint positions (None before the first); the first command of each epoch is
        rate limited from them, not from the last command sent, which the robot may never
        have reached (a reset, commands sent before it listened). ``on_realtime_applied``
        is called once per :meth:`run`, from the loop's thread before its first tick, with what
        the system granted (e.g. for a node to log it); without it a refusal is logged as a
        warning on this module's logger.
        """
        if not period_s > 0:
            raise ValueError(f"period_s must be > 0, got {period_s}")
        self.period_s = period_s
        self.executor = executor
        self._chunks, self._states = chunks, states
        self.command_filter = command_filter
        self._command_sink = command_sink
        self._on_tick = on_tick
        self._robot_connected = robot_connected
        self._executor_specs = executor_specs
        self.realtime_settings = realtime_settings
        self.realtime_status = RealtimeStatus()
        self._on_safe_point = on_safe_point
        self._safe_point_period_s = safe_point_period_s
        self._garbage = GarbageCollectorGuard()
        self.period_errors_ms = RollingStats() if period_errors_ms is None else period_errors_ms
        self._modes = modes
        self._mode_request = 0
        self._measured_positions = measured_positions
        self._on_realtime_applied = on_realtime_applied
        self._epoch_started = True
        self.ticks = 0
        self.commands_published = 0
        self.overruns = 0
        self.errors = 0
        self._underrun_active = False
        self.seam_steps_rad = RollingStats(window=1000)
        self.in_chunk_steps_rad = RollingStats(window=3000)
        self._last_command: np.ndarray | None = None
        self._last_index = -1

    def step(self) -> TickResult:
        """One tick: newest chunk -> due action -> safety filter -> sink; then publish state."""
        if self._executor_specs is not None:
            spec = self._executor_specs.latest()
            if spec is not None and spec is not self.executor.spec:
                self.executor.reconfigure(spec)
        mode = None if self._modes is None else self._modes.latest()
        if mode is not None and mode.request != self._mode_request:
            self._mode_request = mode.request
            self.executor.begin_epoch(mode.holding)
            self._epoch_started = True
        result = self.executor.tick(self._chunks.latest())
        if result.action is not None and self._epoch_started:
            self._start_from_measured_positions()
        command = None if result.action is None else self.command_filter.apply(result.action)
        if command is not None:
            self._command_sink(command)
            self.commands_published += 1
            self._record_step(result, command)
        self._states.publish(self.executor.state)
        self._underrun_active = result.underrun
        self.ticks += 1
        if self._on_tick is not None:
            self._on_tick(result, command)
        return result

    def _start_from_measured_positions(self) -> None:
        self._epoch_started = False
        self._last_command = None  # the first command of an epoch starts from the robot: no seam
        measured = None if self._measured_positions is None else self._measured_positions()
        if measured is not None and np.all(np.isfinite(measured)):
            self.command_filter.reset(measured)

    def _record_step(self, result: TickResult, command: np.ndarray) -> None:
        """Seam continuity as the robot receives it: command steps at swaps and inside chunks."""
        if self._last_command is not None and result.chunk_index >= 0:
            step_rad = float(np.max(np.abs(command - self._last_command)))
            if result.swapped:
                self.seam_steps_rad.add(step_rad)
            elif self._last_index >= 0:
                self.in_chunk_steps_rad.add(step_rad)
        self._last_command, self._last_index = command, result.chunk_index

    def run(self, stop: StopSignal, duration_s: float | None = None) -> None:
        """Tick at absolute deadlines until ``stop`` is set (or ``duration_s`` elapsed).

        The calling thread has the real-time settings for that time, and the garbage collector
        runs only at safe points; both are undone on return.
        """
        if self._robot_connected is not None:
            while not self._robot_connected():
                if stop.wait(0.01):
                    return
        with realtime(self.realtime_settings) as status:
            self.realtime_status = status
            if self._on_realtime_applied is not None:
                self._on_realtime_applied(status)
            elif status.warning:
                _LOG.warning(status.warning)
            self._garbage.start()
            try:
                self._tick_until(stop, duration_s)
            finally:
                self._garbage.stop()

    def _tick_until(self, stop: StopSignal, duration_s: float | None) -> None:
        start = time.monotonic()
        deadline = start
        next_safe_point = start + self._safe_point_period_s
        while not stop.is_set():
            now = time.monotonic()
            if duration_s is not None and now - start >= duration_s:
                break
            if now < deadline:
                time.sleep(deadline - now)
                now = time.monotonic()
            self.period_errors_ms.add((now - deadline) * 1e3)
            try:
                self.step()
                if (
                    now >= next_safe_point
                ):  # the command is out; the next deadline is a period away
                    next_safe_point = now + self._safe_point_period_s
                    self._garbage.collect()
                    if self._on_safe_point is not None:
                        self._on_safe_point()
            except Exception:  # noqa: BLE001 - a failing sink must not stop the robot's loop for good
                self.errors += 1
                if self.errors == 1 or self.errors % 500 == 0:
                    _LOG.exception("control tick failed (%d so far)", self.errors)
            deadline += self.period_s
            if time.monotonic() - deadline > self.period_s:
                self.overruns += 1
                deadline = time.monotonic()

    def report(self) -> ControllerReport:
        return ControllerReport(
            ticks=self.ticks,
            commands_published=self.commands_published,
            swaps=self.executor.swaps,
            underruns=self.executor.underruns,
            rejected_actions=self.command_filter.rejected_actions,
            rejected_chunks=self.executor.rejected_chunks,
            clamped_commands=self.command_filter.clamped_commands,
            overruns=self.overruns,
            period_error_p50_ms=self.period_errors_ms.percentile(50),
            period_error_p99_ms=self.period_errors_ms.percentile(99),
            period_error_max_ms=self.period_errors_ms.max(),
            underrun_active=self._underrun_active,
            thread_priority=self.realtime_status.thread_priority,
            cpu_affinity_mask=sum(
                1 << cpu for cpu in self.realtime_status.cpu_affinity if cpu <= _MAX_CPU_IN_MASK
            ),
            memory_locked=self.realtime_status.memory_locked,
            realtime_refused=bool(self.realtime_status.refused),
            garbage_collections=self._garbage.collections,
            paused_ticks=self.executor.paused_ticks,
            seam_step_p50_rad=self.seam_steps_rad.percentile(50),
            seam_step_max_rad=self.seam_steps_rad.max(),
            in_chunk_step_p50_rad=self.in_chunk_steps_rad.percentile(50),
        )


def shared_report_slot(name: str, create: bool = False) -> SharedMemorySlot[ControllerReport]:
    def encode(report: ControllerReport, out: np.ndarray) -> None:
        out[:] = report.to_array()

    return SharedMemorySlot(
        name, _REPORT_WORDS, encode, stateless(ControllerReport.from_array), create
    )


def shared_mode_slot(name: str, create: bool = False) -> SharedMemorySlot[ControlMode]:
    def encode(mode: ControlMode, out: np.ndarray) -> None:
        out[:] = mode.to_array()

    return SharedMemorySlot(name, 2, encode, stateless(ControlMode.from_array), create)


def shared_positions_slot(
    name: str, joints: int, create: bool = False
) -> SharedMemorySlot[np.ndarray]:
    """Measured joint positions, from the node to the control process."""

    def encode(positions: np.ndarray, out: np.ndarray) -> None:
        out[:] = positions

    return SharedMemorySlot(name, joints, encode, stateless(np.copy), create)


@dataclasses.dataclass(frozen=True)
class ControlProcessSpec:
    """Everything the control process needs; picklable so that it survives ``spawn``."""

    period_s: float
    chunk_shape: tuple[int, int]
    limits: JointLimits
    executor: ExecutorSpec
    """How chunks are executed: from :meth:`rtc_ros.core.config.ChunkingConfig.executor_spec`."""
    make_sink: Callable[[], CommandSink]
    """Called in the child process (e.g. creates a ROS publisher there); must be picklable.
    The sink's ``close()``, if it has one, is called when the loop stops; its ``connected()``,
    if it has one, gates the first tick (see :class:`ControlLoop`)."""
    initial_positions: tuple[float, ...] | None = None
    report_period_s: float = 0.2
    realtime: RealtimeSettings = RealtimeSettings()
    """Applied to the control process (it runs nothing else, so its memory is locked too)."""


class ControlProcess:
    """The control loop in a process of its own, with chunks, state and reports in shared memory.

    The parent publishes chunks with :meth:`publish_chunk` and reads :meth:`controller_state`
    and :meth:`report`; all three are lock-free shared-memory slots.
    """

    def __init__(self, spec: ControlProcessSpec) -> None:
        prefix = f"rtc_{uuid.uuid4().hex[:10]}"
        self._names = (
            f"{prefix}_c",
            f"{prefix}_s",
            f"{prefix}_r",
            f"{prefix}_e",
            f"{prefix}_p",
            f"{prefix}_m",
            f"{prefix}_q",
        )
        self._chunks = shared_chunk_slot(self._names[0], spec.chunk_shape, create=True)
        self._states = shared_state_slot(self._names[1], create=True)
        self._reports = shared_report_slot(self._names[2], create=True)
        self._executor_specs = shared_executor_spec_slot(self._names[3], create=True)
        self._executor_specs.publish(spec.executor)
        self._period_errors_memory = shared_memory.SharedMemory(
            self._names[4], create=True, size=8 * (_PERIOD_ERROR_WINDOW + 1)
        )
        self._period_errors: RollingStats | None = _shared_period_errors(
            self._period_errors_memory
        )
        self._final_period_errors = np.empty(0)
        self._modes = shared_mode_slot(self._names[5], create=True)
        self._positions = shared_positions_slot(self._names[6], spec.chunk_shape[1], create=True)
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._process = context.Process(
            target=_control_process_main,
            args=(spec, self._names, self._stop, os.getpid()),
            name="rtc_control_loop",
            daemon=True,
        )
        self._final_report: ControllerReport | None = None

    def start(self) -> None:
        # Born with SIGINT ignored (the disposition survives exec, and Python then installs no
        # KeyboardInterrupt handler), so a Ctrl-C to the process group during the child's
        # imports cannot kill it half-started; the parent stops it through the event.
        try:
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:  # not the main thread: the child ignores SIGINT once it runs
            self._process.start()
            return
        try:
            self._process.start()
        finally:
            signal.signal(signal.SIGINT, previous)

    def publish_chunk(self, chunk: Chunk) -> None:
        self._chunks.publish(chunk)

    def reconfigure(self, executor: ExecutorSpec) -> None:
        """Execute chunks by ``executor`` from the loop's next tick on."""
        self._executor_specs.publish(executor)

    def set_mode(self, mode: ControlMode) -> None:
        self._modes.publish(mode)

    def publish_measured_positions(self, positions: np.ndarray) -> None:
        self._positions.publish(positions)

    def latest(self) -> Chunk | None:
        return self._chunks.latest()

    def controller_state(self) -> ControllerState | None:
        return self._states.latest()

    def report(self) -> ControllerReport:
        if self._final_report is not None:
            return self._final_report
        return self._reports.latest() or ControllerReport()

    def period_errors_ms(self) -> np.ndarray:
        """The loop's recent period errors (ms), oldest first, read from its shared memory."""
        if self._period_errors is None:
            return self._final_period_errors
        return self._period_errors.values()

    def is_alive(self) -> bool:
        return self._process.is_alive()

    @property
    def shared_memory_names(self) -> tuple[str, ...]:
        """The segments in /dev/shm: chunks, state, reports, executor spec, period errors,
        modes, measured positions.
        """
        return self._names

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def exitcode(self) -> int | None:
        """None while running; negative: killed by that signal."""
        return self._process.exitcode

    def stop(self, timeout_s: float = 5.0) -> int | None:
        """Stop the loop (it sends nothing afterwards) and release shared memory; the exit code."""
        self._stop.set()
        if self._process.pid is not None:
            self._process.join(timeout_s)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
        self._final_report = self.report()
        self._final_period_errors = self.period_errors_ms()
        self._period_errors = (
            None  # its arrays are views of the memory: released before closing it
        )
        for slot in (
            self._chunks,
            self._states,
            self._reports,
            self._executor_specs,
            self._modes,
            self._positions,
        ):
            slot.close()
        self._period_errors_memory.close()
        self._period_errors_memory.unlink()
        return self._process.exitcode


_PR_SET_PDEATHSIG = 1


class _StopOrOrphaned:
    """The control process's stop condition: the parent's event, SIGTERM, or the parent gone.

    PR_SET_PDEATHSIG turns the parent's death into SIGTERM at once (it fires when the parent's
    thread that started this process ends, so the parent keeps that thread: its main thread or an
    executor thread). ``getppid()`` changing is checked as well, on every tick: it covers the
    window before prctl ran and systems without it.
    """

    def __init__(self, event, parent_pid: int) -> None:
        self._event, self._parent_pid = event, parent_pid
        self.orphaned = False
        self.terminated = False
        signal.signal(signal.SIGTERM, self._on_sigterm)
        if sys.platform.startswith("linux"):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    def _on_sigterm(self, signum, frame) -> None:
        self.terminated = True

    def is_set(self) -> bool:
        if os.getppid() != self._parent_pid:
            self.orphaned = True
        return self.orphaned or self.terminated or self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        time.sleep(timeout or 0.0)
        return self.is_set()


_PERIOD_ERROR_WINDOW = 3000


def _shared_period_errors(memory: shared_memory.SharedMemory) -> RollingStats:
    return RollingStats(
        _PERIOD_ERROR_WINDOW, np.ndarray((_PERIOD_ERROR_WINDOW + 1,), np.float64, memory.buf)
    )


def _control_process_main(
    spec: ControlProcessSpec, names: tuple[str, ...], stop_event, parent_pid: int
) -> None:
    # Ctrl-C reaches the whole process group; the parent decides when the loop stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = _StopOrOrphaned(stop_event, parent_pid)
    if stop.is_set():
        return
    chunks = shared_chunk_slot(names[0], spec.chunk_shape)
    states = shared_state_slot(names[1])
    reports = shared_report_slot(names[2])
    executor_specs = shared_executor_spec_slot(names[3])
    modes = shared_mode_slot(names[5])
    positions = shared_positions_slot(names[6], spec.chunk_shape[1])
    command_filter = CommandFilter(spec.limits)
    command_filter.reset(
        None if spec.initial_positions is None else np.asarray(spec.initial_positions)
    )
    period_errors_memory = shared_memory.SharedMemory(names[4])
    sink = spec.make_sink()
    # Reports are published by the loop itself at its safe points: a reporter thread would
    # compete with the ticks for the GIL, without the loop's priority.
    loop = ControlLoop(
        spec.period_s,
        ChunkExecutor(spec.executor, new_run_id()),
        chunks,
        states,
        command_filter,
        sink,
        robot_connected=getattr(sink, "connected", None),
        executor_specs=executor_specs,
        modes=modes,
        measured_positions=positions.latest,
        realtime_settings=spec.realtime,
        on_safe_point=lambda: reports.publish(loop.report()),
        safe_point_period_s=spec.report_period_s,
        period_errors_ms=_shared_period_errors(period_errors_memory),
    )
    try:
        loop.run(stop)
    finally:
        reports.publish(loop.report())
        if hasattr(sink, "close"):
            sink.close()
        if stop.orphaned or stop.terminated:
            _LOG.error(
                "control process: parent %d %s; stopped commanding",
                parent_pid,
                "died" if stop.orphaned else "sent SIGTERM",
            )
        for slot in (chunks, states, reports, executor_specs, modes, positions):
            # An orphan removes the shared memory its dead parent created and can no longer remove.
            slot.close(unlink=stop.orphaned)
        del loop.period_errors_ms  # its arrays are views of the memory: released before closing it
        period_errors_memory.close()
        if stop.orphaned:
            period_errors_memory.unlink()
