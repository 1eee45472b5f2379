"""The reward and cost losses against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from training.trainers.losses import cost_loss, l2_penalty, pairwise_loss, reward_loss


def nls(x: float) -> float:
    """-log sigmoid(x), by hand."""
    return math.log1p(math.exp(-x))


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def test_reward_loss_matches_hand_computation():
    # Pair 1: margin +1; pair 2: margin -1. L2: mean(2^2 + 1^2, 0^2 + 1^2) = 3.
    expected = (nls(1.0) + nls(-1.0)) / 2 + 0.001 * 3
    assert reward_loss(t(2.0, 0.0), t(1.0, 1.0), l2_coeff=0.001).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.8162617, rel=1e-6)


def test_reward_loss_without_l2_is_log2_for_equal_scores():
    assert reward_loss(t(0.3, -2.0), t(0.3, -2.0), l2_coeff=0.0).item() == pytest.approx(
        math.log(2), rel=1e-6
    )


def test_cost_loss_matches_hand_computation():
    # Harmful pair member unsafe (s=+1), harmless member safe (s=-1), costs on the right sides.
    c_harmful, c_harmless = t(1.0, -0.5), t(-1.0, 0.5)
    s_harmful, s_harmless = t(1.0, 1.0), t(-1.0, 1.0)
    pair1 = nls(1.0 - -1.0) + nls(1.0 * 1.0) + nls(-1.0 * -1.0)
    # Pair 2: both unsafe, but the harmful one is scored lower and negative: every term is large.
    pair2 = nls(-0.5 - 0.5) + nls(1.0 * -0.5) + nls(1.0 * 0.5)
    l2 = 0.001 * ((1.0 + 1.0) + (0.25 + 0.25)) / 2
    expected = (pair1 + pair2) / 2 + l2
    got = cost_loss(c_harmful, c_harmless, s_harmful, s_harmless, l2_coeff=0.001).item()
    assert got == pytest.approx(expected, rel=1e-6)
    assert pair1 == pytest.approx(0.7534514, rel=1e-6)


def test_cost_sign_terms_push_unsafe_costs_up_and_safe_costs_down():
    c_harmful = torch.zeros(1, requires_grad=True)
    c_harmless = torch.zeros(1, requires_grad=True)
    cost_loss(c_harmful, c_harmless, t(1.0), t(-1.0), l2_coeff=0.0).backward()
    assert c_harmful.grad is not None and c_harmless.grad is not None
    # Gradient descent moves against the gradient: the unsafe cost goes up, the safe one down.
    assert c_harmful.grad.item() < 0 < c_harmless.grad.item()


def test_l2_penalty_and_dispatch():
    assert l2_penalty(t(3.0), t(4.0), 0.5).item() == pytest.approx(0.5 * 25)
    hi, lo, s_hi, s_lo = t(0.2), t(0.1), t(1.0), t(-1.0)
    assert pairwise_loss("reward", hi, lo, None, None, 0.001).item() == pytest.approx(
        reward_loss(hi, lo).item()
    )
    assert pairwise_loss("cost", hi, lo, s_hi, s_lo, 0.001).item() == pytest.approx(
        cost_loss(hi, lo, s_hi, s_lo).item()
    )
    with pytest.raises(ValueError, match="safety sign"):
        pairwise_loss("cost", hi, lo, None, None, 0.001)
    with pytest.raises(ValueError, match="unknown model kind"):
        pairwise_loss("moderation", hi, lo, None, None, 0.001)


def test_losses_compute_in_float32_from_half_precision_scores():
    loss = reward_loss(t(1.0).to(torch.bfloat16), t(0.0).to(torch.bfloat16), l2_coeff=0.0)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(nls(1.0), rel=1e-6)
