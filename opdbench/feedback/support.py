"""Per-token losses: the sampled-token route (an advantage times log pi) and the distributional route
(a divergence between whole next-token distributions, METHODS.md §2).

Each entry maps one micro-batch to a per-token loss `L_b_r` (with gradient); the trainer weights it
by the gates and takes the masked token mean over the whole batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..registry import Registry

LOSSES: Registry = Registry("loss")


@dataclass
class StudentTokens:
    """The learner's forward pass on a micro-batch (with gradient)."""

    logits_b_r_V: torch.Tensor  # logits predicting each response token
    logp_b_r: torch.Tensor  # log pi_theta of the sampled token

    def log_probs(self, temperature: float = 1.0) -> torch.Tensor:
        return (self.logits_b_r_V / temperature).log_softmax(-1)


@LOSSES.register("reinforce")
def reinforce(student: StudentTokens, adv_b_r: torch.Tensor, teacher) -> torch.Tensor:
    """The sampled-token route: -sg(A_t) log pi_theta(y_t)."""
    return -adv_b_r * student.logp_b_r


@LOSSES.register("nll")
def nll(student: StudentTokens, adv_b_r: torch.Tensor, teacher) -> torch.Tensor:
    """Plain likelihood of the sampled tokens: with teacher samples, off-policy distillation (SFT)."""
    return -student.logp_b_r


def _kl(logp_a, logp_b):
    """KL(a || b) over the last dimension, from log-probs (0 log 0 = 0)."""
    return (logp_a.exp() * (logp_a - logp_b)).sum(-1)


@LOSSES.register("gkd")
def gkd(student: StudentTokens, adv_b_r: torch.Tensor, teacher, divergence: str = "jsd",
        beta: float = 0.5, temperature: float = 0.9) -> torch.Tensor:
    """GKD (arXiv 2306.13649): full-vocabulary divergence between the teacher's and the student's
    next-token distributions at temperature tau, per token. `jsd` is the generalized JSD with
    M = beta T + (1 - beta) theta: beta KL(T || M) + (1 - beta) KL(theta || M)."""
    log_p = student.log_probs(temperature)
    log_q = (teacher.logp_full_B_R_V / temperature).log_softmax(-1)  # log-probs re-tempered = logits / tau
    if divergence == "fkl":
        return _kl(log_q, log_p)
    if divergence == "rkl":
        return _kl(log_p, log_q)
    if divergence == "jsd":
        log_m = torch.logsumexp(torch.stack([log_q + math.log(beta), log_p + math.log(1 - beta)]), 0)
        return beta * _kl(log_q, log_m) + (1 - beta) * _kl(log_p, log_m)
    raise ValueError(f"gkd divergence must be fkl, rkl or jsd, not {divergence!r}")


@LOSSES.register("topk_support")
def topk_support(student: StudentTokens, adv_b_r: torch.Tensor, teacher, k: int = 8) -> torch.Tensor:
    """Revisiting OPD (arXiv 2603.25562): reverse KL on the teacher's top-K support S_t with both
    distributions renormalized on S_t: sum_{v in S} p^(v) [log p^(v) - log q^(v)]."""
    idx = teacher.topk_idx_B_R_K[..., :k]
    log_p = student.log_probs().gather(-1, idx).log_softmax(-1)
    log_q = teacher.topk_logp_B_R_K[..., :k].log_softmax(-1)
    return _kl(log_p, log_q)
