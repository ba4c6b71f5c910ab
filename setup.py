"""pip install of rtc_ros (scripts/setup.sh); colcon builds with CMakeLists.txt instead.

The messages in msg/ are not built here: scripts/setup.sh builds them with CMake into the
same prefix first (CMakeLists.txt, RTC_ROS_MSGS_ONLY=ON). The data files give the prefix
the layout of an ament package, so that `ros2 launch rtc_ros ...` and `ros2 run rtc_ros ...`
find the launch files and executables.
"""

from glob import glob
from xml.etree import ElementTree

from setuptools import find_packages, setup

package_name = "rtc_ros"

# One console script per node; scripts/pip/<name> makes each one visible in lib/rtc_ros.
nodes = ["rtc_node", "controller_node", "inference_node", "sim_node", "recorder_node"]

setup(
    name=package_name,
    version=ElementTree.parse("package.xml").getroot().findtext("version"),
    description="Real-Time Chunking for flow-matching action-chunking policies in ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    # Dependencies are pinned in requirements/ and installed by scripts/setup.sh.
    install_requires=[],
    packages=find_packages(include=[package_name, package_name + ".*"]),
    # Shipped policy checkpoints: the bimanual demo's and the delay benchmark's.
    package_data={package_name: ["policies/checkpoints/*.pt", "bench/checkpoints/*.pt"]},
    zip_safe=False,
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        (
            "share/" + package_name + "/launch",
            sorted(glob("launch/*.launch.py") + glob("launch/*.launch.xml")),
        ),
        ("share/" + package_name + "/config", sorted(glob("config/*.yaml"))),
        ("lib/" + package_name, ["scripts/pip/" + node for node in nodes]),
    ],
    entry_points={
        "console_scripts": [f"{node} = {package_name}.nodes.{node}:main" for node in nodes],
    },
)
