"""Kinematics of one ViperX-300-shaped arm: forward chain and a closed-form top-down IK.

Joint order and axes follow the Interbotix vx300s URDF: waist (z), shoulder (y), elbow (y),
forearm_roll (x), wrist_angle (y), wrist_rotate (x). At all-zero joints the upper arm points
up and the forearm and gripper point forward (+x of the arm base). A positive pitch (about y)
tilts the link down. The gripper frame's x axis is the approach direction and its y axis the
direction in which the fingers open.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ARM_JOINTS = 6
"""Revolute joints per arm, before the gripper."""


@dataclass(frozen=True)
class ArmLinks:
    """Link lengths of the chain (m), defaults from the vx300s URDF."""

    shoulder_height_m: float = 0.12705
    """Base plate to the shoulder axis."""
    upper_arm_length_m: float = 0.3
    """Shoulder axis to elbow axis, along the upper arm."""
    upper_arm_offset_m: float = 0.05955
    """Forward offset of the elbow axis from the upper arm's line."""
    forearm_length_m: float = 0.3
    """Elbow axis to wrist_angle axis."""
    wrist_length_m: float = 0.07
    """wrist_angle axis to wrist_rotate joint."""
    gripper_length_m: float = 0.10
    """wrist_rotate joint to the fingertip centre (the end effector point)."""


class UnreachableError(ValueError):
    """No joint configuration within limits puts the end effector at the requested pose."""


def _rot_x(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_y(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def forward_kinematics(
    links: ArmLinks, base_xyz_m: np.ndarray, base_yaw_rad: float, joints: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Joint origins and gripper orientation in the world frame.

    Returns ``points`` (6, 3): base, shoulder, elbow, wrist_angle, wrist_rotate, end effector
    (fingertip centre); and ``gripper_rotation`` (3, 3) whose columns are the gripper's
    approach (x), finger-opening (y) and third (z) axes.
    """
    waist, shoulder, elbow, forearm_roll, wrist_angle, wrist_rotate = (
        float(j) for j in joints[:6]
    )
    base = np.asarray(base_xyz_m, dtype=float)
    rotation = _rot_z(base_yaw_rad + waist)
    p_shoulder = base + np.array([0.0, 0.0, links.shoulder_height_m])
    rotation = rotation @ _rot_y(shoulder)
    p_elbow = p_shoulder + rotation @ np.array(
        [links.upper_arm_offset_m, 0.0, links.upper_arm_length_m]
    )
    # The forearm roll axis lies along the forearm, so where on it the joint sits does not
    # change any point of the chain.
    rotation = rotation @ _rot_y(elbow) @ _rot_x(forearm_roll)
    p_wrist = p_elbow + rotation[:, 0] * links.forearm_length_m
    rotation = rotation @ _rot_y(wrist_angle)
    p_wrist_rotate = p_wrist + rotation[:, 0] * links.wrist_length_m
    rotation = rotation @ _rot_x(wrist_rotate)
    p_end = p_wrist_rotate + rotation[:, 0] * links.gripper_length_m
    points = np.stack([base, p_shoulder, p_elbow, p_wrist, p_wrist_rotate, p_end])
    return points, rotation


def top_down_ik(
    links: ArmLinks,
    base_xyz_m: np.ndarray,
    base_yaw_rad: float,
    end_effector_xyz_m: np.ndarray,
    wrist_rotate_rad: float = 0.0,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
) -> np.ndarray:
    """The 6 arm joints that put the fingertip centre at a world point, gripper pointing down.

    Closed form, elbow up, forearm_roll = 0: the waist faces the point, and the shoulder, elbow
    and wrist_angle solve a planar two-link problem for the wrist_angle axis, which sits
    ``wrist_length + gripper_length`` straight above the target. With wrist_rotate = 0 the
    fingers open tangentially (across the line from the base); with +pi/2 radially.
    Raises UnreachableError when the point is out of reach or a joint leaves [lower, upper].
    """
    local = _rot_z(-base_yaw_rad) @ (
        np.asarray(end_effector_xyz_m, dtype=float) - np.asarray(base_xyz_m)
    )
    waist = math.atan2(local[1], local[0])
    radial = math.hypot(local[0], local[1])
    # Planar problem in (radial, height) with elevation angles measured up from horizontal.
    dx = radial
    dz = local[2] + links.wrist_length_m + links.gripper_length_m - links.shoulder_height_m
    upper_len = math.hypot(links.upper_arm_offset_m, links.upper_arm_length_m)
    fore_len = links.forearm_length_m
    cos_bend = (dx * dx + dz * dz - upper_len**2 - fore_len**2) / (2.0 * upper_len * fore_len)
    if not -1.0 <= cos_bend <= 1.0:
        raise UnreachableError(
            f"end effector {np.round(end_effector_xyz_m, 3).tolist()} is out of reach of the arm "
            "at "
            f"{np.round(base_xyz_m, 3).tolist()} for a top-down grasp"
        )
    bend = math.acos(cos_bend)  # elevation of upper arm minus elevation of forearm (elbow up)
    upper_elev = math.atan2(dz, dx) + math.atan2(
        fore_len * math.sin(bend), upper_len + fore_len * math.cos(bend)
    )
    fore_elev = upper_elev - bend
    zero_pose_upper_elev = math.atan2(links.upper_arm_length_m, links.upper_arm_offset_m)
    shoulder = zero_pose_upper_elev - upper_elev
    elbow = -fore_elev - shoulder
    wrist_angle = math.pi / 2 + fore_elev  # shoulder + elbow + wrist_angle = pi/2 points down
    joints = np.array([waist, shoulder, elbow, 0.0, wrist_angle, wrist_rotate_rad])
    if lower is not None and upper is not None:
        lo, hi = np.asarray(lower)[:ARM_JOINTS], np.asarray(upper)[:ARM_JOINTS]
        outside = (joints < lo) | (joints > hi)
        if outside.any():
            raise UnreachableError(
                f"top-down grasp at {np.round(end_effector_xyz_m, 3).tolist()} needs joints "
                f"{np.flatnonzero(outside).tolist()} outside their limits: "
                f"{np.round(joints, 3).tolist()}"
            )
    return joints
