"""The installed package: messages as specified, and the ament layout ros2 launch/run need."""

import os
import sys
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NODES = ["rtc_node", "controller_node", "inference_node", "sim_node", "recorder_node"]


def test_messages_have_the_specified_fields_and_types():
    msg = pytest.importorskip("rtc_ros.msg", reason="messages not built (run scripts/setup.sh)")
    expected = {
        msg.ActionChunk: {
            "header": "std_msgs/Header",
            "joint_names": "sequence<string>",
            "prediction_horizon": "uint32",
            "action_dim": "uint32",
            "actions": "sequence<float>",
            "start_tick": "int64",
            "run_id": "uint64",
            "epoch": "uint32",
            "inference_delay": "uint32",
            "execution_horizon": "uint32",
            "method": "string",
            "guidance": "string",
            "latency_ms": "float",
            "sequence": "uint64",
        },
        msg.ControllerTick: {
            "header": "std_msgs/Header",
            "tick": "int64",
            "run_id": "uint64",
            "epoch": "uint32",
            "chunk_sequence": "uint64",
            "chunk_start_tick": "int64",
            "observed_delay": "uint32",
            "period_s": "double",
            "commands_published": "uint64",
            "swaps": "uint64",
            "underruns": "uint64",
            "period_error_p50_ms": "float",
            "period_error_p99_ms": "float",
            "period_error_max_ms": "float",
        },
        msg.RtcStatus: {
            "header": "std_msgs/Header",
            "delay_history": "sequence<uint32>",
            "inference_delay_estimate": "uint32",
            "execution_horizon": "uint32",
            "chunk_latency_p50_ms": "float",
            "chunk_latency_p95_ms": "float",
            "chunk_latency_max_ms": "float",
            "swaps": "uint64",
            "underruns": "uint64",
            "commands_published": "uint64",
            "rejected_observations": "uint64",
            "controller_period_error_p50_ms": "float",
            "controller_period_error_p99_ms": "float",
            "controller_period_error_max_ms": "float",
            "device": "string",
            "method": "string",
            "controller_thread_priority": "int32",
            "controller_cpu_affinity": "sequence<uint16>",
            "controller_memory_locked": "boolean",
            "emulated_latency_ms": "float",
            "holding": "boolean",
        },
    }
    for msg_type, fields in expected.items():
        assert msg_type.get_fields_and_field_types() == fields, msg_type.__name__


def test_action_chunk_round_trips_through_serialization():
    msg = pytest.importorskip("rtc_ros.msg", reason="messages not built (run scripts/setup.sh)")
    serialization = pytest.importorskip("rclpy.serialization")
    chunk = msg.ActionChunk(
        joint_names=["a", "b"],
        prediction_horizon=3,
        action_dim=2,
        actions=[0.0, 0.5, 1.0, 1.5, 2.0, 2.5],
        start_tick=-1,
        inference_delay=1,
        execution_horizon=2,
        method="rtc_soft",
        guidance="vjp",
        latency_ms=12.5,
        sequence=2**63,
        run_id=2**53 - 1,
        epoch=3,
    )
    back = serialization.deserialize_message(
        serialization.serialize_message(chunk), msg.ActionChunk
    )
    assert back == chunk


def installed_rtc_ros():
    try:
        return metadata.distribution("rtc_ros")
    except metadata.PackageNotFoundError:
        pytest.skip("rtc_ros is not pip-installed here (scripts/setup.sh installs it)")


def test_console_scripts_are_the_nodes_and_each_has_a_colcon_script():
    scripts = {
        ep.name: ep.value
        for ep in installed_rtc_ros().entry_points
        if ep.group == "console_scripts"
    }
    assert scripts == {node: f"rtc_ros.nodes.{node}:main" for node in NODES}
    assert sorted(p.name for p in (REPO / "scripts" / "colcon").iterdir()) == sorted(NODES)
    for node in NODES:
        text = (REPO / "scripts" / "colcon" / node).read_text()
        assert f"from rtc_ros.nodes.{node} import main" in text


def test_pip_install_gives_the_prefix_an_ament_package_layout():
    installed_rtc_ros()
    prefix = Path(sys.prefix)
    assert (prefix / "share/ament_index/resource_index/packages/rtc_ros").is_file()
    assert (prefix / "share/rtc_ros/package.xml").is_file()
    for node in NODES:
        shim = prefix / "lib/rtc_ros" / node
        assert os.access(shim, os.X_OK), f"{shim} missing or not executable"
    for source in (REPO / "launch").glob("*.launch.py"):
        assert (prefix / "share/rtc_ros/launch" / source.name).is_file(), (
            f"{source.name} is not installed: re-run scripts/setup.sh"
        )
