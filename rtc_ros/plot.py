"""Plots of a recorded run, the demo's figures from any bag the recorder wrote (a robot's too).

    python -m rtc_ros.plot BAG.mcap --output DIR [--arm left] [--period-s 0.02]

Writes DIR/joints.png (one arm's measured joint positions, velocities and accelerations, chunk
seams dashed, holds shaded) and DIR/delays.png (each chunk's inference delay, execution horizon
and latency), and prints what the bag holds. Needs ``joint_states`` and ``rtc/chunks`` in the
bag (any namespace: topics are matched by their last parts; rtc_inference/chunks in split
mode); ``rtc/hold`` adds the holds.
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import sys

import numpy as np

from rtc_ros.plots import plot_delays, plot_joints
from rtc_ros.recording import BagMessage, read_messages


def _stamp_s(header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def _by_suffix(messages: dict[str, list[BagMessage]], *suffixes: str) -> list[BagMessage]:
    """The messages of the topic ending in the first of ``suffixes`` that one does (any
    namespace: /left/rtc/chunks for rtc/chunks).
    """
    for suffix in suffixes:
        found = [topic for topic in messages if ("/" + topic.lstrip("/")).endswith("/" + suffix)]
        if len(found) > 1:
            raise ValueError(f"several topics end in {suffix}: {found}")
        if found:
            return messages[found[0]]
    return []


def _holds(holds: list[BagMessage], end_s: float) -> list[tuple[float, float]]:
    """(held, released) intervals, in seconds of log time, from rtc/hold's true/false."""
    intervals, held = [], None
    for m in holds:
        if m.message.data and held is None:
            held = m.log_time_ns * 1e-9
        elif not m.message.data and held is not None:
            intervals.append((held, m.log_time_ns * 1e-9))
            held = None
    if held is not None:
        intervals.append((held, end_s))
    return intervals


def plot_bag(bag: pathlib.Path, output: pathlib.Path, arm: str, period_s: float) -> dict:
    """Draw the figures of ``bag`` into ``output``; what was found, per topic."""
    messages: dict[str, list[BagMessage]] = collections.defaultdict(list)
    for message in read_messages(bag):
        messages[message.topic].append(message)
    counts = {topic: len(listed) for topic, listed in sorted(messages.items())}
    joint_states = _by_suffix(messages, "joint_states")
    # The composed node's, or the split inference node's.
    chunks = _by_suffix(messages, "rtc/chunks", "rtc_inference/chunks")
    if not joint_states or not chunks:
        raise ValueError(f"{bag} lacks joint_states or rtc/chunks; it holds {counts}")
    # Time 0: the first command (of any command group), as in the demo; without commands, the
    # first joint state.
    first_commands = [
        listed[0].log_time_ns
        for topic, listed in messages.items()
        if topic.endswith(("commands", "joint_trajectory"))
    ]
    start_ns = min(first_commands, default=joint_states[0].log_time_ns)
    output.mkdir(parents=True, exist_ok=True)
    names = list(joint_states[0].message.name)
    states = [m for m in joint_states if list(m.message.name) == names]
    end_s = states[-1].log_time_ns * 1e-9
    plot_joints(
        np.array([m.log_time_ns - start_ns for m in states]) * 1e-9,
        np.array([_stamp_s(m.message.header) for m in states]),
        names,
        np.array([m.message.position for m in states], dtype=np.float64),
        [(m.log_time_ns - start_ns) * 1e-9 for m in chunks if m.message.execution_horizon > 0],
        [
            (held - start_ns * 1e-9, released - start_ns * 1e-9)
            for held, released in _holds(_by_suffix(messages, "rtc/hold"), end_s)
        ],
        arm,
        output / "joints.png",
    )
    plot_delays(
        np.array([m.log_time_ns - start_ns for m in chunks]) * 1e-9,
        np.array([m.message.inference_delay for m in chunks]),
        np.array([m.message.execution_horizon for m in chunks]),
        np.array([m.message.latency_ms for m in chunks]),
        period_s,
        output / "delays.png",
    )
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bag", type=pathlib.Path)
    parser.add_argument("--output", type=pathlib.Path, required=True)
    parser.add_argument("--arm", default="left", help="joint-name prefix of the arm to draw")
    parser.add_argument("--period-s", type=float, default=0.02, help="control period (s)")
    args = parser.parse_args(argv)
    if not args.bag.is_file():
        parser.error(f"{args.bag}: no such file")
    try:
        counts = plot_bag(args.bag, args.output, args.arm, args.period_s)
    except ValueError as error:
        print(f"cannot plot: {error}", file=sys.stderr)
        return 1
    for topic, count in counts.items():
        print(f"{count:8d}  {topic}")
    print(f"plots: {args.output / 'joints.png'}, {args.output / 'delays.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
