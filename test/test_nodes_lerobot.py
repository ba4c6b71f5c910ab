"""rtc_node with a LeRobot SmolVLA folder (tiny, random weights) on the simulated robot."""

import json
import shutil

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")
pytest.importorskip("rtc_ros.msg", reason="rtc_ros messages are not built (run scripts/setup.sh)")

from rclpy.parameter import Parameter  # noqa: E402
from ros_graph import CONFIG, RosGraph, config_overrides  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from test_nodes import PROBE_QOS  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from rtc_ros.msg import ActionChunk, RtcStatus  # noqa: E402
from rtc_ros.nodes.inference_node import InferenceNode  # noqa: E402
from rtc_ros.nodes.parameters import ControllerPlacement  # noqa: E402
from rtc_ros.policies.lerobot.model import lerobot_available  # noqa: E402
from rtc_ros.policies.make_checkpoint import make_checkpoint  # noqa: E402
from rtc_ros.sim.config import BimanualConfig  # noqa: E402

SMOLVLA_MISSING = lerobot_available("smolvla")
pytestmark = pytest.mark.skipif(SMOLVLA_MISSING is not None, reason=str(SMOLVLA_MISSING))
JOINTS = list(BimanualConfig().joint_names)


@pytest.fixture(scope="module")
def smolvla_folder(tmp_path_factory):
    return make_checkpoint("smolvla", "tiny", tmp_path_factory.mktemp("smolvla"))


@pytest.fixture
def graph():
    ros = RosGraph()
    yield ros
    ros.close()


def _rtc(graph, folder, name="rtc", **params):
    """The default composed node: its control loop in a process of
    its own, clear of torch's GIL.
    """
    overrides = config_overrides(policy=str(folder), **params)
    return graph.add_active(
        InferenceNode(
            name,
            placement=ControllerPlacement.PROCESS,
            context=graph.context,
            parameter_overrides=overrides,
        )
    )


def _configure_error(graph, folder) -> str:
    """A refused policy fails the configure transition; the reason, as logged."""
    node = graph.add(
        InferenceNode(
            "rtc",
            placement=ControllerPlacement.PROCESS,
            context=graph.context,
            parameter_overrides=config_overrides(policy=str(folder)),
        )
    )
    node.trigger_configure()
    return node.configure_error or ""


def test_rtc_node_runs_a_lerobot_smolvla_folder_on_the_simulated_robot(graph, smolvla_folder):
    arrivals: list[float] = []
    commands = graph.collect(JointTrajectory, "commands", PROBE_QOS, arrivals)
    statuses = graph.collect(RtcStatus, "rtc/status")
    chunks = graph.collect(ActionChunk, "rtc/chunks")
    graph.start_process("rtc_ros.nodes.sim_node", ["--params-file", str(CONFIG)])
    node = _rtc(graph, smolvla_folder, task="stack the cubes")
    assert node.loaded.kind.value == "smolvla" and node.policy.task == "stack the cubes"
    graph.wait_for(
        lambda: len(commands) >= 200 and statuses and statuses[-1].swaps >= 3,
        timeout_s=120,
        what="200 commands and 3 chunk swaps",
    )
    assert 45.0 < graph.rate_hz(arrivals) < 55.0
    assert all(
        c.joint_names == JOINTS and np.all(np.isfinite(c.points[0].positions)) for c in commands
    )
    guidance = node.params.guidance.value
    assert chunks and all(c.method == "rtc_soft" and c.guidance == guidance for c in chunks)

    task = graph.probe.create_publisher(String, "rtc/task", 10)
    graph.wait_for(
        lambda: (
            task.publish(String(data="open the gripper"))
            or node.get_parameter("task").value == "open the gripper"
        ),
        what="the task from ~/task",
    )
    assert node.policy.task == "open the gripper"
    assert node.set_parameters([Parameter("task", value="close it")])[0].successful
    assert node.policy.task == "close it"


def test_a_folder_whose_joint_names_disagree_is_refused_naming_them(
    graph, smolvla_folder, tmp_path
):
    folder = shutil.copytree(smolvla_folder, tmp_path / "renamed")
    names = [f"armA_j{i + 1}" for i in range(14)]
    (folder / "rtc_ros.json").write_text(json.dumps({"state_names": names, "action_names": names}))
    assert "names differ from joint_names at 0: 'armA_j1' vs 'left_waist'" in _configure_error(
        graph, folder
    )


def test_a_broken_folder_is_refused_with_one_clear_line(graph, smolvla_folder, tmp_path):
    folder = shutil.copytree(smolvla_folder, tmp_path / "broken")
    (folder / "config.json").write_text(json.dumps({"type": "act"}))
    assert (
        "type 'act': unknown policy kind; supported: reference, builtin-pi0, smolvla, pi0, pi05"
        in _configure_error(graph, folder)
    )
