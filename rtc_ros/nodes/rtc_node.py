"""The default executable: inference and controller as one unit sharing the lock-free buffer.

``controller`` (parameter) chooses where the 50 Hz loop runs: ``process`` (default: its own
process, chunks through shared memory, no GIL contention with torch) or ``thread``.
"""

from __future__ import annotations

import sys

from rtc_ros.nodes.inference_node import InferenceNode
from rtc_ros.nodes.parameters import ControllerPlacement
from rtc_ros.nodes.runner import ros_arguments, run


def main(args=None) -> None:
    argv = list(sys.argv if args is None else args)

    def make() -> InferenceNode:
        node = InferenceNode("rtc", ros_args=ros_arguments(argv))
        if node.placement is ControllerPlacement.TOPIC:
            node.get_logger().info("controller=topic: run controller_node to execute the chunks")
        return node

    run(make, args, usage=__doc__)


if __name__ == "__main__":
    main()
