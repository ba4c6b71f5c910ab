"""python -m rtc_ros.demo in a small configuration: the whole system over
real DDS, episodes and resets.
"""

import json

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")
pytest.importorskip("rtc_ros.msg", reason="rtc_ros messages are not built (run scripts/setup.sh)")

from test_launch_support import small_policy_checkpoint  # noqa: E402

from rtc_ros import demo  # noqa: E402


def test_episodes_complete_and_the_controller_holds_through_every_reset(tmp_path):
    code = demo.main(
        [
            "--episodes",
            "2",
            "--policy",
            small_policy_checkpoint(),
            "--emulated-latency-ms",
            "100",
            "--output",
            str(tmp_path),
            "--record",
        ]
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert code == 0 and summary["ok"], summary["failure"]
    assert summary["episodes_completed"] == 2 and isinstance(summary["episodes_succeeded"], int)
    assert summary["emulated_latency_ms"] == 100.0 and summary["chunk_latency_ms"]["p50"] >= 100.0
    # Nothing reached the robot while it was reset; each episode began with a fresh, unguided
    # chunk.
    assert summary["commands_sent_during_resets"] == 0
    assert summary["fresh_chunks"] >= 2
    assert (tmp_path / "joints.png").stat().st_size > 0
    assert (tmp_path / "delays.png").stat().st_size > 0
    # --record: the bag holds the run, holds included, and plots as the demo does.
    from rtc_ros.plot import plot_bag

    found = plot_bag(tmp_path / "run.mcap", tmp_path / "from_bag", arm="left", period_s=0.02)
    assert found["/commands"] > 0 and found["/rtc/chunks"] >= 2
    assert found["/rtc/hold"] >= 2  # held and released around each reset
    assert (tmp_path / "from_bag" / "joints.png").stat().st_size > 0
