"""The arithmetic of PPO-Lagrangian (Safe RLHF), on plain tensors: no models, no transformers.

Shapes: a batch of B episodes, each a response of up to T tokens. Per-token tensors are (B, T) over the
response positions only; `mask` is 1 on the response's real tokens (up to and including its end token)
and 0 after it. Episode-level tensors are (B,).

The formulas follow Safe RLHF (Dai et al., arXiv 2310.12773) and its reference code (safe-rlhf,
algorithms/ppo_lag): the reward and the cost model score a whole response at its end token; a
per-token KL penalty against the frozen reference policy is added to the reward (and, with the
opposite sign, to the cost, half to each under PPO-Lag); GAE gives each critic's advantages; the policy
follows the clipped objective on the mixed advantage (A_r - lambda * A_c) / (1 + lambda); and lambda is
exp(log_lambda), moved by plain SGD on -(J_c - threshold) * lambda. Why SGD and not Adam: Adam
normalises a scalar's gradient, so every step moves log_lambda by about its learning rate whatever the
constraint violation (../shared/notes/ppo_lag.md). tests/training/test_ppo_core.py checks each formula
against sequences worked by hand.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from typing import Any

import torch

ALGORITHMS = ("ppo_lag", "ppo", "ppo_rs")


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of `values` where `mask` is 1 (0 when the mask is empty)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def end_indices(mask: torch.Tensor) -> torch.Tensor:
    """(B,) the index of each episode's last real token (its end token, where the scores land)."""
    positions = torch.arange(mask.shape[-1], device=mask.device).expand_as(mask)
    return torch.where(mask.bool(), positions, torch.zeros_like(positions)).max(dim=-1).values


def kl_penalised_returns(
    *,
    reward: torch.Tensor,
    cost: torch.Tensor | None,
    log_probs: torch.Tensor,
    ref_log_probs: torch.Tensor,
    mask: torch.Tensor,
    kl_coeff: float,
    score_clip: float,
    split_kl: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token rewards (and costs): the episode score at the end token plus the KL penalty on every
    token, clipped to +-score_clip.

    The penalty is -kl_coeff * (log pi - log pi_ref) per token. With `split_kl` (PPO-Lag) half of it goes
    to the reward and the opposite half to the cost, so both critics see the same pull back towards the
    reference; otherwise (PPO, reward shaping) the reward takes all of it and the cost none.
    """
    penalty = -kl_coeff * (log_probs - ref_log_probs) * mask
    share = 0.5 if split_kl else 1.0
    ends = end_indices(mask).unsqueeze(-1)
    rewards = torch.scatter_add(share * penalty, -1, ends, reward.to(penalty.dtype).unsqueeze(-1))
    rewards = rewards.clamp(-score_clip, score_clip) * mask
    costs = None
    if cost is not None:
        cost_penalty = -share * penalty if split_kl else torch.zeros_like(penalty)
        costs = torch.scatter_add(cost_penalty, -1, ends, cost.to(penalty.dtype).unsqueeze(-1))
        costs = costs.clamp(-score_clip, score_clip) * mask
    return rewards, costs


def gae(
    values: torch.Tensor, rewards: torch.Tensor, mask: torch.Tensor, *, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns, (B, T) each.

    delta_t = r_t + gamma * V_{t+1} - V_t, A_t = delta_t + gamma * lam * A_{t+1}, returns = A + V; the
    value after the end token (and after the last position) is 0, so an episode ends where its mask does.
    """
    values = values * mask
    rewards = rewards * mask
    steps = rewards.shape[-1]
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(steps)):
        next_value = values[:, t + 1] if t + 1 < steps else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    returns = advantages + values
    return advantages.detach(), returns.detach()


def mixed_advantage(reward_adv: torch.Tensor, cost_adv: torch.Tensor, multiplier: float) -> torch.Tensor:
    """PPO-Lag's policy advantage: (A_r - lambda * A_c) / (1 + lambda), which keeps its scale as lambda grows."""
    return (reward_adv - multiplier * cost_adv) / (1.0 + multiplier)


