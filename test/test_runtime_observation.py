import numpy as np
import pytest

from rtc_ros.runtime.observation import (
    ObservationAssembler,
    ObservationError,
    ObservationSpec,
    image_to_array,
)

SHAPE = (3, 2, 3)  # C, H, W


def _rgb_image():
    return np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)  # H, W, C


def test_rgb8_image_becomes_channels_first():
    pixels = _rgb_image()
    array = image_to_array(2, 3, "rgb8", 9, pixels.tobytes(), SHAPE)
    assert np.array_equal(array, pixels.transpose(2, 0, 1))


def test_bgr8_image_is_converted_to_rgb():
    pixels = _rgb_image()
    array = image_to_array(2, 3, "bgr8", 9, pixels[..., ::-1].copy().tobytes(), SHAPE)
    assert np.array_equal(array, pixels.transpose(2, 0, 1))


def test_row_padding_in_step_is_skipped():
    pixels = _rgb_image()
    padded = np.concatenate([pixels.reshape(2, 9), np.zeros((2, 3), np.uint8)], axis=1)
    array = image_to_array(2, 3, "rgb8", 12, padded.tobytes(), SHAPE)
    assert np.array_equal(array, pixels.transpose(2, 0, 1))


def test_mono8_image_has_one_channel():
    pixels = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert np.array_equal(
        image_to_array(2, 3, "mono8", 3, pixels.tobytes(), (1, 2, 3)), pixels[None]
    )


@pytest.mark.parametrize(
    "height, width, encoding, text",
    [
        (4, 3, "rgb8", "expects 3x2x3"),
        (2, 3, "16UC1", "not supported"),
    ],
)
def test_wrong_size_or_encoding_is_rejected_with_the_reason(height, width, encoding, text):
    with pytest.raises(ObservationError, match=text):
        image_to_array(height, width, encoding, width * 3, bytes(height * width * 3), SHAPE)


def test_truncated_image_data_is_rejected():
    with pytest.raises(ObservationError, match="too short"):
        image_to_array(2, 3, "rgb8", 9, bytes(10), SHAPE)


def _assembler(max_age_s=0.5, cameras=("top",)):
    return ObservationAssembler(ObservationSpec(("j1", "j2", "j3"), cameras, SHAPE, max_age_s))


def test_joints_are_mapped_by_name_not_by_position_in_the_message():
    assembler = _assembler(cameras=())
    assembler.add_joint_state(["j3", "other", "j1"], [3.0, 9.0, 1.0], stamp_s=10.0, now_s=10.0)
    assembler.add_joint_state(["j2"], [2.0], stamp_s=10.0, now_s=10.0)
    observation, reason = assembler.assemble(now_s=10.1)
    assert reason == "" and observation["state"].tolist() == [[1.0, 2.0, 3.0]]


def test_missing_joints_are_named():
    assembler = _assembler(cameras=())
    assembler.add_joint_state(["j1"], [1.0], stamp_s=10.0, now_s=10.0)
    observation, reason = assembler.assemble(now_s=10.0)
    assert observation is None and reason == "no joint state yet for j2, j3"


def test_stale_joint_states_and_images_are_rejected():
    assembler = _assembler()
    assembler.add_joint_state(["j1", "j2", "j3"], [1.0, 2.0, 3.0], stamp_s=10.0, now_s=10.0)
    assembler.add_image("top", np.zeros(SHAPE, np.uint8), stamp_s=10.0, now_s=10.0)
    assert assembler.assemble(now_s=10.4)[0] is not None
    observation, reason = assembler.assemble(now_s=11.0)
    assert observation is None and "1.000 s old" in reason


def test_the_joint_state_age_is_kept_apart_from_the_older_image_age():
    assembler = _assembler()
    assembler.add_image("top", np.zeros(SHAPE, np.uint8), stamp_s=10.0, now_s=10.0)
    assembler.add_joint_state(["j1", "j2", "j3"], [1.0, 2.0, 3.0], stamp_s=10.05, now_s=10.05)
    assert assembler.assemble(now_s=10.1)[0] is not None
    assert assembler.last_age_s == pytest.approx(0.1)
    assert assembler.last_joint_state_age_s == pytest.approx(0.05)


