"""Assembling the policy's observation from the newest joint state and camera images.

Joint states are mapped by name (a driver may publish joints in any order, or several
messages each with some of the joints); images are checked for encoding and size and
converted to (C, H, W) uint8. An observation is complete when every configured joint and
camera has been received, and fresh when none of them is older than ``max_age_s``. Anything
else is rejected with a reason, so the inference node can warn and wait instead of acting on
a partial or stale view of the world.

A message stamped more than ``max_future_s`` ahead of the receiver's clock is rejected when it
arrives: kept, it would count as fresh for as long as its stamp stays ahead, and a sensor that
then stopped would go unnoticed while the policy acted on its last frame.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence

import numpy as np

SUPPORTED_ENCODINGS = {"rgb8": (3, False), "bgr8": (3, True), "mono8": (1, False)}
"""encoding -> (channels, reversed channel order)."""


class ObservationError(ValueError):
    """A message that cannot become part of an observation; the text says why."""


def image_to_array(
    height: int,
    width: int,
    encoding: str,
    step: int,
    data: bytes | memoryview,
    expected_shape: tuple[int, int, int],
) -> np.ndarray:
    """sensor_msgs/Image fields -> (C, H, W) uint8 RGB (or mono),
    validated against expected (C, H, W).
    """
    if encoding not in SUPPORTED_ENCODINGS:
        raise ObservationError(
            f"image encoding {encoding!r} is not supported; use one of "
            f"{', '.join(sorted(SUPPORTED_ENCODINGS))}"
        )
    channels, reverse = SUPPORTED_ENCODINGS[encoding]
    if (channels, height, width) != tuple(expected_shape):
        raise ObservationError(
            f"image is {channels}x{height}x{width} (CxHxW), the policy expects "
            f"{'x'.join(map(str, expected_shape))}; resize the camera stream"
        )
    if step < width * channels or len(data) < step * height:
        raise ObservationError(
            f"image data too short: step {step}, {len(data)} bytes for {height} rows"
        )
    rows = np.frombuffer(data, dtype=np.uint8, count=step * height).reshape(height, step)
    pixels = rows[:, : width * channels].reshape(height, width, channels)
    if reverse:
        pixels = pixels[..., ::-1]
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


@dataclasses.dataclass(frozen=True)
class ObservationSpec:
    joint_names: tuple[str, ...]
    camera_names: tuple[str, ...]
    image_shape: tuple[int, int, int]
    """(C, H, W) every camera must deliver."""
    max_age_s: float
    max_future_s: float = 0.1
    """Largest lead of a stamp over the receiver's clock (clock skew between machines), s."""

    def __post_init__(self) -> None:
        if not self.joint_names:
            raise ValueError("joint_names must not be empty")
        if not self.max_age_s > 0:
            raise ValueError(f"max_age_s must be > 0, got {self.max_age_s}")
        if not self.max_future_s >= 0:
            raise ValueError(f"max_future_s must be >= 0, got {self.max_future_s}")


