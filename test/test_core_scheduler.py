import logging

import numpy as np
import pytest

from rtc_ros.core import (
    INITIAL_CONTROLLER_STATE,
    Chunk,
    ChunkExecutor,
    ChunkingConfig,
    ControllerState,
    DelayEstimator,
    InferencePlanner,
    new_run_id,
)
from rtc_ros.core.simulated_time import SimulatedTimeLoop

H = 12


def _index_chunks(request):
    """A chunk whose action k is the tick it is meant for: executed values reveal the indexing."""
    return np.arange(request.request_tick, request.request_tick + H, dtype=float)[:, None]


def _run(loop, ticks):
    loop.start()
    executed = []
    for _ in range(ticks):
        result = loop.tick()
        executed.append(result)
        loop.after_world_step()
    return executed


@pytest.mark.parametrize("seed", range(5))
def test_random_delays_never_skip_or_repeat_an_action(seed):
    rng = np.random.default_rng(seed)
    planner = InferencePlanner(H, min_execution_horizon=4, delay_window=10)
    executor = ChunkExecutor()
    loop = SimulatedTimeLoop(
        executor, planner, _index_chunks, lambda r: 0 if r.warmup else int(rng.integers(0, H // 2))
    )
    executed = [r for r in _run(loop, 500) if not r.underrun]
    values = [float(r.action[0]) for r in executed]
    assert values == list(range(len(values)))
    assert executor.swaps > 40 and executor.underruns == 0


def test_swap_continues_at_the_action_that_corresponds_to_now():
    planner = InferencePlanner(H, min_execution_horizon=5)
    executor = ChunkExecutor()
    loop = SimulatedTimeLoop(executor, planner, _index_chunks, lambda r: 0 if r.warmup else 3)
    results = _run(loop, 40)
    first_of_each_chunk = [r.chunk_index for r in results if r.swapped][1:]
    assert len(first_of_each_chunk) >= 5 and set(first_of_each_chunk) == {3}
    assert set(planner.delays.history) == {3}


def test_execution_horizon_is_max_of_delay_and_s_min():
    requests = []
    planner = InferencePlanner(H, min_execution_horizon=3)
    loop = SimulatedTimeLoop(
        ChunkExecutor(), planner, _index_chunks, lambda r: 0 if r.warmup else 5
    )
    original = loop.after_world_step

    def record():
        request = original()
        if request is not None:
            requests.append(request)

    loop.after_world_step = record
    _run(loop, 60)
    steady = requests[2:]
    assert steady and all(r.execution_horizon == 5 and r.inference_delay == 5 for r in steady)


def test_underrun_holds_the_last_action_and_is_counted():
    planner = InferencePlanner(H, min_execution_horizon=4)
    executor = ChunkExecutor()
    delays = iter([0, 10] + [2] * 100)
    loop = SimulatedTimeLoop(executor, planner, _index_chunks, lambda r: next(delays))
    results = _run(loop, 40)
    # the chunk requested at tick 4 takes 10 ticks: the first chunk runs out after tick 11,
    # ticks 12 and 13 hold its last action, tick 14 executes the new chunk's action 10
    assert [r.underrun for r in results[11:15]] == [False, True, True, False]
    assert executor.underruns == 2
    assert [float(r.action[0]) for r in results[11:15]] == [11, 11, 11, 14]
    assert results[14].chunk_index == 10


def test_nothing_is_commanded_before_the_first_chunk():
    executor = ChunkExecutor()
    result = executor.tick(None)
    assert result.action is None and executor.state == INITIAL_CONTROLLER_STATE


def test_synchronous_execution_pauses_the_clock_while_waiting():
    config = ChunkingConfig(method="sync")
    executor = ChunkExecutor(config.executor_spec(min_execution_horizon=4))
    planner = InferencePlanner(H, min_execution_horizon=4)
    loop = SimulatedTimeLoop(executor, planner, _index_chunks, lambda r: 0 if r.warmup else 3)
    results = _run(loop, 28)
    moving = [float(r.action[0]) for r in results if not r.paused]
    assert moving == list(range(len(moving)))
    assert sum(r.paused for r in results) == executor.paused_ticks > 0
    # 4 actions, then 3 paused ticks: 4 of every 7 ticks move
    assert len(moving) == 16


def test_synchronous_pause_follows_a_new_min_execution_horizon_without_stalling():
    config = ChunkingConfig(method="sync")
    executor = ChunkExecutor(config.executor_spec(min_execution_horizon=4))
    planner = InferencePlanner(H, min_execution_horizon=4)
    loop = SimulatedTimeLoop(executor, planner, _index_chunks, lambda r: 0 if r.warmup else 3)
    _run(loop, 14)
    # What the inference worker and the controller each take from one accepted change.
    planner.reconfigure(6)
    executor.reconfigure(config.executor_spec(min_execution_horizon=6))
    results = _run(loop, 36)
    # 6 actions, then 3 paused ticks while inference runs; the clock never stalls for good
    assert "".join("p" if r.paused else "m" for r in results) == "mmmmmmppp" * 4
    moving = [float(r.action[0]) for r in results if not r.paused]
    assert moving == list(range(int(moving[0]), int(moving[0]) + len(moving)))


def test_delay_estimate_is_the_max_of_the_last_window():
    estimator = DelayEstimator(window=3, initial=2)
    assert estimator.estimate() == 2
    for delay in (1, 5, 2, 2, 3):
        estimator.record(delay)
    assert estimator.history == (2, 2, 3) and estimator.estimate() == 3


def test_warmup_delay_is_excluded_from_the_history():
    planner = InferencePlanner(H, min_execution_horizon=4, delay_window=10)
    delays = iter([7] + [2] * 100)
    loop = SimulatedTimeLoop(ChunkExecutor(), planner, _index_chunks, lambda r: next(delays))
    _run(loop, 30)
    assert planner.delays.history and set(planner.delays.history) == {2}


def test_delay_is_clamped_to_the_overlap_with_a_warning(caplog):
    planner = InferencePlanner(8, min_execution_horizon=6, initial_delay=5)
    executing = Chunk(np.zeros((8, 1)), start_tick=0, sequence=0)
    state = ControllerState(tick=6, sequence=0, start_tick=0, observed_delay=0)
    planner.ready(ControllerState(0, -1, 0, 0))
    planner.plan(ControllerState(0, -1, 0, 0), None)
    assert planner.ready(state)
    with caplog.at_level(logging.WARNING):
        request = planner.plan(state, executing)
    assert request.inference_delay == 2 and planner.delay_clamps == 1
    assert "unguided region" in caplog.text


def test_executor_accepts_batched_chunks():
    executor = ChunkExecutor()
    chunk = Chunk(np.arange(2 * H * 3, dtype=float).reshape(2, H, 3), start_tick=0, sequence=0)
    result = executor.tick(chunk)
    assert result.action.shape == (2, 3) and np.array_equal(result.action, chunk.actions[:, 0])


def test_temporal_ensembling_averages_every_prediction_for_the_tick():
    config = ChunkingConfig(method="temporal_ensembling")
    executor = ChunkExecutor(config.executor_spec(2))
    first = Chunk(np.zeros((4, 1)), start_tick=0, sequence=0)
    executor.tick(first)
    second = Chunk(np.ones((4, 1)), start_tick=1, sequence=1)
    result = executor.tick(second)
    w = np.exp(-config.ensembling.decay * np.arange(2))
    assert float(result.action[0]) == pytest.approx(w[1] / w.sum())


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(prediction_horizon=8, min_execution_horizon=8), "s_min"),
        (dict(prediction_horizon=8, min_execution_horizon=0), "s_min"),
        (dict(prediction_horizon=0, min_execution_horizon=1), "prediction_horizon"),
        (dict(prediction_horizon=8, min_execution_horizon=2, delay_window=0), "delay window"),
    ],
)
def test_bad_planner_arguments_raise_value_error(kwargs, name):
    with pytest.raises(ValueError, match=name):
        InferencePlanner(**kwargs)


