import math

import pytest
import torch
from torch import nn

from rtc_ros.core import guidance_weight, guided_sample, prefix_weights

H, M = 6, 2


class TinyVelocity(nn.Module):
    """A small nonlinear velocity network, so that the VJP differs from the error term."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(H * M + 1, 32), nn.Tanh(), nn.Linear(32, H * M))

    def forward(self, actions: torch.Tensor, tau: float) -> torch.Tensor:
        t = torch.full((actions.shape[0], 1), tau, dtype=actions.dtype)
        return self.net(torch.cat([actions.flatten(1), t], 1)).view_as(actions)


@pytest.fixture
def velocity():
    return TinyVelocity().double()


def test_guidance_weight_is_beta_at_tau_zero():
    assert guidance_weight(0.0, 5.0) == 5.0


def test_guidance_weight_matches_both_closed_forms_when_unclipped():
    for tau in (0.3, 0.5, 0.8):
        r2 = (1 - tau) ** 2 / (tau**2 + (1 - tau) ** 2)
        assert guidance_weight(tau, 100.0) == pytest.approx((1 - tau) / (tau * r2))
        assert guidance_weight(tau, 100.0) == pytest.approx(
            (tau**2 + (1 - tau) ** 2) / (tau * (1 - tau))
        )


def test_guidance_weight_is_clipped_at_beta():
    assert guidance_weight(0.05, 5.0) == 5.0
    assert guidance_weight(0.5, 1.5) == 1.5
    assert guidance_weight(0.5, 5.0) == pytest.approx(2.0)


@pytest.mark.parametrize(
    "tau, beta, name", [(0.5, 0.0, "beta"), (0.5, -1.0, "beta"), (1.5, 5.0, "tau")]
)
def test_guidance_weight_rejects_bad_arguments(tau, beta, name):
    with pytest.raises(ValueError, match=name):
        guidance_weight(tau, beta)


def _one_step_by_hand(velocity, actions, target, weights, tau, beta, vjp):
    """Steps 1-7 of the spec for n = 1 step starting at tau, with a finite-difference Jacobian."""
    v = velocity(actions, tau)
    estimate = actions + (1 - tau) * v
    error = (target - estimate) * weights[None, :, None]
    if vjp:
        eps = 1e-6
        flat = actions.flatten()
        jacobian = torch.zeros(flat.numel(), flat.numel(), dtype=actions.dtype)
        for j in range(flat.numel()):
            bump = torch.zeros_like(flat)
            bump[j] = eps
            plus = (flat + bump).view_as(actions)
            minus = (flat - bump).view_as(actions)
            jacobian[:, j] = (
                (plus + (1 - tau) * velocity(plus, tau))
                - (minus + (1 - tau) * velocity(minus, tau))
            ).flatten() / (2 * eps)
        g = (error.flatten() @ jacobian).view_as(actions)
    else:
        g = error
    return actions + (v + guidance_weight(tau, beta) * g)


@pytest.mark.parametrize("vjp", [True, False])
def test_one_guided_step_matches_the_equations(velocity, vjp):
    torch.manual_seed(1)
    noise = torch.randn(1, H, M, dtype=torch.float64)
    target = torch.randn(1, H, M, dtype=torch.float64)
    weights = prefix_weights(H, 2, 1).double()
    with torch.no_grad():
        expected = _one_step_by_hand(velocity, noise, target, weights, 0.0, 5.0, vjp)
    actual = guided_sample(
        velocity,
        noise,
        target,
        weights,
        num_steps=1,
        beta=5.0,
        guidance="vjp" if vjp else "stop_gradient",
    )
    assert torch.allclose(actual, expected, atol=1e-6)


def test_vjp_matches_finite_differences_at_an_interior_flow_time(velocity):
    """Two steps: the second runs at tau = 0.5 where the weight is unclipped (w = 2)."""
    torch.manual_seed(2)
    noise = torch.randn(1, H, M, dtype=torch.float64)
    target = torch.randn(1, H, M, dtype=torch.float64)
    weights = prefix_weights(H, 2, 1).double()
    halfway = guided_sample(velocity, noise, target, weights, num_steps=1, beta=5.0)
    halfway = noise + 0.5 * (halfway - noise)  # the first of two steps uses step size 1/2
    with torch.no_grad():
        second = _one_step_by_hand(velocity, halfway, target, weights, 0.5, 5.0, vjp=True)
    expected = halfway + 0.5 * (second - halfway)
    actual = guided_sample(velocity, noise, target, weights, num_steps=2, beta=5.0, guidance="vjp")
    assert torch.allclose(actual, expected, atol=1e-6)


def test_vjp_and_stop_gradient_differ_for_a_nonlinear_network(velocity):
    noise = torch.randn(1, H, M, dtype=torch.float64)
    target = torch.randn(1, H, M, dtype=torch.float64)
    weights = prefix_weights(H, 2, 1).double()
    a = guided_sample(velocity, noise, target, weights, 5, 5.0, "vjp")
    b = guided_sample(velocity, noise, target, weights, 5, 5.0, "stop_gradient")
    assert not torch.allclose(a, b, atol=1e-4)


def test_no_previous_chunk_gives_the_plain_euler_sample(velocity):
    noise = torch.randn(2, H, M, dtype=torch.float64)
    expected = noise.clone()
    with torch.no_grad():
        for k in range(5):
            expected = expected + velocity(expected, k / 5) / 5
    assert torch.allclose(guided_sample(velocity, noise, None, None, 5, 5.0), expected)


@pytest.mark.parametrize("mode", ["vjp", "stop_gradient"])
def test_a_batch_of_four_equals_four_single_calls(velocity, mode):
    noise = torch.randn(4, H, M, dtype=torch.float64)
    target = torch.randn(4, H, M, dtype=torch.float64)
    weights = prefix_weights(H, 2, 2).double()
    batched = guided_sample(velocity, noise, target, weights, 5, 5.0, mode)
    singles = torch.cat(
        [
            guided_sample(velocity, noise[i : i + 1], target[i : i + 1], weights, 5, 5.0, mode)
            for i in range(4)
        ]
    )
    assert torch.allclose(batched, singles, atol=1e-10)


def test_guidance_pulls_the_frozen_prefix_onto_the_previous_chunk(velocity):
    """With the weight at its clip the prefix lands much closer to the target than unguided."""
    torch.manual_seed(3)
    noise = torch.randn(8, H, M, dtype=torch.float64)
    target = torch.randn(8, H, M, dtype=torch.float64)
    weights = prefix_weights(H, 2, 2, "hard").double()
    guided = guided_sample(velocity, noise, target, weights, 10, 5.0, "vjp")
    plain = guided_sample(velocity, noise, None, None, 10, 5.0)
    guided_error = (guided[:, :2] - target[:, :2]).abs().mean()
    plain_error = (plain[:, :2] - target[:, :2]).abs().mean()
    assert guided_error < 0.3 * plain_error


def test_stop_gradient_builds_no_autograd_graph(velocity):
    noise = torch.randn(1, H, M)
    out = guided_sample(
        velocity.float(),
        noise,
        torch.randn(1, H, M),
        prefix_weights(H, 2, 1),
        5,
        5.0,
        "stop_gradient",
    )
    assert out.grad_fn is None and not out.requires_grad and out.is_inference()


def test_vjp_mode_leaves_parameter_gradients_untouched(velocity):
    velocity = velocity.float()
    guided_sample(
        velocity,
        torch.randn(1, H, M),
        torch.randn(1, H, M),
        prefix_weights(H, 2, 1),
        5,
        5.0,
        "vjp",
    )
    assert all(p.grad is None for p in velocity.parameters())


def test_bfloat16_sampling_keeps_the_dtype(velocity):
    model = velocity.to(torch.bfloat16)
    out = guided_sample(
        model,
        torch.randn(1, H, M, dtype=torch.bfloat16),
        torch.randn(1, H, M, dtype=torch.bfloat16),
        prefix_weights(H, 2, 1),
        5,
        5.0,
        "vjp",
    )
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(num_steps=0), "num_steps"),
        (dict(beta=0.0), "beta"),
        (dict(guidance="adjoint"), "guidance"),
        (dict(previous_chunk=torch.randn(1, H - 1, M)), "previous_chunk"),
        (dict(weights=torch.ones(H + 1)), "weights"),
        (dict(previous_chunk=torch.full((1, H, M), math.nan)), "previous_chunk"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_argument(velocity, kwargs, name):
    args = dict(
        velocity=velocity,
        noise=torch.randn(1, H, M, dtype=torch.float64),
        previous_chunk=torch.randn(1, H, M, dtype=torch.float64),
        weights=prefix_weights(H, 2, 1),
        num_steps=5,
        beta=5.0,
        guidance="vjp",
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        guided_sample(**args)
