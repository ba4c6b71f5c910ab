"""Write a policy checkpoint with random weights, in the kind's real saved format.

    python -m rtc_ros.policies.make_checkpoint --kind smolvla|pi0|pi05|builtin-pi0 \
        [--size tiny|full] --output DIR [--config config/bimanual.yaml]

For tests and first trials without downloads: the joint names, state and action sizes and
cameras fit the simulated bimanual robot (or the joints and cameras of ``--config``, a node
parameter file). ``smolvla``, ``pi0`` and ``pi05`` write a LeRobot 0.4.4 ``save_pretrained``
folder (config.json, model.safetensors, the pre- and postprocessor with normalisation
statistics) plus ``rtc_ros.json`` with the joint names; ``builtin-pi0`` writes DIR/policy.pt.
``--size tiny`` is small enough for a CPU (smolvla and builtin-pi0), ``full`` is the real
architecture. The weights are random: the policy moves the robot, it does not solve a task.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from rtc_ros.policies.lerobot.folder import RobotDescription

KINDS = ("smolvla", "pi0", "pi05", "builtin-pi0")
SIZES = ("tiny", "full")
BUILTIN_FILE = "policy.pt"


def simulated_robot() -> RobotDescription:
    """The simulated bimanual robot's joints and its one camera, as
    config/bimanual.yaml sets them.
    """
    from rtc_ros.sim.config import BimanualConfig

    sim = BimanualConfig()
    return RobotDescription(
        tuple(sim.joint_names),
        tuple(sim.position_lower),
        tuple(sim.position_upper),
        ("top",),
        sim.image_height,
        sim.image_width,
    )


def robot_from_parameters(path: str | pathlib.Path) -> RobotDescription:
    """Joints, limits and cameras from a node parameter file (``/**: ros__parameters:``)."""
    import yaml

    document = yaml.safe_load(pathlib.Path(path).read_text())
    sections = [v.get("ros__parameters", {}) for v in document.values() if isinstance(v, dict)]
    values = {k: v for section in sections for k, v in section.items()}
    missing = [k for k in ("joint_names", "position_lower", "position_upper") if k not in values]
    if missing:
        raise ValueError(f"{path} does not set {', '.join(missing)}")
    return RobotDescription(
        tuple(values["joint_names"]),
        tuple(map(float, values["position_lower"])),
        tuple(map(float, values["position_upper"])),
        tuple(values.get("camera_names", ["top"])),
        int(values.get("image_height", 96)),
        int(values.get("image_width", 96)),
    )


def make_checkpoint(
    kind: str,
    size: str,
    output: str | pathlib.Path,
    robot: RobotDescription | None = None,
    prediction_horizon: int = 50,
    seed: int = 0,
) -> pathlib.Path:
    """Write the checkpoint; returns what to pass as ``policy`` (the folder, or the .pt file)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    robot = robot or simulated_robot()
    output = pathlib.Path(output).expanduser()
    if kind == "builtin-pi0":
        import dataclasses

        from rtc_ros.policies.action_expert import ActionExpertPolicy, pi0_config, tiny_config

        config = (tiny_config if size == "tiny" else pi0_config)(
            len(robot.joint_names), prediction_horizon
        )
        config = dataclasses.replace(config, num_images=max(1, len(robot.camera_names)))
        output.mkdir(parents=True, exist_ok=True)
        path = output / BUILTIN_FILE
        ActionExpertPolicy(config, seed=seed).save(path, joint_names=robot.joint_names)
        return path
    from rtc_ros.policies.lerobot.folder import write_random_folder

    return write_random_folder(kind, size == "tiny", robot, output, prediction_horizon, seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", required=True, choices=KINDS)
    parser.add_argument("--size", default="tiny", choices=SIZES)
    parser.add_argument("--output", required=True, help="folder to write (created if needed)")
    parser.add_argument(
        "--config",
        help="node parameter file whose joints and cameras to fit "
        "(default: the simulated bimanual robot)",
    )
    parser.add_argument("--prediction-horizon", type=int, default=50, help="H, actions per chunk")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from rtc_ros.policies.lerobot.model import LeRobotUnavailable

    try:
        robot = robot_from_parameters(args.config) if args.config else None
        path = make_checkpoint(
            args.kind, args.size, args.output, robot, args.prediction_horizon, args.seed
        )
    except (ValueError, OSError, LeRobotUnavailable) as error:
        print(f"make_checkpoint: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.kind} ({args.size}, random weights) to {path}; run it with policy:={path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
