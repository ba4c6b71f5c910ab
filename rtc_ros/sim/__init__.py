"""A ROS-free simulated bimanual robot, its grasp task, a scripted expert and demonstrations.

numpy only. ``bimanual`` (the robot's physics and interface), ``config`` (robot, task and
camera settings, joint layout), ``cubes`` (the task: placing, grasping, carrying),
``scene`` (the camera's view), ``kinematics`` (ViperX-shaped chain), ``render`` (camera and
rasteriser), ``expert`` (scripted planner queried for action chunks), ``dataset`` (expert
demonstrations as arrays).
"""

from rtc_ros.sim.bimanual import BimanualSim, episode_rng
from rtc_ros.sim.config import BimanualConfig
from rtc_ros.sim.dataset import Demonstrations, generate_demonstrations, run_expert_episode
from rtc_ros.sim.expert import ExpertConfig, ScriptedExpert

__all__ = [
    "BimanualConfig",
    "BimanualSim",
    "Demonstrations",
    "ExpertConfig",
    "ScriptedExpert",
    "episode_rng",
    "generate_demonstrations",
    "run_expert_episode",
]