def shaped_reward(reward: torch.Tensor, cost: torch.Tensor, beta: float) -> torch.Tensor:
    """Reward shaping, the paper's baseline: one score r - beta * c at a fixed beta."""
    return reward - beta * cost


def clipped_policy_loss(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate, masked mean over tokens: max(-A * rho, -A * clip(rho, 1-eps, 1+eps)).
    Returns (loss, clip fraction: the share of tokens whose ratio was clipped)."""
    ratio = torch.exp(log_probs - old_log_probs)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clip_fraction = masked_mean(((ratio - 1.0).abs() > clip).to(log_probs.dtype), mask)
    return loss, clip_fraction


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip: float,
) -> torch.Tensor:
    """The critic's clipped loss: 0.5 * masked mean of max((V - R)^2, (clip(V, V_old +- eps) - R)^2)."""
    clipped = torch.maximum(torch.minimum(values, old_values + clip), old_values - clip)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """The policy's entropy at each position, from its logits (B, T, V) -> (B, T)."""
    log_p = torch.log_softmax(logits.float(), dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


def gather_log_probs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log pi(token) at each position: logits (B, T, V), tokens (B, T) -> (B, T)."""
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


class LagrangeMultiplier:
    """lambda = exp(log_lambda), learnt by plain SGD on -(J_c - threshold) * lambda.

    J_c is the mean episode cost over a moving window of the most recent `window` episodes. The
    gradient with respect to log_lambda is -(J_c - threshold) * lambda, so a step raises lambda by the
    factor exp(lr * (J_c - threshold) * lambda) while the cost is over the threshold and lowers it while
    under. lambda stays in [lambda_min, lambda_max] (lambda_min 0: no floor, it decays towards 0);
    before step `delay` it does not move. Its state (log_lambda, the window, the step) is checkpointed.
    """

    def __init__(
        self,
        *,
        init: float,
        lr: float,
        threshold: float,
        window: int,
        lambda_max: float | None,
        lambda_min: float = 0.0,
        delay: int = 0,
    ) -> None:
        self.log_lambda = torch.nn.Parameter(torch.tensor(math.log(init), dtype=torch.float64))
        self.optimizer = torch.optim.SGD([self.log_lambda], lr=lr)
        self.threshold = threshold
        self.window: deque[float] = deque(maxlen=window)
        self.log_max = math.log(lambda_max) if lambda_max else None
        self.log_min = math.log(lambda_min) if lambda_min > 0 else None
        self.delay = delay
        self.updates = 0

    @property
    def value(self) -> float:
        return float(self.log_lambda.detach().exp())

    def mean_cost(self) -> float | None:
        return sum(self.window) / len(self.window) if self.window else None

    def observe(self, costs: Iterable[float]) -> None:
        """Add finished episodes' costs (every process's, so each holds the same window)."""
        self.window.extend(float(c) for c in costs)

    def step(self, global_step: int) -> float:
        """One SGD step on the multiplier from the window's mean cost; returns the new lambda."""
        mean_cost = self.mean_cost()
        if mean_cost is None or global_step < self.delay:
            return self.value
        self.optimizer.zero_grad()
        loss = -(mean_cost - self.threshold) * self.log_lambda.exp()
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            self.log_lambda.clamp_(
                min=self.log_min if self.log_min is not None else -math.inf,
                max=self.log_max if self.log_max is not None else math.inf,
            )
        self.updates += 1
        return self.value

    def state_dict(self) -> dict[str, Any]:
        return {
            "log_lambda": float(self.log_lambda.detach()),
            "window": list(self.window),
            "window_size": self.window.maxlen,
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.log_lambda.fill_(float(state["log_lambda"]))
        self.window = deque((float(c) for c in state["window"]), maxlen=self.window.maxlen)
        self.updates = int(state.get("updates", 0))
