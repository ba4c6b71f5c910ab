"""The soak command in a small configuration: it runs, samples and judges (no timing asserted)."""

import json

import pytest

pytest.importorskip("rtc_ros.msg", reason="rtc_ros messages are not built (run scripts/setup.sh)")

from rtc_ros.bench import soak  # noqa: E402


def _sample(minute, rss_mb, fds=20):
    return {"minute": minute, "processes": {"rtc_node": {"rss_mb": rss_mb, "fds": fds}}}


def test_rss_growing_faster_than_the_limit_after_the_warm_up_is_a_leak():
    growing = [_sample(m, 300.0 + (m * 10.0 / 60.0 if m > 5 else 2.0 * m)) for m in range(1, 61)]
    leaks = soak.verdict(growing, warmup_minutes=5, max_rss_growth_mb_per_h=5.0, max_fd_growth=8)
    assert leaks["rtc_node"]["rss_leak"] and leaks["rtc_node"][
        "rss_growth_mb_per_h"
    ] == pytest.approx(10.0)
    flat = [
        _sample(m, 300.0 + (20.0 if m <= 5 else 0.0), fds=20 + (m > 30) * 9) for m in range(1, 61)
    ]
    leaks = soak.verdict(flat, warmup_minutes=5, max_rss_growth_mb_per_h=5.0, max_fd_growth=8)
    assert not leaks["rtc_node"]["rss_leak"] and leaks["rtc_node"]["fd_leak"]


def test_a_short_soak_samples_every_process_and_leaves_no_shared_memory(tmp_path):
    soak.main(["--minutes", "0.2", "--sample-period-s", "6", "--output", str(tmp_path)])
    result = json.loads((tmp_path / "soak.json").read_text())
    assert result["complete"] and len(result["samples"]) == 2
    assert {"sim_node", "rtc_node", "rtc_control"} <= set(result["samples"][-1]["processes"])
    assert any(path.startswith("/dev/shm/rtc_") for path in result["shm_entries_seen"])
    assert result["leftover_shm"] == [] and result["command_steps_above_limit"] == 0
    assert result["exit_codes"] == {"sim_node": 0, "rtc_node": 0}
    assert (tmp_path / "soak.png").is_file()
