"""The in-process evaluation of the demo policy, as its command line runs it."""

import numpy as np
import torch
from test_launch_support import small_policy_checkpoint

from rtc_ros.core.config import ChunkingConfig
from rtc_ros.policies.reference import ReferenceFlowPolicy
from rtc_ros.policies.registry import BIMANUAL_DEMO_CHECKPOINT
from rtc_ros.sim import train_demo_policy


def test_evaluate_reports_success_and_frozen_prefix_mismatch_of_a_checkpoint(capsys):
    train_demo_policy.main(
        [
            "--evaluate",
            "--output",
            small_policy_checkpoint(),
            "--eval-episodes",
            "1",
            "--eval-delay",
            "3",
            "--observation-age-ticks",
            "2",
        ]
    )
    printed = capsys.readouterr().out
    assert (
        "d=3: 0 of 1 episodes (0%, failed: 0)" in printed
        and "frozen-prefix mismatch p50" in printed
    )
    assert "command step p50 at seams" in printed


def test_rtc_continues_the_executing_chunk_where_naive_async_jumps_with_the_shipped_policy():
    torch.set_num_threads(1)
    policy = ReferenceFlowPolicy.load(BIMANUAL_DEMO_CHECKPOINT)
    results = {}
    for method in ("rtc_soft", "naive_async"):
        torch.manual_seed(0)
        results[method] = train_demo_policy.evaluate(
            policy, 1, 5, seed=7, config=ChunkingConfig(method=method, guidance="stop_gradient")
        )
    rtc, naive = results["rtc_soft"], results["naive_async"]
    # RTC's first d actions continue the previous chunk; naive async's are a new sample.
    assert max(rtc.frozen_prefix_mismatch_rad) < 0.1
    assert 3 * np.median(rtc.frozen_prefix_mismatch_rad) < np.median(
        naive.frozen_prefix_mismatch_rad
    )
    assert np.median(rtc.seam_steps_rad) < np.median(naive.seam_steps_rad)
