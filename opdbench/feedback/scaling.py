"""Reward scaling (METHODS.md §5): the per-token log-ratio that the shaping turns into an advantage."""

from __future__ import annotations

from ..registry import Registry

SCALINGS: Registry = Registry("scaling")


@SCALINGS.register("none")
def plain(signals):
    """log r = log pi_theta - log pi_T."""
    return signals.learner_logp_B_R - signals.teacher_logp_B_R


@SCALINGS.register("exopd")
def extrapolated(signals, lam: float = 1.25):
    """G-OPD / ExOPD (arXiv 2602.12125): A_t = lam (log pi_T - log pi_ref) - (log pi_theta - log pi_ref),
    written as the log-ratio whose k1 advantage it is. lam = 1 is plain OPD and pi_ref cancels."""
    ref = signals.ref_logp_B_R
    return (signals.learner_logp_B_R - ref) - lam * (signals.teacher_logp_B_R - ref)
