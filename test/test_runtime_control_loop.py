import dataclasses
import gc
import multiprocessing
import os
import pathlib
import queue
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from rtc_ros.core import AtomicSlot, Chunk, ChunkExecutor, ChunkingConfig, ExecutorSpec, Method
from rtc_ros.runtime.command_filter import CommandFilter, JointLimits
from rtc_ros.runtime.control_loop import (
    ControllerReport,
    ControlLoop,
    ControlMode,
    ControlProcess,
    ControlProcessSpec,
)

H = 10
LIMITS = JointLimits(("a", "b"), (-10.0, -10.0), (10.0, 10.0), (1.0, 1.0))


def _ramp_chunk(sequence: int, start_tick: int, run_id: int = 0) -> Chunk:
    ticks = np.arange(start_tick, start_tick + H, dtype=float) * 0.01
    return Chunk(np.stack([ticks, -ticks], axis=1), start_tick, sequence, run_id=run_id)


def _loop(sent: list, period_s: float = 0.01, modes=None, measured_positions=None):
    chunks, states = AtomicSlot(), AtomicSlot()
    command_filter = CommandFilter(LIMITS)
    command_filter.reset(np.zeros(2))
    return (
        ControlLoop(
            period_s,
            ChunkExecutor(),
            chunks,
            states,
            command_filter,
            sent.append,
            modes=modes,
            measured_positions=measured_positions,
        ),
        chunks,
        states,
    )


def test_nothing_is_sent_before_the_first_chunk():
    sent = []
    loop, _, states = _loop(sent)
    loop.step()
    assert sent == [] and states.latest().sequence == -1


def test_each_tick_sends_the_due_action_and_publishes_the_state():
    sent = []
    loop, chunks, states = _loop(sent)
    chunks.publish(_ramp_chunk(0, 0))
    for _ in range(3):
        loop.step()
    assert np.allclose(np.array(sent)[:, 0], [0.0, 0.01, 0.02])
    assert states.latest().tick == 3 and states.latest().sequence == 0


def test_the_loop_keeps_its_rate_and_records_period_errors():
    sent = []
    loop, chunks, _ = _loop(sent, period_s=0.01)
    chunks.publish(Chunk(np.zeros((1000, 2)), 0, 0))
    loop.run(threading.Event(), duration_s=0.5)
    report = loop.report()
    assert 40 <= report.ticks <= 51 and report.commands_published == report.ticks
    assert report.period_error_p50_ms >= 0 and report.period_error_max_ms < 100


def test_the_garbage_collector_stays_out_of_the_ticks_and_collects_at_safe_points():
    collector_enabled = []
    loop = ControlLoop(
        0.01,
        ChunkExecutor(),
        AtomicSlot(),
        AtomicSlot(),
        CommandFilter(LIMITS),
        print,
        on_tick=lambda result, command: collector_enabled.append(gc.isenabled()),
        safe_point_period_s=0.05,
    )
    loop.run(threading.Event(), duration_s=0.5)
    assert collector_enabled and not any(collector_enabled)
    assert loop.report().garbage_collections >= 5 and gc.isenabled()


def test_report_survives_the_shared_memory_encoding():
    report = ControllerReport(
        ticks=5,
        commands_published=4,
        underruns=1,
        period_error_p50_ms=0.1,
        period_error_p99_ms=0.5,
        period_error_max_ms=0.7,
        underrun_active=True,
        thread_priority=50,
        cpu_affinity_mask=0b101,
        memory_locked=True,
        paused_ticks=3,
        seam_step_p50_rad=0.02,
        seam_step_max_rad=0.05,
        in_chunk_step_p50_rad=0.01,
    )
    assert ControllerReport.from_array(report.to_array()) == report
    assert report.cpu_affinity == (0, 2)


@dataclasses.dataclass(frozen=True)
class QueueSink:
    """Picklable sink factory: the control process puts every command on a queue."""

    commands: object

    def __call__(self):
        return self.commands.put


@dataclasses.dataclass(frozen=True)
class NullSink:
    def __call__(self):
        return _discard


def _discard(command) -> None:
    pass


