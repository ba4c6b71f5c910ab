"""Recorder node: the run's topics into an MCAP bag that rosbag2, Foxglove and PlotJuggler read.

    ros2 run rtc_ros recorder_node --ros-args -p output:=run.mcap [-p topics:="[...]"]

It runs in a process of its own (the demo and ``record:=true`` start it so), which cannot take
a tick from the 50 Hz loop: that loop runs in another process and only ever publishes. It
subscribes to each topic once a publisher offers it, with the publishers' reliability and
durability (as rosbag2 does: a best-effort camera is recorded best effort, the transient-local
chunk as such), takes the serialized bytes as they arrive (no deserialisation) and writes them
with the time they were received (the bag's log time) and sent (its publish time, DDS's source
timestamp: the send time of a command whose stamp is zero). Relative topic names resolve in the
node's namespace, like the other nodes'.
"""

from __future__ import annotations

import datetime
import importlib

import yaml
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.subscription import MessageInfo

from rtc_ros.nodes.parameters import DECLARATIONS, parse_command_groups
from rtc_ros.nodes.runner import STEADY, run
from rtc_ros.recording import BagWriter

RECORDED_TOPICS = (
    "commands",
    "joint_states",
    "rtc/chunks",
    "rtc/status",
    "rtc/hold",
    "/diagnostics",
)
"""The default: what the plots need (commands, joint states, chunks with their delays and
latencies, status, the holds around resets) and the diagnostics."""
CAMERA_TOPIC = "top/image_raw"
DISCOVERY_PERIOD_S = 0.5


def recorded_topics(config: str, split: bool, camera: str | None) -> list[str]:
    """What a launch records for a robot configured by the parameter file ``config``: the
    defaults, with each command group's topic in place of ``commands`` where it has groups, the
    split inference node's chunks and status with ``split``, and ``<camera>/image_raw``.
    """
    with open(config) as file:
        values = (yaml.safe_load(file) or {}).get("/**", {}).get("ros__parameters", {})
    joint_names = values.get("joint_names") or DECLARATIONS["joint_names"][0]
    groups = parse_command_groups(values.get("command_groups"), joint_names)
    topics = [group.topic for group in groups] + [t for t in RECORDED_TOPICS if t != "commands"]
    if split:
        topics = [t.replace("rtc/", "rtc_inference/") for t in topics]
    if camera:
        topics.append(f"{camera}/image_raw")
    return topics


def _message_class(type_name: str):
    package, _, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def _default_output() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("rtc_ros_%Y%m%d_%H%M%S.mcap")


class RecorderNode(Node):
    def __init__(self, node_name: str = "rtc_recorder", **node_kwargs) -> None:
        super().__init__(node_name, **node_kwargs)
        output = self.declare_parameter(
            "output",
            "",
            ParameterDescriptor(
                description="Bag file (.mcap) to write; empty: rtc_ros_<UTC time>.mcap here",
                read_only=True,
            ),
        ).value
        topics = self.declare_parameter(
            "topics",
            list(RECORDED_TOPICS),
            ParameterDescriptor(
                description="Topics to record (relative names resolve in the namespace)",
                read_only=True,
            ),
        ).value
        self.bag = BagWriter(output or _default_output())
        self._pending = {self.resolve_topic_name(topic) for topic in topics}
        self._channels: dict[str, int] = {}
        self._discovery = self.create_timer(DISCOVERY_PERIOD_S, self._discover, clock=STEADY)
        self.get_logger().info(f"recording {sorted(self._pending)} to {self.bag.path}")

    def _discover(self) -> None:
        offered = dict(self.get_topic_names_and_types())
        for topic in sorted(self._pending & offered.keys()):
            publishers = self.get_publishers_info_by_topic(topic)
            if not publishers:
                continue
            type_name = offered[topic][0]
            self._subscribe(topic, type_name, publishers)
            self._pending.discard(topic)
        if not self._pending:
            self._discovery.cancel()

    def _subscribe(self, topic: str, type_name: str, publishers) -> None:
        profiles = [p.qos_profile for p in publishers]
        reliable = all(p.reliability == ReliabilityPolicy.RELIABLE for p in profiles)
        latched = all(p.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in profiles)
        qos = QoSProfile(
            depth=100,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
            durability=(
                DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE
            ),
        )
        channel = self.bag.add_topic(topic, type_name)

        def on_message(data: bytes, info: MessageInfo) -> None:
            self.bag.write(
                channel, topic, data, info["received_timestamp"], info["source_timestamp"]
            )

        self.create_subscription(_message_class(type_name), topic, on_message, qos, raw=True)
        self.get_logger().info(f"recording {topic} ({type_name})")

    def destroy_node(self) -> None:
        self.bag.close()
        self.get_logger().info(f"wrote {self.bag.path}: {self.bag.message_counts}")
        super().destroy_node()


def main(args=None) -> None:
    run(RecorderNode, args, usage=__doc__ or "")


if __name__ == "__main__":
    main()
