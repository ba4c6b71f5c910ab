"""The in-process evaluation of the demo policy, as its command line runs it."""

from test_launch_support import small_policy_checkpoint

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