def _running(pid: str) -> bool:
    """True while the process exists and is not a zombie (an orphan's reaper may be slow)."""
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_control_process_executes_chunks_handed_over_through_shared_memory():
    commands = multiprocessing.get_context("spawn").Queue()
    process = ControlProcess(
        ControlProcessSpec(
            period_s=0.01,
            chunk_shape=(H, 2),
            limits=LIMITS,
            executor=ExecutorSpec(),
            make_sink=QueueSink(commands),
            initial_positions=(0.0, 0.0),
        )
    )
    process.start()
    try:
        deadline = time.monotonic() + 20
        while process.controller_state() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        run_id = (
            process.controller_state().run_id
        )  # chunks must be planned on this process's clock
        process.publish_chunk(_ramp_chunk(0, 0, run_id))
        while process.controller_state().tick < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        state = process.controller_state()
        assert state.sequence == 0 and run_id != 0
        process.publish_chunk(_ramp_chunk(1, state.tick, run_id))
        time.sleep(0.2)
    finally:
        assert process.stop() == 0
    received = []
    while True:
        try:
            received.append(commands.get(timeout=1.0))
        except queue.Empty:
            break
    first = np.array(received)[:, 0]
    # every tick's action is 0.01 * tick, across the swap as well: no skipped or repeated action
    assert len(first) >= 10 and np.allclose(np.diff(first[: H + 5]), 0.01)
    report = process.report()
    assert report.swaps == 2
    # The default real-time settings, as applied in the child (or refused there, and said so).
    assert report.realtime_refused or (report.thread_priority == 50 and report.memory_locked)
    assert report.garbage_collections >= 1 and len(process.period_errors_ms()) == report.ticks


def test_control_loop_rejects_a_non_positive_period():
    with pytest.raises(ValueError, match="period_s"):
        ControlLoop(0.0, ChunkExecutor(), AtomicSlot(), AtomicSlot(), CommandFilter(LIMITS), print)


def _process_commands(
    spec, first: Chunk, second_actions: np.ndarray
) -> tuple[np.ndarray, Chunk, Chunk]:
    """Run a control process on ``first``; once it is a few ticks in, hand over a second chunk
    starting at the controller's clock. Every command it sent, and both chunks as sent.
    """
    commands = multiprocessing.get_context("spawn").Queue()
    process = ControlProcess(
        ControlProcessSpec(
            period_s=0.01,
            chunk_shape=first.actions.shape,
            limits=LIMITS,
            executor=spec,
            make_sink=QueueSink(commands),
            initial_positions=(0.0, 0.0),
        )
    )
    process.start()
    try:
        deadline = time.monotonic() + 20
        while process.controller_state() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        # Chunks are planned on the control process's clock: they carry its run id.
        first = dataclasses.replace(first, run_id=process.controller_state().run_id)
        process.publish_chunk(first)
        while process.controller_state().tick < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)  # the synchronous baseline pauses here, the others run on
        second = Chunk(second_actions, process.controller_state().tick, 1, run_id=first.run_id)
        process.publish_chunk(second)
        while process.controller_state().sequence != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        swapped_at = process.report().ticks  # the report lags by up to report_period_s
        while process.report().ticks < swapped_at + 20 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        assert process.stop() == 0
    received = []
    while True:
        try:
            received.append(commands.get(timeout=1.0))
        except queue.Empty:
            break
    return np.array(received), first, second


def _in_process_actions(
    spec, first: Chunk, second: Chunk, ticks: int, swap_tick: int
) -> np.ndarray:
    """What :class:`ChunkExecutor` commands in this process when
    ``second`` arrives at ``swap_tick``.
    """
    executor = ChunkExecutor(spec, run_id=first.run_id)
    return np.array(
        [executor.tick(second if t >= swap_tick else first).action for t in range(ticks)]
    )


def _matches_in_process(spec, first, second, received) -> bool:
    """Whether ``received`` is what the executor commands in this process for some swap tick."""
    return any(
        np.allclose(received, _in_process_actions(spec, first, second, len(received), swap_tick))
        for swap_tick in range(1, len(received) - 10)
    )


@pytest.mark.parametrize("method", list(Method), ids=lambda m: m.value)
def test_every_method_runs_in_the_control_process_as_in_process(method):
    horizon, min_execution_horizon = 40, 4
    spec = ChunkingConfig(method=method).executor_spec(min_execution_horizon)
    ramp = np.arange(horizon, dtype=float)[:, None] * [0.01, -0.01]
    received, first, second = _process_commands(spec, Chunk(ramp, 0, 0), ramp + 0.5)
    assert _matches_in_process(spec, first, second, received)
    if method in (Method.SYNC, Method.TEMPORAL_ENSEMBLING):
        assert not _matches_in_process(ExecutorSpec(), first, second, received)


def test_temporal_ensembling_in_the_control_process_averages_overlapping_chunks():
    horizon = 40
    spec = ChunkingConfig(method=Method.TEMPORAL_ENSEMBLING).executor_spec(4)
    ramp = np.arange(horizon, dtype=float)[:, None] * [0.01, -0.01]
    received, _, second = _process_commands(spec, Chunk(ramp, 0, 0), ramp + 0.5)
    # While both chunks cover a tick, the command lies between their actions, at ACT's weights
    # exp(-m i) (oldest prediction i = 0): (1, e^-m) normalised for the two chunks here.
    newest_weight = np.exp(-spec.ensembling.decay) / (1.0 + np.exp(-spec.ensembling.decay))
    ticks = np.arange(second.start_tick, min(horizon, len(received)))
    blended = (1 - newest_weight) * ramp[ticks] + newest_weight * second.actions[
        ticks - second.start_tick
    ]
    assert np.any(np.all(np.isclose(received[ticks], blended), axis=1))


