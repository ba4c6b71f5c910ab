"""python -m rtc_ros.bench.handover: the controller-side handover read, timed alone."""

import json

import pytest

from rtc_ros.bench import handover


def test_every_read_is_timed_and_the_report_says_how_it_ran(tmp_path, capsys):
    argv = [
        "--reads",
        "300",
        "--chunk-shape",
        "20",
        "6",
        "--thread-priority",
        "0",
        "--verify-checksum",
    ]
    assert handover.main([*argv, "--output", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "handover.json").read_text())
    assert set(report["handover_read_us"]) == {
        f"{slot}_{case}" for slot in handover.READS for case in ("unchanged", "new_chunk")
    }
    assert all(
        0 < read["median_us"] <= read["p99_us"] for read in report["handover_read_us"].values()
    )
    assert report["chunk_shape"] == [20, 6] and report["reads"] == 300
    assert report["realtime_applied"]["thread_priority"] == 0 and report["verify_checksum"]
    assert report["command"] == "python -m rtc_ros.bench.handover " + " ".join(
        [*argv, "--output", str(tmp_path)]
    )
    assert "shared_memory_slot_new_chunk" in capsys.readouterr().out


def test_a_read_count_below_one_is_refused():
    with pytest.raises(SystemExit) as exit_:
        handover.main(["--reads", "0"])
    assert exit_.value.code == 2