def test_chunk_actions_are_read_only_copies():
    source = np.zeros((4, 2))
    chunk = Chunk(source, 0, 0)
    source[0, 0] = 1.0
    assert chunk.actions[0, 0] == 0.0
    with pytest.raises(ValueError):
        chunk.actions[0, 0] = 2.0


def test_executor_rejects_a_chunk_planned_for_another_run_once_and_keeps_its_own():
    executor = ChunkExecutor(run_id=7)
    own = Chunk(np.zeros((H, 1)), start_tick=0, sequence=0, run_id=7)
    executor.tick(own)
    foreign = Chunk(np.ones((H, 1)), start_tick=0, sequence=5, run_id=8)
    results = [executor.tick(foreign) for _ in range(3)]
    assert all(float(r.action[0]) == 0.0 for r in results)
    assert executor.rejected_chunks == 1 and executor.swaps == 1
    assert executor.state.run_id == 7 and executor.state.sequence == 0


def test_a_new_epoch_discards_the_executing_chunk_and_rejects_chunks_planned_before_it():
    executor = ChunkExecutor(run_id=3)
    before = Chunk(np.zeros((H, 1)), start_tick=0, sequence=0, run_id=3)
    executor.tick(before)
    executor.begin_epoch()
    assert executor.tick(before).action is None and executor.rejected_chunks == 1
    assert executor.state.epoch == 1 and executor.state.sequence == -1
    after = Chunk(np.ones((H, 1)), start_tick=executor.state.tick, sequence=1, run_id=3, epoch=1)
    assert float(executor.tick(after).action[0]) == 1.0


