"""Feedback: from what the teachers said about each sampled token to the loss on that token.

A method picks one registered function per knob (baselines/*.yaml), applied in this order
(DESIGN.md): teacher combine (opdbench.teachers) → log-ratio (`scaling`) → `shaping` (-f'(r)) →
`credit` (gamma / GAE) → gates (IS correction, token filter, special tokens) → `whiten`, giving an
advantage and a weight per token; then the per-token loss (`loss`, plus `routing`, an entropy bonus
and a KL-to-reference term), averaged over the batch's valid tokens.

Everything here but `token_loss` is detached and works on any set of rows: the trainer computes it
for the whole batch when a knob needs batch statistics (`needs_whole_batch`), and otherwise one
micro-batch at a time, inside the pass that takes the gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from ..teachers import TeacherScores
from .credit import CREDITS
from .gates import BATCH_LEVEL, IS_CORRECTIONS, TOKEN_SCORES, WHITENINGS, percentile_band
from .routing import ROUTINGS
from .scaling import SCALINGS
from .shaping import SHAPINGS
from .support import LOSSES, StudentTokens

KNOBS = {"loss": LOSSES, "scaling": SCALINGS, "shaping": SHAPINGS, "credit": CREDITS, "routing": ROUTINGS,
         "is_correction": IS_CORRECTIONS, "token_filter": TOKEN_SCORES, "whiten": WHITENINGS}


@dataclass
class Signals:
    """Everything a feedback knob may read, one value per response token (B rows × R tokens), detached."""

    learner_logp_B_R: torch.Tensor  # current policy, recomputed by the learner
    rollout_logp_B_R: torch.Tensor  # recorded by the sampler
    teacher: TeacherScores  # the (combined) teacher
    mask_B_R: torch.Tensor  # 1.0 on valid response tokens
    group_B: torch.Tensor  # prompt index of each row
    student_entropy_B_R: torch.Tensor
    values_B_R: torch.Tensor | None = None  # value head V(s_t), for GAE
    ref_logp_B_R: torch.Tensor | None = None  # reference policy (ExOPD, KL-to-reference)
    token_kl_B_R: torch.Tensor | None = None  # full-vocabulary KL(student || teacher) at each token
    special_B_R: torch.Tensor | None = None  # 1.0 where a special-token mask removes the token

    @property
    def teacher_logp_B_R(self) -> torch.Tensor:
        return self.teacher.logp_B_R

    @property
    def teacher_entropy_B_R(self) -> torch.Tensor:
        return self.teacher.entropy_B_R

    @property
    def log_r_B_R(self) -> torch.Tensor:
        return self.learner_logp_B_R - self.teacher_logp_B_R

    def rows(self, rows, R: int) -> "Signals":
        def cut(x):
            if x is None:
                return None
            if isinstance(x, TeacherScores):
                return x.rows(rows, R)
            return x[rows] if x.dim() == 1 else x[rows, :R]  # per row (group_B) or per token
        return Signals(*(cut(getattr(self, f.name)) for f in fields(self)))


def needs_whole_batch(method) -> bool:
    """True when a knob reads statistics of the whole batch (percentile filters, group/batch whitening)."""
    return ("token_filter", method.token_filter) in BATCH_LEVEL or ("whiten", method.whiten) in BATCH_LEVEL


def advantages(method, signals: Signals) -> torch.Tensor:
    """A_B_R (zero outside the kept tokens)."""
    log_r = SCALINGS.get(method.scaling)(signals, **method.scaling_params)
    reward = SHAPINGS.get(method.shaping)(log_r, **method.shaping_params)
    adv = CREDITS.get(method.credit)(reward * signals.mask_B_R, signals.mask_B_R, signals.values_B_R,
                                     **method.credit_params)
    kept = signals.mask_B_R * (token_weights(method, signals) > 0)
    return WHITENINGS.get(method.whiten)(adv * kept, kept, signals.group_B) * kept


def token_weights(method, signals: Signals) -> torch.Tensor:
    """w_B_R: IS correction × token filter × special-token mask, on valid tokens."""
    weight = IS_CORRECTIONS.get(method.is_correction)(signals.learner_logp_B_R, signals.rollout_logp_B_R,
                                                      **method.is_params) * signals.mask_B_R
    score = TOKEN_SCORES.get(method.token_filter)(signals)
    if score is not None:
        weight = weight * percentile_band(score, signals.mask_B_R, method.filter_band[0], method.filter_band[1])
    if signals.special_B_R is not None:
        weight = weight * (1 - signals.special_B_R)
    return weight


def token_loss(method, student: StudentTokens, adv_b_r, signals: Signals, ids_b_r) -> torch.Tensor:
    """The per-token loss L_b_r (with gradient) of one micro-batch, before weights and the mean."""
    loss = LOSSES.get(method.loss)(student, adv_b_r, signals.teacher, **method.loss_params)
    loss = loss + ROUTINGS.get(method.routing)(student, adv_b_r, signals.teacher, ids_b_r, **method.routing_params)
    if method.entropy_bonus:
        loss = loss - method.entropy_bonus * student_entropy(student)
    if method.kl_to_reference:  # k2 as a differentiable loss: its expected gradient is that of KL(theta || ref)
        loss = loss + method.kl_to_reference * 0.5 * (student.logp_b_r - signals.ref_logp_B_R).square()
    return loss


def student_entropy(student: StudentTokens) -> torch.Tensor:
    logp = student.log_probs()
    return -(logp.exp() * logp).sum(-1)
