"""python -m rtc_ros.bench.latency: three modes side by side, ratios to vanilla, handover reads."""

import json

import pytest

from rtc_ros.bench import latency
from rtc_ros.bench.latency_policies import LatencyConfig

MODES = ("vanilla", "stop_gradient", "vjp")


def run_bench(tmp_path, *args):
    assert (
        latency.main(
            [
                "--chunks",
                "3",
                "--warmup",
                "1",
                "--handover-reads",
                "200",
                "--output",
                str(tmp_path),
                *args,
            ]
        )
        == 0
    )
    return json.loads((tmp_path / "latency.json").read_text())


def test_reference_model_is_the_default_with_h50_m14_n5_batch1(tmp_path, capsys):
    report = run_bench(tmp_path)
    model, settings = report["model"], report["settings"]
    assert model["name"] == "reference"
    assert (model["prediction_horizon"], model["action_dim"]) == (50, 14)
    assert (settings["num_steps"], settings["batch_size"], settings["device"]) == (5, 1, "cpu")
    printed = capsys.readouterr().out
    assert all(mode in printed for mode in MODES) and "handover read" in printed


def test_report_has_latency_statistics_ratios_and_breakdown_for_every_mode(tmp_path):
    report = run_bench(tmp_path, "--model", "builtin-pi0", "--size", "tiny")
    assert set(report["modes"]) == set(MODES)
    for mode in MODES:
        result = report["modes"][mode]
        latency_ms = result["latency_ms"]
        assert result["chunks"] == 3
        assert 0 < latency_ms["p50"] <= latency_ms["p95"] <= latency_ms["max"]
        assert (
            result["breakdown_ms"]["prefix_p50"] > 0 and result["breakdown_ms"]["denoise_p50"] > 0
        )
        assert result["ratio_p50_to_vanilla"] == pytest.approx(
            latency_ms["p50"] / report["modes"]["vanilla"]["latency_ms"]["p50"]
        )
    assert report["modes"]["vanilla"]["ratio_p50_to_vanilla"] == 1.0
    assert report["modes"]["vanilla"]["breakdown_ms"]["guidance_p50"] == 0.0
    assert report["model"]["prefix_tokens"] > 0
    assert report["command"].startswith("python -m rtc_ros.bench.latency")


def test_handover_reads_are_timed_with_and_without_a_new_chunk(tmp_path):
    handover = run_bench(tmp_path, "--model", "builtin-pi0", "--size", "tiny")["handover_read_us"]
    assert set(handover) == {
        "atomic_slot_unchanged",
        "atomic_slot_new_chunk",
        "shared_memory_slot_unchanged",
        "shared_memory_slot_new_chunk",
    }
    assert all(0 < value["median_us"] <= value["p99_us"] for value in handover.values())


def test_core_sampler_can_be_measured_instead_of_the_compiled_one(tmp_path):
    report = run_bench(tmp_path, "--model", "builtin-pi0", "--size", "tiny", "--sampler", "core")
    assert report["settings"]["sampler"] == "core"
    assert set(report["modes"]) == set(MODES)


def test_invalid_settings_name_what_to_change():
    with pytest.raises(SystemExit):
        latency.main(["--execution-horizon", "50"])
    with pytest.raises(ValueError, match="inference_delay"):
        LatencyConfig(execution_horizon=40, inference_delay=20)
