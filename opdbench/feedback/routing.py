"""Vocabulary routing (METHODS.md §4): where a rejected token's probability mass should go.

Each entry returns an extra per-token loss (with gradient) added to the method's loss.
"""

from __future__ import annotations

import torch

from ..registry import Registry
from .support import StudentTokens

ROUTINGS: Registry = Registry("routing")


@ROUTINGS.register("none")
def no_routing(student: StudentTokens, adv_b_r, teacher, ids_b_r) -> torch.Tensor:
    return torch.zeros_like(adv_b_r)


def student_top_p(logp_b_r_V: torch.Tensor, top_p: float) -> torch.Tensor:
    """True on the smallest set of tokens whose student probability reaches top_p."""
    sorted_logp, order = logp_b_r_V.sort(-1, descending=True)
    probs = sorted_logp.exp()
    keep_sorted = probs.cumsum(-1) - probs < top_p
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


@ROUTINGS.register("cr_opd")
def counterfactual_routing(student: StudentTokens, adv_b_r, teacher, ids_b_r, top_p: float = 0.9,
                           eta: float = 1.0, cap: float = 5.0) -> torch.Tensor:
    """CR-OPD [ours]: when A_t < 0, route mass to C_t = TopK_T ∩ TopP_theta \\ {y_t} ("teacher-supported,
    student-reachable"), in proportion rho(v) = pi_T(v) / pi_T(C_t):
    eta * min(-A_t, cap) * sum_{v in C_t} rho(v) (-log pi_theta(v)). Zero when A_t >= 0 or C_t is empty."""
    log_p = student.log_probs()
    idx = teacher.topk_idx_B_R_K
    reachable = student_top_p(log_p.detach(), top_p).gather(-1, idx)
    candidate = reachable & (idx != ids_b_r[..., None])
    teacher_p = teacher.topk_logp_B_R_K.exp() * candidate
    rho = teacher_p / teacher_p.sum(-1, keepdim=True).clamp(min=1e-30)
    cross_entropy = -(rho * log_p.gather(-1, idx)).sum(-1)
    strength = eta * (-adv_b_r).clamp(min=0, max=cap)
    return strength * cross_entropy
