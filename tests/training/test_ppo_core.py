"""The PPO-Lagrangian arithmetic (training/trainers/ppo_core.py) against values worked by hand."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from training.trainers.policy import response_mask
from training.trainers.ppo_core import (
    LagrangeMultiplier,
    clipped_policy_loss,
    clipped_value_loss,
    end_indices,
    gae,
    kl_penalised_returns,
    mixed_advantage,
    shaped_reward,
)

T = torch.tensor


def close(actual, expected, tol=1e-6):
    assert torch.allclose(actual.double(), T(expected, dtype=torch.float64), atol=tol), (actual, expected)


def test_gae_matches_the_recursion_worked_by_hand():
    # delta_2 = 1 - 0.4 = 0.6; delta_1 = 0.4 - 0.2 = 0.2 -> A_1 = 0.2 + 0.95 * 0.6 = 0.77;
    # delta_0 = 0.2 - 0.5 = -0.3 -> A_0 = -0.3 + 0.95 * 0.77 = 0.4315; returns = A + V.
    values, rewards, mask = T([[0.5, 0.2, 0.4]]), T([[0.0, 0.0, 1.0]]), T([[1.0, 1.0, 1.0]])
    advantages, returns = gae(values, rewards, mask, gamma=1.0, lam=0.95)
    close(advantages, [[0.4315, 0.77, 0.6]])
    close(returns, [[0.9315, 0.97, 1.0]])
    # gamma 0.9, lambda 0.5: delta_1 = 0.9 * 0.4 - 0.2 = 0.16 -> A_1 = 0.16 + 0.45 * 0.6 = 0.43;
    # delta_0 = 0.9 * 0.2 - 0.5 = -0.32 -> A_0 = -0.32 + 0.45 * 0.43 = -0.1265.
    advantages, _ = gae(values, rewards, mask, gamma=0.9, lam=0.5)
    close(advantages, [[-0.1265, 0.43, 0.6]])


def test_gae_ends_each_episode_at_its_mask():
    # Past the end the reward and value are ignored (garbage here) and the value after the end is 0:
    # delta_1 = 2 - 0.3 = 1.7, delta_0 = 0.3 - 0.1 = 0.2 -> A_0 = 0.2 + 0.95 * 1.7 = 1.815.
    values, rewards, mask = T([[0.1, 0.3, 7.0]]), T([[0.0, 2.0, 9.0]]), T([[1.0, 1.0, 0.0]])
    advantages, returns = gae(values, rewards, mask, gamma=1.0, lam=0.95)
    close(advantages, [[1.815, 1.7, 0.0]])
    close(returns, [[1.915, 2.0, 0.0]])


def test_the_kl_penalty_is_split_between_reward_and_cost_under_ppo_lag():
    log_probs, ref = T([[-1.0, -2.0, -0.5]]), T([[-1.5, -2.0, -1.0]])
    mask = T([[1.0, 1.0, 1.0]])
    # penalty = -0.1 * (0.5, 0, 0.5); half to the reward, the opposite half to the cost; scores at the end.
    rewards, costs = kl_penalised_returns(
        reward=T([2.0]),
        cost=T([-1.0]),
        log_probs=log_probs,
        ref_log_probs=ref,
        mask=mask,
        kl_coeff=0.1,
        score_clip=50.0,
        split_kl=True,
    )
    close(rewards, [[-0.025, 0.0, 1.975]])
    close(costs, [[0.025, 0.0, -0.975]])
    # PPO and reward shaping: the reward takes the whole penalty.
    rewards, costs = kl_penalised_returns(
        reward=T([2.0]),
        cost=None,
        log_probs=log_probs,
        ref_log_probs=ref,
        mask=mask,
        kl_coeff=0.1,
        score_clip=50.0,
        split_kl=False,
    )
    close(rewards, [[-0.05, 0.0, 1.95]])
    assert costs is None


def test_scores_land_on_each_episodes_end_token_and_are_clipped():
    mask = T([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    assert end_indices(mask).tolist() == [1, 2, 0]
    zeros = torch.zeros(3, 3)
    rewards, costs = kl_penalised_returns(
        reward=T([1.0, 100.0, -3.0]),
        cost=T([0.5, 0.0, -80.0]),
        log_probs=zeros,
        ref_log_probs=zeros,
        mask=mask,
        kl_coeff=0.1,
        score_clip=50.0,
        split_kl=True,
    )
    close(rewards, [[0.0, 1.0, 0.0], [0.0, 0.0, 50.0], [-3.0, 0.0, 0.0]])
    close(costs, [[0.0, 0.5, 0.0], [0.0, 0.0, 0.0], [-50.0, 0.0, 0.0]])


def test_the_response_mask_keeps_tokens_up_to_the_first_end_token():
    eos = 2
    assert response_mask(T([[5, 2, 7, 2], [5, 6, 7, 8], [2, 2, 2, 2]]), eos).tolist() == [
        [1, 1, 0, 0],
        [1, 1, 1, 1],
        [1, 0, 0, 0],
    ]


def test_the_mixed_advantage_and_reward_shaping():
    close(mixed_advantage(T([1.0]), T([2.0]), 3.0), [-1.25])  # (1 - 3 * 2) / (1 + 3)
    close(mixed_advantage(T([1.0]), T([2.0]), 0.0), [1.0])
    close(shaped_reward(T([2.0, 1.0]), T([1.0, -1.0]), 0.5), [1.5, 1.5])


def test_the_clipped_policy_objective():
    mask = T([[1.0, 1.0, 1.0]])
    old = torch.zeros(1, 3)
    new = T([[math.log(1.5), math.log(1.5), math.log(0.5)]])
    # ratio 1.5, A 1: max(-1.5, -1.2) = -1.2; ratio 1.5, A -1: max(1.5, 1.2) = 1.5;
    # ratio 0.5, A 1: max(-0.5, -0.8) = -0.5. Mean 1.6 / 3; every ratio is outside [0.8, 1.2].
    loss, clip_fraction = clipped_policy_loss(new, old, T([[1.0, -1.0, 1.0]]), mask, clip=0.2)
    assert loss.item() == pytest.approx((-1.2 + 1.5 - 0.5) / 3)
    assert clip_fraction.item() == 1.0
    loss, clip_fraction = clipped_policy_loss(old, old, T([[1.0, -2.0, 0.0]]), T([[1.0, 1.0, 0.0]]), clip=0.2)
    assert loss.item() == pytest.approx(0.5) and clip_fraction.item() == 0.0


def test_the_clipped_value_loss():
    mask = T([[1.0, 1.0, 1.0]])
    values, old = T([[3.0, 3.0, 1.5]]), T([[1.0, 1.0, 1.0]])
    # clip(V, old +- 1) = (2, 2, 1.5): max((3-0)^2, (2-0)^2) = 9; max((3-5)^2, (2-5)^2) = 9;
    # max(1.5^2, 1.5^2) = 2.25; loss = 0.5 * mean = 0.5 * (9 + 9 + 2.25) / 3.
    loss = clipped_value_loss(values, old, T([[0.0, 5.0, 0.0]]), mask, clip=1.0)
    assert loss.item() == pytest.approx(0.5 * (9 + 9 + 2.25) / 3)


def multiplier(**changes):
    settings = {"init": 1.0, "lr": 0.1, "threshold": 0.0, "window": 2, "lambda_max": 5.0}
    return LagrangeMultiplier(**{**settings, **changes})


def test_lambda_rises_while_the_cost_is_over_the_threshold():
    lam = multiplier()
    lam.observe([1.0, 1.0])
    # d/d log(lambda) of -(1 - 0) * lambda is -1: SGD moves log(lambda) from 0 to 0.1.
    assert lam.step(0) == pytest.approx(math.exp(0.1))
    lam.observe([3.0, 3.0])
    # The window keeps the last 2 episodes (mean 3): log(lambda) += 0.1 * 3 * e^0.1.
    assert lam.step(1) == pytest.approx(math.exp(0.1 + 0.3 * math.exp(0.1)))


def test_lambda_falls_to_its_floor_while_under_the_threshold_and_stops_at_its_cap():
    lam = multiplier(lambda_min=0.5, threshold=0.5)
    lam.observe([-1.0, -1.0])
    assert lam.step(0) == pytest.approx(math.exp(-0.15))  # -(mean - d) = 1.5 -> log(lambda) -= 0.1 * 1.5
    for step in range(1, 30):
        lam.step(step)
    assert lam.value == pytest.approx(0.5)
    capped = multiplier(lambda_max=1.2)
    capped.observe([10.0, 10.0])
    assert capped.step(0) == pytest.approx(1.2)
    # No floor: lambda keeps falling towards 0, ever more slowly (each step moves log(lambda) by
    # lr * 5 * lambda), and never reaches or passes it.
    unfloored = multiplier()
    unfloored.observe([-5.0, -5.0])
    trace = [unfloored.step(step) for step in range(20)]
    assert all(later < earlier for earlier, later in itertools.pairwise(trace))
    assert 0 < trace[-1] < 0.1


def test_lambda_waits_for_its_delay_and_its_state_round_trips():
    lam = multiplier(delay=3)
    lam.observe([2.0, 2.0])
    assert lam.step(0) == 1.0 and lam.step(2) == 1.0
    assert lam.step(3) > 1.0
    copy = multiplier(delay=3)
    copy.load_state_dict(lam.state_dict())
    assert copy.value == lam.value and list(copy.window) == [2.0, 2.0] and copy.updates == 1
    lam.observe([5.0]), copy.observe([5.0])
    assert lam.step(4) == copy.step(4)
