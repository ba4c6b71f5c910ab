"""Dynamic, stochastic benchmark tasks with multimodal scripted experts (numpy, batched).

Each task is force- or acceleration-controlled (a zero action does not hold the state),
perturbs every action with noise, starts from a random state, and has an expert that picks
one of several distinct strategies whose average fails. They stand in for the paper's
Kinetix levels, whose expert policies are not available.
"""

from __future__ import annotations

from rtc_ros.bench.tasks.base import Task
from rtc_ros.bench.tasks.demonstrations import collect_demonstrations
from rtc_ros.bench.tasks.lander import TwoPadLander
from rtc_ros.bench.tasks.navigation import ObstacleNavigation
from rtc_ros.bench.tasks.reach import TwoLinkReach

TASKS: dict[str, type[Task]] = {
    task.name: task for task in (ObstacleNavigation, TwoPadLander, TwoLinkReach)
}


def make_task(name: str) -> Task:
    """A new task by its name (a key of :data:`TASKS`)."""
    try:
        return TASKS[name]()
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}") from None


__all__ = [
    "TASKS",
    "ObstacleNavigation",
    "Task",
    "TwoLinkReach",
    "TwoPadLander",
    "collect_demonstrations",
    "make_task",
]
