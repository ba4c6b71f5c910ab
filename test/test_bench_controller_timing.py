import json

from rtc_ros.bench import controller_timing


def test_controller_timing_command_measures_each_placement_beside_busy_processes(tmp_path):
    controller_timing.main(
        [
            "--seconds",
            "2",
            "--rounds",
            "1",
            "--load",
            "1",
            "--placements",
            "thread,process_rt",
            "--output",
            str(tmp_path),
        ]
    )
    report = json.loads((tmp_path / "timing.json").read_text())
    assert set(report["results"]) == {"thread", "process_rt"}
    assert (
        report["settings"]["load_processes"] == 1 and (tmp_path / "timing.png").stat().st_size > 0
    )
    for result in report["results"].values():
        for metric in (
            "period_error_ms",
            "publish_jitter_ms",
            "arrival_jitter_ms",
            "arrival_interval_ms",
        ):
            figures = result[metric]
            assert figures["samples"] > 10, metric
            assert 0 <= figures["p50"] <= figures["p99"] <= figures["max"], metric
    segments = {p: r["segments"] for p, r in report["results"].items()}
    assert segments["thread"][0]["thread_priority"] == 0  # normal scheduling asked for
    rt = segments["process_rt"][0]
    assert rt["realtime_refused"] or (rt["thread_priority"] == 50 and rt["memory_locked"])
    assert all(s["commands_received"] <= s["commands_published"] for s in segments["thread"])
