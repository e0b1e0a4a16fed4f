"""Temporal credit: how much of a later token's signal a token is credited with (METHODS.md §3).

Every function maps the per-token signal `rew_B_R` (the shaped advantage) to the advantage used in
the update. Rows are independent, so credit can be computed on any subset of rows.
"""

from __future__ import annotations

import torch

from ..registry import Registry

CREDITS: Registry = Registry("credit")


def discounted_sum(x_B_R: torch.Tensor, discount: float) -> torch.Tensor:
    """sum_{l >= 0} discount^l x_{t+l} within each row (a reverse scan; R is short)."""
    out = torch.zeros_like(x_B_R)
    running = torch.zeros_like(x_B_R[:, 0])
    for t in range(x_B_R.shape[1] - 1, -1, -1):
        running = x_B_R[:, t] + discount * running
        out[:, t] = running
    return out


@CREDITS.register("none")
def token_level(rew_B_R, mask_B_R, values_B_R=None):
    """Each token keeps its own signal (gamma = 0): the standard, token-level OPD."""
    return rew_B_R


@CREDITS.register("gamma")
def return_to_go(rew_B_R, mask_B_R, values_B_R=None, gamma: float = 1.0):
    """A_t = sum_l gamma^l rew_{t+l}. gamma = 1 is the unbiased sequence-level reverse-KL gradient."""
    return discounted_sum(rew_B_R * mask_B_R, gamma)


@CREDITS.register("gae")
def gae(rew_B_R, mask_B_R, values_B_R, gamma: float = 1.0, lam: float = 0.95):
    """GAE-OPD [ours]: delta_t = rew_t + gamma V(s_{t+1}) - V(s_t) with V(s_{T+1}) = 0, and
    A_t = sum_l (gamma lam)^l delta_{t+l}. The value head regresses on A_t + V(s_t) (trainer)."""
    values = values_B_R * mask_B_R
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], 1)  # 0 after the last token
    delta = (rew_B_R + gamma * next_values - values) * mask_B_R
    return discounted_sum(delta, gamma * lam)
