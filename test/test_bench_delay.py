"""Delay benchmark: exact delays in ticks, the metrics, and the quick mode's outputs."""

import csv
import dataclasses

import numpy as np
import pytest
import torch

from rtc_ros.bench import delay
from rtc_ros.bench.delay_harness import run_rollouts, smoothness, wilson_interval
from rtc_ros.bench.delay_policies import SHIPPED_CHECKPOINTS, load_task_policies
from rtc_ros.bench.tasks import TASKS, Task
from rtc_ros.core import ChunkingConfig

H = 8


@dataclasses.dataclass
class _DriftState:
    position: np.ndarray


class Drift(Task[_DriftState]):
    """A world that never ends an episode, so every tick's action is observable."""

    name = "drift"
    observation_dim = 1
    action_dim = 2
    episode_length = 40
    num_modes = 1
    num_decisions = 1
    action_noise_std = 0.0

    def _initial_state(self, batch_size, rng):
        return _DriftState(np.zeros((batch_size, 1)))

    def _advance(self, state, applied_actions):
        return _DriftState(state.position + applied_actions[:, :1])

    def _observe(self, state):
        return state.position

    def _expert(self, state, modes):
        return np.zeros((len(state.position), 2))

    def _succeeded(self, state):
        return np.zeros(len(state.position), dtype=bool)

    def _running(self, state):
        return np.ones(len(state.position), dtype=bool)


def tick_stamped_rollouts(method, inference_delay, execution_horizon):
    """Chunks whose action i is (tick it is planned for, tick of the request) / 100."""
    task = Drift()

    def generate(observation, unexecuted, d, s):
        batch = observation["state"].shape[0]
        planned_for = (task.tick + torch.arange(H, dtype=torch.float32)) / 100
        chunk = torch.stack([planned_for, torch.full((H,), task.tick / 100)], dim=-1)
        return chunk.expand(batch, H, 2)

    rollouts = run_rollouts(
        task,
        generate,
        ChunkingConfig(method=method),
        H,
        inference_delay,
        execution_horizon,
        rollouts=3,
        seed=0,
    )
    planned_for, requested_at = np.round(100 * rollouts.actions[0].T).astype(int)
    return rollouts, planned_for, requested_at


@pytest.mark.parametrize(
    "inference_delay, execution_horizon", [(0, 1), (1, 1), (2, 2), (3, 3), (4, 4), (1, 5)]
)
def test_async_execution_takes_each_tick_the_action_planned_from_a_chunk_requested_d_ticks_ago(
    inference_delay, execution_horizon
):
    rollouts, planned_for, requested_at = tick_stamped_rollouts(
        "naive_async", inference_delay, execution_horizon
    )
    ticks = np.arange(Drift.episode_length)
    np.testing.assert_array_equal(planned_for, ticks)  # no action skipped or repeated
    assert rollouts.request_ticks == tuple(range(0, Drift.episode_length, execution_horizon))
    # Each new chunk takes over exactly d ticks after its request (the warm-up chunk at tick 0).
    seams = np.flatnonzero(rollouts.seams)
    np.testing.assert_array_equal(seams - requested_at[seams], inference_delay)
    assert rollouts.underruns == 0 and not rollouts.paused.any()
    # The frozen prefix is compared with the previous chunk's actions for the same ticks: they
    # agree on the tick they were planned for and differ only in the request stamp, by s ticks.
    if inference_delay:
        assert rollouts.prefix_error == pytest.approx(execution_horizon / 100, abs=1e-6)


def test_sync_waits_d_ticks_with_zero_action_then_starts_the_new_chunk_at_its_first_action():
    rollouts, planned_for, requested_at = tick_stamped_rollouts("sync", 2, 3)
    actions = rollouts.actions[0]
    np.testing.assert_array_equal(planned_for[:3], [0, 1, 2])  # the warm-up chunk: no wait
    np.testing.assert_array_equal(actions[3:5], 0.0)  # inference from tick 3 takes 2 ticks
    assert (planned_for[5], requested_at[5]) == (3, 3)  # its first action, planned at tick 3
    # From then on: 3 actions, 2 paused ticks, and so on; the world stepped on every tick.
    np.testing.assert_array_equal(np.flatnonzero(rollouts.paused)[:6], [3, 4, 8, 9, 13, 14])
    np.testing.assert_array_equal(actions[rollouts.paused], 0.0)
    np.testing.assert_array_equal(planned_for[~rollouts.paused][:9], [0, 1, 2, 3, 4, 5, 8, 9, 10])


