"""The default executable: inference and controller as one unit sharing the lock-free buffer.

``controller`` (parameter) chooses where the 50 Hz loop runs: ``process`` (default: its own
process, chunks through shared memory, no GIL contention with torch) or ``thread``. A managed
node, unconfigured at start: ``ros2 lifecycle set /rtc configure``, then ``activate`` (the launch
files do both unless ``autostart:=false``).
"""

from __future__ import annotations

import sys

from rtc_ros.nodes.runner import ros_arguments, run


def main(args=None) -> None:
    # Imported here, not at the top: the control process, started with multiprocessing's spawn,
    # imports this (main) module again, and must not load torch. torch's libraries would cost
    # it hundreds of MB, and several GB once lock_memory locks every mapping.
    from rtc_ros.nodes.inference_node import InferenceNode

    argv = list(sys.argv if args is None else args)
    run(lambda: InferenceNode("rtc", ros_args=ros_arguments(argv)), args, usage=__doc__)


if __name__ == "__main__":
    main()
