import pytest
import torch

from rtc_ros.core import MaskSchedule, prefix_weights


def test_soft_mask_matches_worked_values_of_the_spec():
    expected = torch.tensor([1, 1, 1, 0.4876, 0.1888, 0.0413, 0, 0, 0, 0])
    assert torch.allclose(prefix_weights(10, 4, 3), expected, atol=1e-4)
    expected = torch.tensor([1, 0.6309, 0.3677, 0.1888, 0.0767, 0.0176, 0, 0])
    assert torch.allclose(prefix_weights(8, 2, 1, "exp"), expected, atol=1e-4)


def test_linear_mask_decays_linearly_over_the_overlap():
    # c_i = (H - s - i) / (H - s - d + 1) = (6 - i) / 4 for d <= i < 6
    assert torch.allclose(
        prefix_weights(10, 4, 3, MaskSchedule.LINEAR),
        torch.tensor([1, 1, 1, 0.75, 0.5, 0.25, 0, 0, 0, 0]),
    )


def test_hard_mask_guides_only_the_frozen_prefix():
    assert prefix_weights(10, 4, 3, "hard").tolist() == [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]


def test_ones_mask_guides_the_whole_overlap():
    assert prefix_weights(10, 4, 3, "ones").tolist() == [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]


def test_zero_delay_starts_decaying_at_the_first_action():
    weights = prefix_weights(8, 2, 0)
    assert weights[0] < 1 and weights[0] > weights[1]


@pytest.mark.parametrize(
    "args, name",
    [
        ((10, 4, -1), "inference_delay"),
        ((10, 4, 7), "inference_delay"),
        ((10, 10, 0), "execution_horizon"),
        ((10, -1, 0), "execution_horizon"),
        ((0, 0, 0), "prediction_horizon"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_argument(args, name):
    with pytest.raises(ValueError, match=name):
        prefix_weights(*args)


def test_unknown_schedule_is_rejected_with_the_valid_names():
    with pytest.raises(ValueError, match="schedule must be one of exp, linear, hard, ones"):
        prefix_weights(10, 4, 3, "cosine")