def test_observation_waits_for_every_camera():
    assembler = _assembler(cameras=("top", "wrist"))
    assembler.add_joint_state(["j1", "j2", "j3"], [1.0, 2.0, 3.0], stamp_s=10.0, now_s=10.0)
    assembler.add_image("top", np.zeros(SHAPE, np.uint8), stamp_s=10.0, now_s=10.0)
    assert assembler.assemble(now_s=10.0) == (None, "no image yet from camera wrist")
    assembler.add_image("wrist", np.ones(SHAPE, np.uint8), stamp_s=10.0, now_s=10.0)
    observation, _ = assembler.assemble(now_s=10.0)
    assert observation["image"].shape == (1, 6, 2, 3)


def test_nan_joint_positions_are_rejected_and_counted():
    assembler = _assembler(cameras=())
    with pytest.raises(ObservationError, match="NaN"):
        assembler.add_joint_state(
            ["j1", "j2", "j3"], [1.0, float("nan"), 3.0], stamp_s=10.0, now_s=10.0
        )
    assert assembler.rejected == 1 and "NaN" in assembler.last_rejection
    assert assembler.assemble(now_s=10.0)[0] is None


@pytest.mark.parametrize("names", [[], ["base_x", "base_y"]])
def test_joint_states_without_a_configured_joint_are_rejected_and_counted(names):
    assembler = _assembler(cameras=())
    with pytest.raises(ObservationError, match="none of the configured joints"):
        assembler.add_joint_state(names, [0.0] * len(names), stamp_s=10.0, now_s=10.0)
    assert assembler.rejected == 1


def test_future_stamps_beyond_the_clock_skew_are_rejected_so_a_stopped_sensor_goes_stale():
    assembler = _assembler()
    assembler.add_joint_state(
        ["j1", "j2", "j3"], [1.0, 2.0, 3.0], stamp_s=10.05, now_s=10.0
    )  # within 0.1 s
    assembler.add_image("top", np.zeros(SHAPE, np.uint8), stamp_s=10.0, now_s=10.0)
    with pytest.raises(ObservationError, match="3600.000 s in the future"):
        assembler.add_image("top", np.ones(SHAPE, np.uint8), stamp_s=3610.0, now_s=10.0)
    with pytest.raises(ObservationError, match="in the future"):
        assembler.add_joint_state(["j1", "j2", "j3"], [9.0, 9.0, 9.0], stamp_s=3610.0, now_s=10.0)
    assert assembler.rejected == 2
    observation, _ = assembler.assemble(now_s=10.1)
    assert (
        observation["state"].tolist() == [[1.0, 2.0, 3.0]] and int(observation["image"].max()) == 0
    )
    observation, reason = assembler.assemble(now_s=11.0)
    assert observation is None and "s old" in reason


def test_placeholder_observation_has_the_shapes_and_types_of_an_assembled_one():
    spec = ObservationSpec(("a", "b"), ("top", "wrist"), SHAPE, max_age_s=1.0)
    assembler = ObservationAssembler(spec)
    assembler.add_joint_state(["a", "b"], [0.5, -0.5], stamp_s=10.0, now_s=10.0)
    for camera in ("top", "wrist"):
        assembler.add_image(camera, np.full(SHAPE, 7, np.uint8), stamp_s=10.0, now_s=10.0)
    observation, _ = assembler.assemble(10.1)
    placeholder = assembler.placeholder()
    assert {k: (v.shape, v.dtype) for k, v in placeholder.items()} == {
        k: (v.shape, v.dtype) for k, v in observation.items()
    }
    assert (
        placeholder["image"].shape == (1, 6, 2, 3)
        and float(np.abs(placeholder["state"]).max()) == 0.0
    )
