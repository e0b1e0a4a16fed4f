"""Advantage shaping: the per-token advantage as a function of log r = log pi_theta - log pi_T.

Each entry maps `log_r` elementwise to `A_t`; the trainer then ascends `sg(A_t) * log pi_theta(y_t)`.
METHODS.md §1 gives the math: for an f-divergence D_f(pi_theta || pi_T) = E_theta[f(r)/r] the
correct advantage is -f'(r). `GENERATORS` holds each divergence's f (as a function of log r), so
the tests can differentiate the exact divergence and check every advantage against it.

Everything is written in log r (never r itself) so a teacher log-prob of -30 cannot overflow.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..registry import Registry

SHAPINGS: Registry = Registry("shaping")
GENERATORS: dict = {}  # name -> f(log_r, **params): the divergence's generator, f(1) = 0


def _divergence(name: str, f):
    """Register -f'(r) under `name` and its generator f alongside it."""
    GENERATORS[name] = f
    return SHAPINGS.register(name)


# Schulman's estimators of KL(student || teacher) on student samples (rho = 1/r).

@SHAPINGS.register("k1")
def k1(log_r: torch.Tensor) -> torch.Tensor:
    """Standard OPD: A_t = -log r_t (the reverse-KL weight -(1 + log r) up to a constant)."""
    return -log_r


@SHAPINGS.register("k2_naive")
def k2_naive(log_r: torch.Tensor) -> torch.Tensor:
    """A_t = -(log r)^2 / 2: the k2 *value* as an advantage (biased: not -f'(r) of any f it estimates)."""
    return -0.5 * log_r.square()


@SHAPINGS.register("k3_naive")
def k3_naive(log_r: torch.Tensor) -> torch.Tensor:
    """A_t = -(1/r - 1 + log r): the k3 value as an advantage. Biased by 2 - 1/r, which depends on r:
    its expected update also pushes the forward KL up (METHODS.md §1)."""
    return -(torch.expm1(-log_r) + log_r)


@SHAPINGS.register("k3_corrected")
def k3_corrected(log_r: torch.Tensor) -> torch.Tensor:
    """The correct weight for the divergence k3 estimates (reverse KL): -(1 + log r)."""
    return -(1.0 + log_r)


# f-divergences: advantage -f'(r), generator f(r).

@_divergence("reverse_kl", lambda log_r: log_r.exp() * log_r)
def reverse_kl(log_r: torch.Tensor) -> torch.Tensor:
    """KL(student || teacher), f = r log r."""
    return -(1.0 + log_r)


@_divergence("forward_kl", lambda log_r: -log_r)
def forward_kl(log_r: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student), f = -log r."""
    return torch.exp(-log_r)


def _js_f(log_r):
    r = log_r.exp()
    log1p_r = F.softplus(log_r)  # log(1 + r)
    return 0.5 * (r * (math.log(2) + log_r - log1p_r) + (math.log(2) - log1p_r))


@_divergence("js", _js_f)
def js(log_r: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon with an equal mixture: -1/2 log(2r / (1 + r))."""
    return -0.5 * (math.log(2) + log_r - F.softplus(log_r))


def _jsd_beta_f(log_r, beta: float = 0.5):
    r = log_r.exp()
    log_m = torch.log(beta + (1 - beta) * r)  # mixture M = beta T + (1 - beta) theta, over T
    return -beta * log_m + (1 - beta) * r * (log_r - log_m)


@_divergence("jsd_beta", _jsd_beta_f)
def jsd_beta(log_r: torch.Tensor, beta: float = 0.5) -> torch.Tensor:
    """Generalized JSD of GKD (M = beta T + (1 - beta) theta): (1 - beta) log(beta / r + 1 - beta)."""
    return (1 - beta) * torch.log(beta * torch.exp(-log_r) + 1 - beta)


@_divergence("hellinger", lambda log_r: 0.5 * torch.expm1(0.5 * log_r).square())
def hellinger(log_r: torch.Tensor) -> torch.Tensor:
    """Squared Hellinger H^2 = 1/2 sum (sqrt p - sqrt q)^2, f = 1/2 (sqrt r - 1)^2: -1/2 (1 - r^-1/2)."""
    return -0.5 * (1.0 - torch.exp(-0.5 * log_r))


@_divergence("tsallis", lambda log_r, alpha=0.5: torch.expm1(alpha * log_r) / (alpha - 1))
def tsallis(log_r: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """Tsallis (alpha > 0, != 1), f = (r^alpha - 1) / (alpha - 1): -alpha r^(alpha-1) / (alpha - 1).
    At alpha = 0.5 this is 2 * hellinger + 1: under whitening the same run."""
    return -alpha * torch.exp((alpha - 1) * log_r) / (alpha - 1)


def _alpha_f(log_r, alpha: float = 2.0):
    return (torch.expm1(alpha * log_r) - alpha * torch.expm1(log_r)) / (alpha * (alpha - 1))


@_divergence("alpha", _alpha_f)
def amari_alpha(log_r: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Amari alpha (alpha != 0, 1), f = (r^a - 1 - a(r - 1)) / (a(a - 1)): (1 - r^(a-1)) / (a - 1).
    Default a = 2 (Pearson chi^2 / 2); a = 0.5 would be 4 * hellinger, a rescaled duplicate."""
    return -torch.expm1((alpha - 1) * log_r) / (alpha - 1)


@_divergence("tv", lambda log_r: 0.5 * torch.expm1(log_r).abs())
def tv(log_r: torch.Tensor) -> torch.Tensor:
    """Total variation, f = 1/2 |r - 1|: -1/2 sign(r - 1) (a subgradient; 0 at r = 1)."""
    return -0.5 * torch.sign(log_r)


# Shapings that are a positive affine map of another for every r: A = scale * A_other + shift.
# Whitening removes both, so such methods are the same run under it; with scale 1 and no whitening
# they have the same expected gradient (a constant is a baseline). The leaderboard marks them.
# name: (its params that must match, the other shaping, scale, shift); tests check each identity.
AFFINE = {
    "tsallis": ({"alpha": 0.5}, "hellinger", 2.0, 1.0),
    "k3_corrected": ({}, "k1", 1.0, -1.0),
    "reverse_kl": ({}, "k1", 1.0, -1.0),
}
