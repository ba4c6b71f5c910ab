"""Recording: a short run recorded by the recorder node in its own process, read back as a
rosbag2-compatible MCAP bag, and plotted.
"""

import signal

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")
pytest.importorskip("rtc_ros.msg", reason="rtc_ros messages are not built (run scripts/setup.sh)")
pytest.importorskip(
    "mcap_ros2", reason="mcap-ros2-support is not installed (run scripts/setup.sh)"
)

from mcap.reader import make_reader  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from ros_graph import CONFIG, RosGraph, config_overrides  # noqa: E402
from test_launch_support import small_policy_checkpoint  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from rtc_ros.msg import ActionChunk  # noqa: E402
from rtc_ros.nodes.controller_links import CHUNK_QOS  # noqa: E402
from rtc_ros.nodes.inference_node import InferenceNode  # noqa: E402
from rtc_ros.nodes.parameters import ControllerPlacement  # noqa: E402
from rtc_ros.nodes.recorder_node import recorded_topics  # noqa: E402
from rtc_ros.plot import plot_bag  # noqa: E402
from rtc_ros.recording import message_definition, read_messages  # noqa: E402

TYPES = {
    "/commands": "trajectory_msgs/msg/JointTrajectory",
    "/joint_states": "sensor_msgs/msg/JointState",
    "/rtc/chunks": "rtc_ros/msg/ActionChunk",
    "/rtc/status": "rtc_ros/msg/RtcStatus",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
}


def test_a_schema_is_the_msg_text_followed_by_every_type_it_uses():
    definition = message_definition("sensor_msgs/msg/JointState")
    assert definition.startswith("# This is a message that holds data")
    assert definition.count("\nMSG: ") == 2
    assert "=" * 80 + "\nMSG: std_msgs/Header\n" in definition
    assert "=" * 80 + "\nMSG: builtin_interfaces/Time\n" in definition


def test_a_launch_records_each_command_group_and_the_camera_on_request(tmp_path):
    config = CONFIG.parent / "aloha_command_groups.yaml"
    topics = recorded_topics(str(config), split=False, camera="top")
    assert topics[:2] == [
        "/left_arm_controller/joint_trajectory",
        "/right_arm_controller/joint_trajectory",
    ]
    assert "commands" not in topics and "top/image_raw" in topics
    assert "rtc_inference/chunks" in recorded_topics(str(CONFIG), split=True, camera=None)


@pytest.fixture
def graph():
    ros = RosGraph()
    yield ros
    ros.close()


def test_a_recorded_run_reads_back_with_ros2_schemas_cdr_and_every_message_and_plots(
    graph, tmp_path
):
    bag = tmp_path / "run.mcap"
    commands = graph.collect(
        JointTrajectory, "commands", QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
    )
    chunks = graph.collect(ActionChunk, "rtc/chunks", CHUNK_QOS)
    recorder = graph.start_process("rtc_ros.nodes.recorder_node", ["-p", f"output:={bag}"])
    graph.start_process("rtc_ros.nodes.sim_node", ["--params-file", str(CONFIG)])
    graph.add_active(
        InferenceNode(
            "rtc",
            placement=ControllerPlacement.THREAD,
            context=graph.context,
            parameter_overrides=config_overrides(policy=small_policy_checkpoint()),
        )
    )
    # The recorder subscribes to a topic once it sees the topic's publisher (it takes the
    # publisher's QoS): count from then on.
    graph.wait_for(
        lambda: any(
            info.node_name == "rtc_recorder"
            for info in graph.probe.get_subscriptions_info_by_topic("/commands")
        ),
        timeout_s=60,
        what="the recorder's subscription to /commands",
    )
    subscribed = len(commands)
    graph.wait_for(
        lambda: len(commands) >= subscribed + 150 and len(chunks) >= 3,
        timeout_s=60,
        what="150 commands and 3 chunks",
    )
    recorder.send_signal(signal.SIGINT)
    assert recorder.wait(20) == 0

    with bag.open("rb") as file:
        summary = make_reader(file).get_summary()
    channels = {c.topic: c for c in summary.channels.values()}
    assert set(TYPES) <= set(channels)
    counts = summary.statistics.channel_message_counts
    for topic, type_name in TYPES.items():
        channel = channels[topic]
        schema = summary.schemas[channel.schema_id]
        assert (schema.name, schema.encoding, channel.message_encoding) == (
            type_name,
            "ros2msg",
            "cdr",
        )
        assert counts[channel.id] > 0, topic
    assert counts[channels["/commands"].id] >= 100
    assert counts[channels["/rtc/chunks"].id] >= 2

    recorded = [m for m in read_messages(bag) if m.topic == "/commands"]
    assert len(recorded) == counts[channels["/commands"].id]
    assert all(len(m.message.joint_names) == 14 for m in recorded)
    assert all(m.publish_time_ns <= m.log_time_ns for m in recorded)  # sent, then received

    found = plot_bag(bag, tmp_path / "plots", arm="left", period_s=0.02)
    assert found["/commands"] == len(recorded)
    assert (tmp_path / "plots" / "joints.png").stat().st_size > 10_000
    assert (tmp_path / "plots" / "delays.png").stat().st_size > 10_000
