"""The controller side of the package (nodes, control process, real-
time core) runs without torch.
"""

import subprocess
import sys

import pytest

TORCH_FREE_MODULES = (
    "rtc_ros.core",
    "rtc_ros.core.config",
    "rtc_ros.core.scheduler",
    "rtc_ros.core.handover",
    "rtc_ros.core.simulated_time",
    "rtc_ros.runtime.control_loop",
    "rtc_ros.nodes.controller_links",
    "rtc_ros.nodes.controller_node",
    "rtc_ros.nodes.sim_node",
    # The control process of rtc_node imports rtc_node again (multiprocessing's spawn imports
    # the parent's main module), so rtc_node itself must load torch only when it runs.
    "rtc_ros.nodes.rtc_node",
)


def _loaded_after_import(modules: tuple[str, ...], probe: str) -> bool:
    code = "import importlib, sys\n"
    code += "".join(f"importlib.import_module({m!r})\n" for m in modules)
    code += f"print({probe!r} in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip() == "True"


def test_controller_and_sim_nodes_and_the_real_time_core_import_without_torch():
    pytest.importorskip("rclpy")
    assert not _loaded_after_import(TORCH_FREE_MODULES, "torch")


def test_the_probe_sees_torch_where_it_is_imported():
    assert _loaded_after_import(("rtc_ros.core.methods",), "torch")


def test_the_sampling_api_is_still_reached_through_the_core_package():
    from rtc_ros.core import guidance_weight, guided_sample, prefix_weights  # noqa: F401

    assert guidance_weight(0.0, 5.0) == 5.0
