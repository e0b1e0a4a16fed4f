"""Feedback: from what the teachers said about each sampled token to the advantage of that token.

The pipeline is one function per knob, applied in order (DESIGN.md): teacher combine → per-token
signal → shaping → credit → routing → gates → whitening. Each knob lives in its own module.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .shaping import SHAPINGS


@dataclass
class Signals:
    """Everything a feedback knob may read, one value per response token (B rows × R tokens)."""

    learner_logp_B_R: torch.Tensor  # current policy, recomputed by the learner (no grad)
    rollout_logp_B_R: torch.Tensor  # recorded by the sampler
    teacher_logp_B_R: torch.Tensor  # the (combined) teacher's log-prob of the sampled token
    mask_B_R: torch.Tensor  # 1.0 on valid response tokens
    group_B: torch.Tensor  # prompt index of each row

    @property
    def log_r_B_R(self) -> torch.Tensor:
        return self.learner_logp_B_R - self.teacher_logp_B_R


def advantages(method, signals: Signals) -> torch.Tensor:
    """A_B_R for a sampled-token method; zero outside the response mask."""
    shape = SHAPINGS.get(method.shaping)
    return shape(signals.log_r_B_R, **method.shaping_params) * signals.mask_B_R