def test_wilson_interval_matches_known_values():
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(512, 1024) == pytest.approx((0.4695, 0.5305), abs=1e-4)
    with pytest.raises(ValueError, match="trials"):
        wilson_interval(0, 0)


def test_jerk_and_seam_jump_of_a_hand_made_step_in_the_actions():
    # Rollout 0: one unit step at tick 4, where a new chunk takes over. Rollout 1 ends after
    # tick 3, before the step, so it adds no seam and zero jerk.
    actions = np.zeros((2, 8, 1))
    actions[0, 4:] = 1.0
    running = np.ones((2, 8), dtype=bool)
    running[1, 4:] = False
    seams = np.zeros(8, dtype=bool)
    seams[4] = True
    metrics = smoothness(actions, running, seams)
    # Third differences of [0 0 0 0 1 1 1 1] at ticks 3..7: 0, 1, -2, 1, 0.
    assert metrics.jerk_mean == pytest.approx((0.8 + 0.0) / 2)
    assert metrics.jerk_max == pytest.approx((2.0 + 0.0) / 2)
    assert metrics.seam_jump_max == pytest.approx(1.0)
    assert metrics.seam_jump_mean == pytest.approx(1.0)
    assert metrics.step_mean == pytest.approx(0.0)


def test_full_sweep_uses_s_equal_max_d_1_and_sweeps_s_at_d_1_without_repeating_a_cell():
    assert delay.FULL_SWEEP.cells() == [
        (0, 1),
        (1, 1),
        (2, 2),
        (3, 3),
        (4, 4),
        (1, 2),
        (1, 3),
        (1, 4),
        (1, 5),
    ]
    with pytest.raises(ValueError, match="s \\+ d <= H"):
        dataclasses.replace(delay.FULL_SWEEP, delays=(0, 5))


def test_every_method_of_the_issue_is_benchmarked_with_both_guidance_modes():
    labels = {config.label for config in delay.METHODS}
    assert labels == {
        "sync",
        "naive_async",
        "temporal_ensembling",
        "bid",
        "rtc_hard/vjp",
        "rtc_hard/stop_gradient",
        "rtc_soft/vjp",
        "rtc_soft/stop_gradient",
    }


def test_shipped_checkpoints_load_into_the_current_reference_policy():
    # Changing ReferenceFlowPolicy's architecture makes them stale: the benchmark would then
    # retrain (minutes); remake them with `python -m rtc_ros.bench.delay train`.
    for task_name in TASKS:
        assert load_task_policies(SHIPPED_CHECKPOINTS, task_name) is not None


def test_quick_mode_writes_the_documented_csv_and_the_three_plots(tmp_path):
    if any(load_task_policies(SHIPPED_CHECKPOINTS, t) is None for t in delay.QUICK_SWEEP.tasks):
        pytest.fail("shipped checkpoints missing: python -m rtc_ros.bench.delay train")
    assert delay.main(["--output", str(tmp_path), "--quick"]) == 0
    with (tmp_path / "results.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert tuple(rows[0]) == delay.COLUMNS
    cells = {(r["task"], r["method"], int(r["delay"]), int(r["execution_horizon"])) for r in rows}
    assert len(cells) == len(rows) == (len(delay.METHODS) + 1) * len(delay.QUICK_SWEEP.cells())
    for row in rows:
        low, rate, high = (
            float(row["success_ci_low"]),
            float(row["success_rate"]),
            float(row["success_ci_high"]),
        )
        assert (
            0.0 <= low <= rate <= high <= 1.0
            and int(row["rollouts"]) == delay.QUICK_SWEEP.rollouts
        )
        assert int(row["underruns"]) == 0
    assert {r["method"] for r in rows} == {c.label for c in delay.METHODS} | {
        delay.EXPERT_REFERENCE
    }
    for name in ("success_vs_delay.png", "success_vs_execution_horizon.png", "trajectory.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "rtc_soft/vjp" in (tmp_path / "results.md").read_text()
