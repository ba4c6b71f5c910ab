import json

from rtc_ros.bench import controller_timing


def test_controller_timing_command_reports_both_placements(tmp_path):
    output = tmp_path / "timing.json"
    controller_timing.main(["--seconds", "1", "--output", str(output)])
    results = {r["placement"]: r for r in json.loads(output.read_text())["results"]}
    assert set(results) == {"thread", "process"}
    for result in results.values():
        assert result["ticks"] > 10 and result["chunks"] >= 1
        assert 0 <= result["period_error_p50_ms"] <= result["period_error_p99_ms"] <= result["period_error_max_ms"]
