"""Real-Time Chunking (Black, Galliker, Levine 2025) for ROS 2.

Layers, each importable without the next: ``rtc_ros.core`` (the algorithm, numpy and
torch only), ``rtc_ros.policies`` and ``rtc_ros.sim``, ``rtc_ros.bench``, then the rclpy
nodes in ``rtc_ros.nodes``.
"""

# The generated messages (rtc_ros.msg) are installed into site-packages by the rosidl build,
# while the Python code may be imported from a source checkout: merge both into one package.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
