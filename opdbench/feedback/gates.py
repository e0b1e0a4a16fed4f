"""Gates and weights (METHODS.md §6): which tokens count, and how much.

- IS corrections weight each token by the learner/rollout probability ratio (the rollout may run
  in another dtype or engine than the learner).
- Token filters keep the tokens whose score lies in a percentile band over the batch.
- Whitening rescales the advantages (none / per sample / per prompt group / per batch).
Filters and group/batch whitening read the whole batch; `BATCH_LEVEL` says which do, so the
trainer knows when it cannot compute the feedback one micro-batch at a time.
"""

from __future__ import annotations

import torch

from ..registry import Registry

IS_CORRECTIONS: Registry = Registry("is_correction")
TOKEN_SCORES: Registry = Registry("token_filter")
WHITENINGS: Registry = Registry("whiten")
BATCH_LEVEL = {("token_filter", name) for name in ("kl", "student_entropy", "teacher_entropy")} | {
    ("whiten", "group"), ("whiten", "batch")}


# Rollout/learner mismatch corrections; k_t = pi_learner(y_t) / pi_rollout(y_t).

@IS_CORRECTIONS.register("none")
def no_correction(learner_logp, rollout_logp, lo: float = 0.5, hi: float = 2.0):
    return torch.ones_like(learner_logp)


@IS_CORRECTIONS.register("tis")
def truncated_is(learner_logp, rollout_logp, lo: float = 0.5, hi: float = 2.0):
    """TIS: weight clamp(k_t, lo, hi)."""
    return torch.exp(learner_logp - rollout_logp).clamp(lo, hi)


@IS_CORRECTIONS.register("mis")
def masked_is(learner_logp, rollout_logp, lo: float = 0.5, hi: float = 2.0):
    """MIS (IcePop-style): weight 1[lo <= k_t <= hi]; tokens outside get exactly zero gradient."""
    k = torch.exp(learner_logp - rollout_logp)
    return ((k >= lo) & (k <= hi)).to(k.dtype)


# Token filters: the score each token is ranked by (none: every token is kept).

@TOKEN_SCORES.register("none")
def no_filter(signals):
    return None


@TOKEN_SCORES.register("kl")
def token_kl(signals):
    """Full-vocabulary KL(student || teacher) at the token when known, else the k3 estimate (>= 0)."""
    if signals.token_kl_B_R is not None:
        return signals.token_kl_B_R
    log_r = signals.log_r_B_R
    return torch.expm1(-log_r) + log_r


@TOKEN_SCORES.register("student_entropy")
def student_entropy(signals):
    return signals.student_entropy_B_R


@TOKEN_SCORES.register("teacher_entropy")
def teacher_entropy(signals):
    return signals.teacher_entropy_B_R


def percentile_band(score_B_R: torch.Tensor, mask_B_R: torch.Tensor, p_min: float, p_max: float) -> torch.Tensor:
    """1.0 on valid tokens whose percentile rank among the batch's valid tokens is in [p_min, p_max).

    The rank of the i-th smallest of n tokens is 100 i / n, so the bands 0-30, 30-70 and 70-100 split
    the tokens 30/40/30 and together keep every token once (p_max = 100 includes the largest).
    """
    valid = mask_B_R.bool()
    scores = score_B_R[valid]
    rank = torch.empty_like(scores)
    rank[scores.argsort(stable=True)] = torch.arange(len(scores), dtype=scores.dtype)
    percentile = 100.0 * rank / max(len(scores), 1)
    keep = torch.zeros_like(mask_B_R)
    keep[valid] = ((percentile >= p_min) & (percentile < p_max)).to(keep.dtype)
    return keep


# Whitening of the advantages over valid tokens: (A - mean) / (std + eps) within each unit.

def _whiten_within(adv_B_R, mask_B_R, unit_B: torch.Tensor, eps: float = 1e-6):
    out = torch.zeros_like(adv_B_R)
    for unit in unit_B.unique():
        rows = unit_B == unit
        a, m = adv_B_R[rows], mask_B_R[rows].bool()
        if m.sum() == 0:
            continue
        values = a[m]
        std = values.std(unbiased=False) if values.numel() > 1 else values.new_tensor(0.0)
        out[rows] = (a - values.mean()) / (std + eps) * m
    return out


@WHITENINGS.register("none")
def no_whitening(adv_B_R, mask_B_R, group_B):
    return adv_B_R


@WHITENINGS.register("sample")
def whiten_sample(adv_B_R, mask_B_R, group_B):
    return _whiten_within(adv_B_R, mask_B_R, torch.arange(len(adv_B_R)))


@WHITENINGS.register("group")
def whiten_group(adv_B_R, mask_B_R, group_B):
    return _whiten_within(adv_B_R, mask_B_R, group_B)


@WHITENINGS.register("batch")
def whiten_batch(adv_B_R, mask_B_R, group_B):
    return _whiten_within(adv_B_R, mask_B_R, torch.zeros(len(adv_B_R), dtype=torch.long))