class ObservationAssembler:
    """Thread-safe store of the newest inputs; :meth:`assemble` returns a policy observation.

    Subscriber callbacks write, the inference thread reads; a lock guards the small dict
    updates (this is not on the controller's path).
    """

    def __init__(self, spec: ObservationSpec) -> None:
        self.spec = spec
        self._index = {name: i for i, name in enumerate(spec.joint_names)}
        self._positions = np.full(len(spec.joint_names), np.nan)
        self._joint_stamps = np.full(len(spec.joint_names), -np.inf)
        self._images: dict[str, tuple[np.ndarray, float]] = {}
        self._lock = threading.Lock()
        self._not_before_s = -np.inf
        self.last_age_s = float("nan")
        """Age of the oldest input of the last assembled observation: how far behind the world it
        is."""
        self.last_joint_state_age_s = float("nan")
        """Age of the oldest joint position of the last assembled observation: where the robot
        was when the policy's chunk begins."""
        self.rejected = 0
        self.last_rejection = ""

    def set_time_limits(self, max_age_s: float, max_future_s: float) -> None:
        """Reject inputs older than ``max_age_s`` or stamped more than
        ``max_future_s`` ahead from now on.
        """
        self.spec = dataclasses.replace(self.spec, max_age_s=max_age_s, max_future_s=max_future_s)

    def discard_before(self, stamp_s: float) -> None:
        """Forget every input and ignore those stamped before ``stamp_s`` (the robot was reset
        then: what it saw before is no longer the world).
        """
        with self._lock:
            self._not_before_s = stamp_s
            self._positions[:] = np.nan
            self._joint_stamps[:] = -np.inf
            self._images.clear()

    def add_joint_state(
        self, names: Sequence[str], positions: Sequence[float], stamp_s: float, now_s: float
    ) -> None:
        """Keep the configured joints of a JointState (other names are other devices' joints).

        Raises :class:`ObservationError` (after counting it) for a message that is unusable as a
        whole: no configured joint in it, names and positions of different lengths, NaN, or a
        stamp in the future.
        """
        if len(names) != len(positions):
            self._reject(f"joint state has {len(names)} names but {len(positions)} positions")
        if not any(name in self._index for name in names):
            self._reject(
                f"joint state names none of the configured joints (got {list(names)[:4]})"
            )
        values = np.asarray(positions, dtype=np.float64)
        if not np.all(np.isfinite(values)):
            self._reject("joint state contains NaN or infinite positions")
        self._check_stamp("joint state", stamp_s, now_s)
        with self._lock:
            if stamp_s < self._not_before_s:
                return
            for name, value in zip(names, values):
                index = self._index.get(name)
                if index is not None:
                    self._positions[index] = value
                    self._joint_stamps[index] = stamp_s

    def add_image(self, camera: str, image: np.ndarray, stamp_s: float, now_s: float) -> None:
        """Keep the newest image of ``camera``; raises
        :class:`ObservationError` for a future stamp.
        """
        self._check_stamp(f"image from camera {camera}", stamp_s, now_s)
        with self._lock:
            if stamp_s >= self._not_before_s:
                self._images[camera] = (image, stamp_s)

    def reject(self, reason: str) -> None:
        """Count a message rejected before it reached the assembler (e.g. a bad image)."""
        self.rejected += 1
        self.last_rejection = reason

    def _check_stamp(self, what: str, stamp_s: float, now_s: float) -> None:
        if stamp_s - now_s > self.spec.max_future_s:
            self._reject(
                f"{what} is stamped {stamp_s - now_s:.3f} s in the future "
                f"(max_clock_skew_s {self.spec.max_future_s})"
            )

    def joint_positions(self) -> np.ndarray:
        with self._lock:
            return self._positions.copy()

    def assemble(self, now_s: float) -> tuple[dict[str, np.ndarray] | None, str]:
        """(observation, "") when complete and fresh, else (None, the reason).

        The observation is a batch of 1: ``state`` (1, J) float32 and ``image`` (1, C, H, W) uint8.
        """
        with self._lock:
            missing = [
                n
                for n, stamp in zip(self.spec.joint_names, self._joint_stamps)
                if stamp == -np.inf
            ]
            if missing:
                return None, f"no joint state yet for {', '.join(missing)}"
            oldest_joint = now_s - float(self._joint_stamps.min())
            if oldest_joint > self.spec.max_age_s:
                return (
                    None,
                    f"joint state is {oldest_joint:.3f} s old (max_age_s {self.spec.max_age_s})",
                )
            images = []
            for camera in self.spec.camera_names:
                if camera not in self._images:
                    return None, f"no image yet from camera {camera}"
                image, stamp = self._images[camera]
                if now_s - stamp > self.spec.max_age_s:
                    return None, (
                        f"image from camera {camera} is {now_s - stamp:.3f} s old "
                        f"(max_age_s {self.spec.max_age_s})"
                    )
                images.append(image)
            positions = self._positions.copy()
            oldest_image = min(
                (self._images[c][1] for c in self.spec.camera_names), default=np.inf
            )
            self.last_age_s = now_s - min(float(self._joint_stamps.min()), oldest_image)
            self.last_joint_state_age_s = now_s - float(self._joint_stamps.min())
        return _observation(positions, images), ""

    def placeholder(self) -> dict[str, np.ndarray]:
        """An observation of the configured shapes (zero joints, black images), to warm the policy
        up before any message has arrived: one-off costs depend on shapes, not on values.
        """
        return _observation(
            np.zeros(len(self.spec.joint_names)),
            [np.zeros(self.spec.image_shape, dtype=np.uint8) for _ in self.spec.camera_names],
        )

    def _reject(self, reason: str) -> None:
        self.reject(reason)
        raise ObservationError(reason)


def _observation(positions: np.ndarray, images: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The policy's input, batch of 1: ``state`` (1, J) float32 and ``image`` (1, C, H, W) uint8,
    the cameras stacked along C.
    """
    observation = {"state": positions.astype(np.float32)[None]}
    if images:
        stacked = np.concatenate(images, axis=0) if len(images) > 1 else images[0]
        observation["image"] = np.ascontiguousarray(stacked)[None]
    return observation