def test_planner_drops_a_pending_chunk_when_the_controller_restarts_and_plans_for_the_new_run():
    planner = InferencePlanner(H, min_execution_horizon=4)
    old = ControllerState(tick=10, sequence=-1, start_tick=0, observed_delay=0, run_id=1)
    assert planner.ready(old)
    pending = planner.plan(old, None)
    restarted = ControllerState(tick=0, sequence=-1, start_tick=0, observed_delay=0, run_id=2)
    assert planner.ready(restarted)
    request = planner.plan(restarted, pending.chunk(np.zeros((H, 1))))
    assert (request.run_id, request.request_tick, request.warmup) == (2, 0, True)
    assert planner.delays.history == ()


def test_run_ids_are_distinct_and_exact_in_float64():
    ids = {new_run_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(0 < i < 2**53 and int(float(i)) == i for i in ids)


def test_after_an_underrun_the_next_chunk_starts_fresh_without_a_clamp_warning(caplog):
    planner = InferencePlanner(8, min_execution_horizon=4, initial_delay=3)
    executing = Chunk(np.zeros((8, 1)), start_tick=0, sequence=0)
    planner.ready(ControllerState(0, -1, 0, 0))
    planner.plan(ControllerState(0, -1, 0, 0), None)
    ran_out = ControllerState(tick=10, sequence=0, start_tick=0, observed_delay=0)
    assert planner.ready(ran_out)
    with caplog.at_level(logging.WARNING):
        request = planner.plan(ran_out, executing)
    assert request.warmup and request.request_tick == 10
    assert planner.delay_clamps == 0 and "H - s" not in caplog.text


def test_a_hold_executes_nothing_and_the_release_takes_only_a_chunk_planned_after_it():
    executor = ChunkExecutor()
    executor.tick(Chunk(np.ones((H, 1)), start_tick=0, sequence=0))
    executor.begin_epoch(holding=True)
    stale = Chunk(
        np.full((H, 1), 7.0), start_tick=1, sequence=1, epoch=0
    )  # planned before the hold
    held = [executor.tick(stale) for _ in range(3)]
    assert (
        all(r.action is None for r in held)
        and executor.state.holding
        and executor.state.sequence == -1
    )
    executor.begin_epoch()
    assert executor.tick(stale).action is None and not executor.state.holding
    fresh = Chunk(
        np.full((H, 1), 3.0),
        start_tick=executor.state.tick,
        sequence=2,
        epoch=executor.state.epoch,
    )
    result = executor.tick(fresh)
    assert result.swapped and result.chunk_index == 0 and float(result.action[0]) == 3.0


def test_the_planner_plans_nothing_while_holding_and_a_fresh_chunk_after_the_release():
    planner = InferencePlanner(H, min_execution_horizon=4)
    executor = ChunkExecutor()
    loop = SimulatedTimeLoop(executor, planner, _index_chunks, lambda r: 0 if r.warmup else 2)
    _run(loop, 10)
    executing = executor.current
    executor.begin_epoch(holding=True)
    assert not planner.ready(executor.state)
    executor.begin_epoch()
    assert planner.ready(executor.state)
    request = planner.plan(executor.state, executing)
    assert request.warmup and request.epoch == 2 and request.inference_delay == 0


def test_a_stale_observation_starts_its_chunk_at_the_tick_it_saw():
    planner = InferencePlanner(H, min_execution_horizon=4)
    executing = Chunk(np.arange(H, dtype=float)[:, None], start_tick=0, sequence=0)
    planner.ready(ControllerState(0, -1, 0, 0))
    planner.plan(ControllerState(0, -1, 0, 0), None)
    state = ControllerState(tick=6, sequence=0, start_tick=0, observed_delay=0)
    assert planner.ready(state)
    request = planner.plan(state, executing, observation_age_ticks=2)
    # Seen at tick 4: 4 actions executed by then, the frozen prefix continues from action 4.
    assert (request.request_tick, request.execution_horizon) == (4, 4)
    assert float(request.unexecuted[0, 0]) == 4.0
    executor = ChunkExecutor()
    executor.tick(executing)
    for _ in range(8):
        executor.tick(executing)
    chunk = request.chunk(np.full((H, 1), 100.0) + np.arange(H)[:, None])
    result = executor.tick(chunk)
    # Swapped at tick 9: the action for tick 9 of a chunk that starts at tick 4.
    assert result.swapped and result.chunk_index == 5 and float(result.action[0]) == 105.0
    assert executor.state.observed_delay == 5


def test_an_observation_older_than_the_executing_chunk_is_dated_at_its_start():
    planner = InferencePlanner(H, min_execution_horizon=4)
    executing = Chunk(np.zeros((H, 1)), start_tick=10, sequence=0)
    planner.ready(ControllerState(0, -1, 0, 0))
    planner.plan(ControllerState(0, -1, 0, 0), None)
    state = ControllerState(tick=15, sequence=0, start_tick=10, observed_delay=0)
    assert planner.ready(state)
    request = planner.plan(state, executing, observation_age_ticks=40)
    assert (request.request_tick, request.execution_horizon) == (10, 0)


def test_a_fresh_chunk_starts_now_whatever_the_observation_age():
    planner = InferencePlanner(H, min_execution_horizon=4)
    state = ControllerState(tick=30, sequence=-1, start_tick=0, observed_delay=0)
    assert planner.ready(state)
    request = planner.plan(state, None, observation_age_ticks=3)
    assert request.warmup and request.request_tick == 30


def test_observations_a_few_ticks_old_still_never_skip_or_repeat_an_action():
    planner = InferencePlanner(H, min_execution_horizon=4)
    executor = ChunkExecutor()
    loop = SimulatedTimeLoop(
        executor, planner, _index_chunks, lambda r: 0 if r.warmup else 2, observation_age_ticks=3
    )
    executed = [r.action for r in _run(loop, 40)]
    assert [float(a[0]) for a in executed] == list(range(40))
    assert executor.swaps > 3 and set(planner.delays.history) == {5}
