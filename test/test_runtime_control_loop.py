import dataclasses
import multiprocessing
import queue
import threading
import time

import numpy as np
import pytest

from rtc_ros.core import AtomicSlot, Chunk, ChunkExecutor
from rtc_ros.runtime.command_filter import CommandFilter, JointLimits
from rtc_ros.runtime.control_loop import ControlLoop, ControlProcess, ControlProcessSpec, ControllerReport

H = 10
LIMITS = JointLimits(("a", "b"), (-10.0, -10.0), (10.0, 10.0), (1.0, 1.0))


def _ramp_chunk(sequence: int, start_tick: int) -> Chunk:
    ticks = np.arange(start_tick, start_tick + H, dtype=float) * 0.01
    return Chunk(np.stack([ticks, -ticks], axis=1), start_tick, sequence)


def _loop(sent: list, period_s: float = 0.01):
    chunks, states = AtomicSlot(), AtomicSlot()
    command_filter = CommandFilter(LIMITS)
    command_filter.reset(np.zeros(2))
    return ControlLoop(period_s, ChunkExecutor(), chunks, states, command_filter, sent.append), chunks, states


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


def test_report_survives_the_shared_memory_encoding():
    report = ControllerReport(ticks=5, commands_published=4, underruns=1, period_error_p50_ms=0.1,
                              period_error_p99_ms=0.5, period_error_max_ms=0.7, underrun_active=True)
    assert ControllerReport.from_array(report.to_array()) == report


@dataclasses.dataclass(frozen=True)
class QueueSink:
    """Picklable sink factory: the control process puts every command on a queue."""

    commands: object

    def __call__(self):
        return self.commands.put


def test_control_process_executes_chunks_handed_over_through_shared_memory():
    commands = multiprocessing.get_context("spawn").Queue()
    process = ControlProcess(ControlProcessSpec(
        period_s=0.01, chunk_shape=(H, 2), limits=LIMITS, pause_after=None, make_sink=QueueSink(commands),
        initial_positions=(0.0, 0.0)))
    process.publish_chunk(_ramp_chunk(0, 0))
    process.start()
    try:
        deadline = time.monotonic() + 20
        while (process.controller_state() is None or process.controller_state().tick < 5) and \
                time.monotonic() < deadline:
            time.sleep(0.01)
        state = process.controller_state()
        assert state is not None and state.sequence == 0
        process.publish_chunk(_ramp_chunk(1, state.tick))
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
    assert len(first) >= 10 and np.allclose(np.diff(first[:H + 5]), 0.01)
    assert process.report().swaps == 2


def test_control_loop_rejects_a_non_positive_period():
    with pytest.raises(ValueError, match="period_s"):
        ControlLoop(0.0, ChunkExecutor(), AtomicSlot(), AtomicSlot(), CommandFilter(LIMITS), print)
