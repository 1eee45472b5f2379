"""The reward and cost model losses (Safe RLHF, arXiv 2310.12773), as pure functions of score tensors.

Scores are one scalar per sequence. A pair is (higher, lower): the response the model should score
higher first. For the reward model that is (better, worse); for the cost model (more harmful, more
harmless). Signs follow the paper: s = +1 for an unsafe response, -1 for a safe one, so the sign terms
push cost > 0 for unsafe and cost < 0 for safe responses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def l2_penalty(higher: torch.Tensor, lower: torch.Tensor, l2_coeff: float) -> torch.Tensor:
    """l2_coeff * mean(higher^2 + lower^2): keeps the scores from drifting while their gap grows."""
    return l2_coeff * (higher.square() + lower.square()).mean()


def reward_loss(r_better: torch.Tensor, r_worse: torch.Tensor, l2_coeff: float = 0.001) -> torch.Tensor:
    """-log sigmoid(r_better - r_worse), averaged over pairs, plus the L2 term."""
    r_better, r_worse = r_better.float(), r_worse.float()
    return -F.logsigmoid(r_better - r_worse).mean() + l2_penalty(r_better, r_worse, l2_coeff)


def cost_loss(
    c_harmful: torch.Tensor,
    c_harmless: torch.Tensor,
    s_harmful: torch.Tensor,
    s_harmless: torch.Tensor,
    l2_coeff: float = 0.001,
) -> torch.Tensor:
    """Pairwise term plus one sign term per response, averaged over pairs, plus the L2 term.

    -log sigmoid(c_harmful - c_harmless) - log sigmoid(s_harmful * c_harmful)
    - log sigmoid(s_harmless * c_harmless)
    """
    c_harmful, c_harmless = c_harmful.float(), c_harmless.float()
    s_harmful, s_harmless = s_harmful.to(c_harmful.dtype), s_harmless.to(c_harmless.dtype)
    per_pair = (
        -F.logsigmoid(c_harmful - c_harmless)
        - F.logsigmoid(s_harmful * c_harmful)
        - F.logsigmoid(s_harmless * c_harmless)
    )
    return per_pair.mean() + l2_penalty(c_harmful, c_harmless, l2_coeff)


def pairwise_loss(
    kind: str,
    higher: torch.Tensor,
    lower: torch.Tensor,
    higher_sign: torch.Tensor | None,
    lower_sign: torch.Tensor | None,
    l2_coeff: float,
) -> torch.Tensor:
    """Dispatch on the model kind; the reward model ignores the signs."""
    if kind == "reward":
        return reward_loss(higher, lower, l2_coeff)
    if kind == "cost":
        if higher_sign is None or lower_sign is None:
            raise ValueError("the cost loss needs the safety sign of both responses")
        return cost_loss(higher, lower, higher_sign, lower_sign, l2_coeff)
    raise ValueError(f"unknown model kind {kind!r}")
