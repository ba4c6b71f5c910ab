"""Real-time settings: applied where the system permits them, one
warning and a normal loop where not.

Each case runs in a child process, so that the test process keeps its scheduler and memory. The
refused case drops the child's permission first: RLIMIT_RTPRIO 0 and a 64 KiB RLIMIT_MEMLOCK
and, when it runs as root, CAP_SYS_NICE and CAP_IPC_LOCK removed from its capability bounding
set (root would otherwise be allowed everything).
"""

import ctypes
import json
import os
import resource
import subprocess
import sys
import textwrap

import pytest

from rtc_ros.runtime.realtime import RealtimeSettings

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="real-time settings are Linux-only"
)

_PR_CAPBSET_DROP, _CAP_IPC_LOCK, _CAP_SYS_NICE = 24, 14, 23


def without_realtime_permission() -> None:
    resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (64 << 10, 64 << 10))
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for capability in (_CAP_SYS_NICE, _CAP_IPC_LOCK):
            if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
                os._exit(3)


def _child(code: str, permitted: bool) -> dict:
    """Runs ``code`` in a child that prints one JSON line last; returns it (and its stderr)."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=None if permitted else without_realtime_permission,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    report["stderr"] = result.stderr
    return report


_APPLY = """
    import json, os
    from rtc_ros.runtime.realtime import RealtimeSettings, realtime

    def locked_kb():
        with open("/proc/self/status") as status:
            return int(next(line for line in status if line.startswith("VmLck")).split()[1])

    settings = RealtimeSettings(thread_priority=20, cpu_affinity=(0,), lock_memory=True)
    with realtime(settings) as applied:
        inside = [os.sched_getscheduler(0), os.sched_getparam(0).sched_priority,
                  sorted(os.sched_getaffinity(0)), locked_kb()]
    after = [os.sched_getscheduler(0), sorted(os.sched_getaffinity(0)), locked_kb()]
    print(json.dumps({
        "applied": [applied.thread_priority, list(applied.cpu_affinity), applied.memory_locked],
        "refused": list(applied.refused), "warning": applied.warning, "inside": inside,
        "after": after, "fifo": os.SCHED_FIFO, "cpus": sorted(os.sched_getaffinity(0))}))
"""


def test_settings_are_applied_when_permitted_and_undone_afterwards():
    report = _child(_APPLY, permitted=True)
    if report["refused"]:
        pytest.skip(f"this machine does not permit real-time settings: {report['refused']}")
    assert report["applied"] == [20, [0], True] and report["warning"] is None
    scheduler, priority, cpus, locked_kb = report["inside"]
    assert (scheduler, priority, cpus) == (report["fifo"], 20, [0]) and locked_kb > 0
    assert (
        report["after"][0] != report["fifo"]
        and report["after"][2] == 0
        and len(report["after"][1]) >= 1
    )


def test_refused_settings_are_reported_with_one_warning_saying_how_to_allow_them():
    report = _child(_APPLY, permitted=False)
    assert report["applied"][0] == 0 and report["applied"][2] is False
    scheduler, priority, _, locked_kb = report["inside"]
    assert scheduler != report["fifo"] and priority == 0 and locked_kb == 0
    assert any("SCHED_FIFO priority 20" in reason for reason in report["refused"])
    assert any("locked memory" in reason for reason in report["refused"])
    assert "limits.conf" in report["warning"] and "rtprio" in report["warning"]


def test_an_unknown_cpu_is_refused_and_the_thread_keeps_its_cpus():
    code = _APPLY.replace("cpu_affinity=(0,)", f"cpu_affinity=({os.cpu_count() + 7},)")
    report = _child(code, permitted=False)
    assert any("CPU affinity" in reason for reason in report["refused"])
    assert report["inside"][2] == report["cpus"]


_LOOP = """
    import json, logging, threading
    import numpy as np
    from rtc_ros.core.handover import AtomicSlot
    from rtc_ros.core.scheduler import Chunk, ChunkExecutor
    from rtc_ros.runtime.command_filter import CommandFilter, JointLimits
    from rtc_ros.runtime.control_loop import ControlLoop
    from rtc_ros.runtime.realtime import RealtimeSettings

    warnings = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())
    logging.getLogger("rtc_ros").addHandler(handler)
    command_filter = CommandFilter(JointLimits(("a",), (-1.0,), (1.0,), (0.1,)))
    command_filter.reset(np.zeros(1))
    chunks = AtomicSlot()
    chunks.publish(Chunk(np.zeros((500, 1)), 0, 0))
    sent = []
    loop = ControlLoop(0.01, ChunkExecutor(), chunks, AtomicSlot(), command_filter, sent.append,
                       realtime_settings=RealtimeSettings(thread_priority=30, lock_memory=True))
    loop.run(threading.Event(), duration_s=0.5)
    r = loop.report()
    print(json.dumps({"ticks": r.ticks, "sent": len(sent), "priority": r.thread_priority,
                      "locked": r.memory_locked, "refused": r.realtime_refused,
                      "warnings": warnings}))
"""


def test_the_loop_runs_with_its_settings_when_permitted():
    report = _child(_LOOP, permitted=True)
    if report["refused"]:
        pytest.skip("this machine does not permit real-time settings")
    assert (report["priority"], report["locked"], report["warnings"]) == (30, True, [])
    assert report["ticks"] >= 25 and report["sent"] == report["ticks"]


def test_the_loop_falls_back_to_normal_scheduling_with_one_warning_when_refused():
    report = _child(_LOOP, permitted=False)
    assert (report["priority"], report["locked"], report["refused"]) == (0, False, True)
    assert len(report["warnings"]) == 1 and "limits.conf" in report["warnings"][0]
    assert report["ticks"] >= 25 and report["sent"] == report["ticks"]


def test_settings_out_of_range_are_rejected_with_the_rule():
    with pytest.raises(ValueError, match=r"thread_priority must be in \[0, 99\]"):
        RealtimeSettings(thread_priority=120)
    with pytest.raises(ValueError, match="cpu_affinity"):
        RealtimeSettings(cpu_affinity=(-1,))
