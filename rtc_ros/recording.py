"""MCAP bags that rosbag2, Foxglove and PlotJuggler read, written and read without rosbag2.

rosbag2 is not on PyPI; a bag of its MCAP storage is an MCAP file whose schemas are ROS 2
message definitions (encoding ``ros2msg``: the type's .msg text followed by each type it uses,
each after a line of 80 ``=`` and ``MSG: package/Type``) and whose messages are the CDR bytes
DDS carried (encoding ``cdr``). The recorder writes the bytes it receives as they are, so
recording costs no deserialisation; reading decodes them with ``mcap-ros2-support``.

The definitions come from the installed packages' ``share/<package>/msg/*.msg``, as rosbag2's
do.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
from collections.abc import Iterator
from typing import Any, BinaryIO

PRIMITIVE_TYPES = frozenset(
    "bool byte char float32 float64 int8 uint8 int16 uint16 int32 uint32 int64 uint64 string "
    "wstring".split()
)
_SEPARATOR = "=" * 80


def _msg_path(package: str, name: str) -> pathlib.Path:
    """The .msg file of ``package/msg/name`` in the first prefix of
    AMENT_PREFIX_PATH that has it.
    """
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        path = pathlib.Path(get_package_share_directory(package)) / "msg" / f"{name}.msg"
    except PackageNotFoundError:
        raise ValueError(f"no package {package!r} in AMENT_PREFIX_PATH: cannot record it")
    if not path.is_file():
        raise ValueError(f"no message definition {path}")
    return path


def _used_types(text: str, package: str) -> list[str]:
    """The non-primitive field types of a .msg text, as ``package/Type``, in order."""
    used = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        field_type = line.split()[0]  # constants are of primitive types: skipped below
        base = re.sub(r"\[.*\]$", "", field_type)
        base = re.sub(r"<=\d+$", "", base)  # bounded strings
        if base in PRIMITIVE_TYPES:
            continue
        parts = base.split("/")
        used.append(base if len(parts) == 2 else f"{package}/{parts[-1]}")
    return used


def message_definition(type_name: str) -> str:
    """rosbag2's ``ros2msg`` schema text of ``package/msg/Type`` (or ``package/Type``)."""
    package, name = type_name.split("/")[0], type_name.split("/")[-1]
    text = _msg_path(package, name).read_text()
    parts, seen = [text.rstrip("\n")], {f"{package}/{name}"}
    pending = _used_types(text, package)
    while pending:
        dependency = pending.pop(0)
        if dependency in seen:
            continue
        seen.add(dependency)
        dep_package, dep_name = dependency.split("/")
        dep_text = _msg_path(dep_package, dep_name).read_text()
        parts.append(f"{_SEPARATOR}\nMSG: {dependency}\n{dep_text.rstrip(chr(10))}")
        pending += _used_types(dep_text, dep_package)
    return "\n".join(parts) + "\n"


class BagWriter:
    """An MCAP file with ROS 2 schemas and CDR messages, written message by message."""

    def __init__(self, path: str | os.PathLike) -> None:
        from mcap.writer import CompressionType, Writer

        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO = self.path.open("wb")
        self._writer = Writer(self._file, compression=CompressionType.ZSTD)
        self._writer.start(profile="ros2", library="rtc_ros")
        self._schemas: dict[str, int] = {}
        self._sequence = 0
        self.message_counts: dict[str, int] = {}

    def add_topic(self, topic: str, type_name: str, offered_qos: str = "") -> int:
        """A channel for ``topic`` (``type_name``:
        ``package/msg/Type``); its id for :meth:`write`.
        """
        if type_name not in self._schemas:
            self._schemas[type_name] = self._writer.register_schema(
                name=type_name, encoding="ros2msg", data=message_definition(type_name).encode()
            )
        metadata = {"offered_qos_profiles": offered_qos} if offered_qos else {}
        self.message_counts.setdefault(topic, 0)
        return self._writer.register_channel(
            topic=topic,
            message_encoding="cdr",
            schema_id=self._schemas[type_name],
            metadata=metadata,
        )

    def write(
        self, channel_id: int, topic: str, data: bytes, log_time_ns: int, publish_time_ns: int
    ) -> None:
        """One message: its CDR bytes, when it was received (log
        time) and sent (publish time).
        """
        self._writer.add_message(
            channel_id=channel_id,
            log_time=log_time_ns,
            publish_time=publish_time_ns,
            data=data,
            sequence=self._sequence,
        )
        self._sequence += 1
        self.message_counts[topic] += 1

    def close(self) -> None:
        """Write the summary and index (a bag cut short without them is
        still readable from its chunks).
        """
        if not self._file.closed:
            self._writer.finish()
            self._file.close()


@dataclasses.dataclass(frozen=True)
class BagMessage:
    topic: str
    log_time_ns: int
    """When it was received."""
    publish_time_ns: int
    """When it was sent (DDS's source timestamp)."""
    message: Any
    """Decoded: the ROS message's field names as attributes."""


def read_messages(path: str | os.PathLike) -> Iterator[BagMessage]:
    """Every message of the bag, decoded, in log-time order."""
    from mcap_ros2.reader import read_ros2_messages

    for m in read_ros2_messages(str(path)):
        yield BagMessage(m.channel.topic, m.log_time_ns, m.publish_time_ns, m.ros_msg)