def test_control_process_stops_and_removes_the_shared_memory_when_its_parent_dies():
    """The parent is a short-lived process that starts the control process and is killed."""
    code = (
        "import os, signal, sys, time\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from test_runtime_control_loop import *\n"
        "if __name__ == '__main__':\n"
        "    process = ControlProcess(ControlProcessSpec(0.01, (H, 2), LIMITS, ExecutorSpec(), "
        "NullSink(),\n"
        "                                                (0.0, 0.0)))\n"
        "    process.start()\n"
        "    while process.controller_state() is None:\n"
        "        time.sleep(0.01)\n"
        "    print(process.pid, *process.shared_memory_names, flush=True)\n"
        "    time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code, str(pathlib.Path(__file__).parent)],
        stdout=subprocess.PIPE,
        text=True,
    )
    child, *names = parent.stdout.readline().split()
    assert all(os.path.exists(f"/dev/shm/{name}") for name in names)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while (
        _running(child) or any(os.path.exists(f"/dev/shm/{n}") for n in names)
    ) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(child)
    assert not any(os.path.exists(f"/dev/shm/{name}") for name in names)


def test_the_control_process_takes_a_new_synchronous_pause_while_running():
    commands = multiprocessing.get_context("spawn").Queue()
    process = ControlProcess(
        ControlProcessSpec(
            period_s=0.01,
            chunk_shape=(H, 2),
            limits=LIMITS,
            executor=ExecutorSpec(pause_after=4),
            make_sink=QueueSink(commands),
            initial_positions=(0.0, 0.0),
        )
    )
    process.start()

    def paused_at(ticks: int) -> int:
        while process.report().ticks < ticks and time.monotonic() < deadline:
            time.sleep(0.01)
        return process.controller_state().tick

    try:
        deadline = time.monotonic() + 20
        while process.controller_state() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        process.publish_chunk(_ramp_chunk(0, 0, process.controller_state().run_id))
        first_pause = paused_at(20)
        process.reconfigure(ExecutorSpec(pause_after=6))
        second_pause = paused_at(process.report().ticks + 30)
    finally:
        assert process.stop() == 0
    while True:
        try:
            commands.get(timeout=1.0)
        except queue.Empty:
            break
    assert (first_pause, second_pause) == (4, 6)


def test_a_hold_stops_commanding_at_once_and_a_resume_starts_from_the_measured_positions():
    sent, modes, measured = [], AtomicSlot(), AtomicSlot()
    loop, chunks, states = _loop(sent, modes=modes, measured_positions=measured.latest)
    chunks.publish(_ramp_chunk(0, 0))
    loop.step()
    modes.publish(ControlMode(request=1, holding=True))
    for _ in range(3):
        loop.step()
    assert len(sent) == 1 and states.latest().holding
    measured.publish(np.array([5.0, 5.0]))  # the robot was reset meanwhile
    modes.publish(ControlMode(request=2, holding=False))
    loop.step()
    assert len(sent) == 1  # the chunk planned before the hold never runs
    chunks.publish(
        Chunk(np.full((H, 2), 8.0), states.latest().tick, 1, epoch=states.latest().epoch)
    )
    loop.step()
    assert np.allclose(sent[-1], [6.0, 6.0])  # rate limited (1.0 per tick) from the measured 5.0


def test_seams_and_in_chunk_steps_are_measured_apart():
    sent = []
    loop, chunks, states = _loop(sent)
    chunks.publish(Chunk(np.zeros((H, 2)), 0, 0))
    for _ in range(4):
        loop.step()
    chunks.publish(Chunk(np.full((H, 2), 0.5), 0, 1))
    for _ in range(4):
        loop.step()
    report = loop.report()
    assert report.seam_step_p50_rad == 0.5 and report.seam_step_max_rad == 0.5
    assert report.in_chunk_step_p50_rad == 0.0


def test_the_first_command_is_rate_limited_from_the_newest_measured_positions():
    sent, measured = [], [np.array([4.5, -4.5])]  # the robot moved since the filter was seeded
    loop, chunks, _ = _loop(sent, measured_positions=lambda: measured[-1])
    chunks.publish(Chunk(np.full((H, 2), [5.0, -5.0]), 0, 0))
    loop.step()
    measured.append(np.zeros(2))  # read once per epoch: later measurements change nothing
    loop.step()
    assert np.allclose(sent, [[5.0, -5.0], [5.0, -5.0]])
