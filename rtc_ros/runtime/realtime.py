"""Real-time settings for the control loop, as ros2_control's ros2_control_node applies them.

The thread that runs the loop asks for SCHED_FIFO at a moderate priority (so that CPU-bound
work beside it, inference included, cannot delay a tick), may be pinned to CPUs, and the
process locks its memory (no page fault inside a tick). Whatever the system refuses is
reported in one warning that says how to allow it, and the loop runs as before. The garbage
collector is kept out of the ticks by :class:`GarbageCollectorGuard`.

Linux only: elsewhere the settings are reported as refused.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import errno
import gc
import os
import resource
import sys
from collections.abc import Iterator

MAX_PRIORITY = 99
_MCL_CURRENT, _MCL_FUTURE = 1, 2  # <sys/mman.h> on Linux (x86-64 and aarch64 alike)

HOW_TO_ALLOW = (
    "allow it with limits for the user that runs the robot in /etc/security/limits.conf "
    "(e.g. '@realtime - rtprio 99' and '@realtime - memlock unlimited', then log in again; "
    "see the README, 'Real-time permissions'), or in a container with "
    "--cap-add=sys_nice --ulimit rtprio=99 --ulimit memlock=-1"
)


@dataclasses.dataclass(frozen=True)
class RealtimeSettings:
    """What the control loop asks for; the parameters of the same names set them."""

    thread_priority: int = 50
    """SCHED_FIFO priority of the loop's thread, 1-99 (ros2_control's default is 50); 0 keeps
    the normal scheduler."""
    cpu_affinity: tuple[int, ...] = ()
    """CPUs the loop's thread may run on; empty: any."""
    lock_memory: bool = True
    """mlockall: keep the process's memory resident so that no tick waits for a page fault.
    Only where the process is the controller's own (it would also lock torch's memory)."""

    def __post_init__(self) -> None:
        if not 0 <= self.thread_priority <= MAX_PRIORITY:
            raise ValueError(
                f"thread_priority must be in [0, {MAX_PRIORITY}] (0: no real-time scheduling), "
                f"got {self.thread_priority}"
            )
        if any(cpu < 0 for cpu in self.cpu_affinity):
            raise ValueError(
                f"cpu_affinity must list CPU numbers >= 0, got {list(self.cpu_affinity)}"
            )

    @classmethod
    def off(cls) -> RealtimeSettings:
        """Normal scheduling, any CPU, memory not locked."""
        return cls(thread_priority=0, cpu_affinity=(), lock_memory=False)


@dataclasses.dataclass(frozen=True)
class RealtimeStatus:
    """What was applied, for the loop's report and /diagnostics."""

    thread_priority: int = 0
    """SCHED_FIFO priority the loop's thread got; 0: normal scheduling."""
    cpu_affinity: tuple[int, ...] = ()
    """CPUs the loop's thread may run on (all of them when not pinned)."""
    memory_locked: bool = False
    refused: tuple[str, ...] = ()
    """Settings asked for and refused by the system, each with the reason."""

    @property
    def summary(self) -> str:
        """What the loop got, e.g. 'SCHED_FIFO priority 50, CPUs 0,1, memory locked'."""
        scheduler = (
            f"SCHED_FIFO priority {self.thread_priority}"
            if self.thread_priority > 0
            else "normal scheduling"
        )
        cpus = ",".join(str(cpu) for cpu in self.cpu_affinity) or "none"
        memory = "memory locked" if self.memory_locked else "memory not locked"
        return f"{scheduler}, CPUs {cpus}, {memory}"

    @property
    def warning(self) -> str | None:
        """The one warning to log when something was refused, naming how to allow it."""
        if not self.refused:
            return None
        return (
            f"real-time settings refused: {'; '.join(self.refused)}. The control loop runs "
            "without them; "
            f"{HOW_TO_ALLOW}"
        )


@contextlib.contextmanager
def realtime(settings: RealtimeSettings) -> Iterator[RealtimeStatus]:
    """Apply ``settings`` to the calling thread (priority, affinity) and process (memory) while
    the block runs, then restore what was there before.

    Never raises for a refusal: it is listed in the status.
    """
    linux = sys.platform.startswith("linux")
    if linux:
        previous_policy, previous_param = os.sched_getscheduler(0), os.sched_getparam(0)
        previous_cpus = os.sched_getaffinity(0)
    refused = []
    priority = 0
    if settings.thread_priority > 0:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(settings.thread_priority))
            priority = settings.thread_priority
        except (OSError, AttributeError) as error:  # AttributeError: not Linux
            refused.append(
                f"SCHED_FIFO priority {settings.thread_priority} ({_reason(error)}, "
                f"rtprio limit {_limit('RLIMIT_RTPRIO')})"
            )
    if settings.cpu_affinity:
        try:
            os.sched_setaffinity(0, settings.cpu_affinity)
        except (OSError, AttributeError) as error:
            refused.append(
                f"CPU affinity {list(settings.cpu_affinity)} ({_reason(error)}; "
                f"CPUs available: {list(_cpus())})"
            )
    locked = False
    if settings.lock_memory:
        mlock_error = _mlockall()
        if mlock_error is None:
            locked = True
        else:
            refused.append(
                f"locked memory ({mlock_error}, memlock limit "
                f"{_limit('RLIMIT_MEMLOCK', 1024, ' kB')})"
            )
    try:
        yield RealtimeStatus(priority, _cpus(), locked, tuple(refused))
    finally:
        if locked:
            _libc().munlockall()
        if linux:
            os.sched_setaffinity(0, previous_cpus)
            os.sched_setscheduler(0, previous_policy, previous_param)


class GarbageCollectorGuard:
    """Keeps Python's garbage collector out of the ticks.

    :meth:`start` freezes what exists (imports, the policy, buffers: never scanned again) and
    disables automatic collection, which would otherwise run inside whichever allocation
    crosses the threshold, a tick included. The loop calls :meth:`collect` at a safe point,
    right after a tick has sent its command; it collects only what was created since.
    """

    def __init__(self) -> None:
        self._was_enabled = False
        self.collections = 0

    def start(self) -> None:
        self._was_enabled = gc.isenabled()
        gc.disable()
        gc.freeze()

    def collect(self) -> None:
        gc.collect()
        self.collections += 1

    def stop(self) -> None:
        gc.unfreeze()
        if self._was_enabled:
            gc.enable()


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _mlockall() -> str | None:
    """None when locked, else the reason."""
    if not sys.platform.startswith("linux"):
        return "not Linux"
    if _libc().mlockall(_MCL_CURRENT | _MCL_FUTURE) == 0:
        return None
    return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))


def _reason(error: Exception) -> str:
    if isinstance(error, OSError) and error.errno is not None:
        return errno.errorcode.get(error.errno, str(error.errno))
    return "not supported on this system"


def _limit(name: str, unit: int = 1, suffix: str = "") -> str:
    if not hasattr(resource, name):
        return "unknown"
    soft, _ = resource.getrlimit(getattr(resource, name))
    return "unlimited" if soft == resource.RLIM_INFINITY else f"{soft // unit}{suffix}"


def _cpus() -> tuple[int, ...]:
    if hasattr(os, "sched_getaffinity"):
        return tuple(sorted(os.sched_getaffinity(0)))
    return tuple(range(os.cpu_count() or 1))
