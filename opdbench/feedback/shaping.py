"""Advantage shaping: the per-token advantage as a function of log r = log pi_theta - log pi_T.

Each entry maps `log_r` elementwise to `A_t`; the trainer then ascends `sg(A_t) * log pi_theta(y_t)`.
METHODS.md §1 gives the math: the correct advantage for an f-divergence is -f'(r).
"""

from __future__ import annotations

import torch

from ..registry import Registry

SHAPINGS: Registry = Registry("shaping")


@SHAPINGS.register("k1")
def k1(log_r: torch.Tensor) -> torch.Tensor:
    """Standard OPD: A_t = -log r_t (the reverse-KL weight -(1 + log r) up to a constant)."""
    return -log_r
