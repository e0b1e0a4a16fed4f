"""Enumerable toys for exact checks of the OPD feedback functions (METHODS.md §1-§7), in float64:
the exact tests use them, and so does the estimator figure (`credit_bias_variance`).

- `single_step`: one softmax over V tokens (student logits and teacher log-probs).
- `TabularAR`: an autoregressive tabular policy over T steps and V tokens, one row of logits per
  prefix state (1 + V + V^2 + ... states), so all V^T sequences can be enumerated and every
  expectation is an exact sum over sequences of probability × quantity.

Expected gradients are taken with autograd on exact surrogates: for a sampled-token method with
advantage A (held fixed), `E_{y~pi}[A(y) grad log pi(y)] = grad sum_y sg(pi(y)) sg(A(y)) log pi(y)`.
"""

from __future__ import annotations

import itertools

import torch

DT = torch.float64


def grad_of(fn, x: torch.Tensor) -> torch.Tensor:
    """d fn(x) / dx at x (a fresh leaf, so the caller's tensor is untouched)."""
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(x), x)
    return g


def single_step(V: int = 7, seed: int = 0):
    """(student logits theta_V, teacher log-probs logq_V), random and fixed by `seed`."""
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(V, generator=g, dtype=DT)
    teacher_logits = torch.randn(V, generator=g, dtype=DT)
    return theta, teacher_logits.log_softmax(-1)


def kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(p || q) over the last dimension."""
    return (logp.exp() * (logp - logq)).sum(-1)


def expected_score_grad(theta: torch.Tensor, logq: torch.Tensor, adv_fn) -> torch.Tensor:
    """Single step: E_{y~pi_theta}[adv_fn(log r)(y) * grad_theta log pi_theta(y)], exactly."""
    def surrogate(th):
        logp = th.log_softmax(-1)
        adv = adv_fn((logp - logq).detach())
        return (logp.exp().detach() * adv * logp).sum()
    return grad_of(surrogate, theta)


class TabularAR:
    """pi(y_t | y_<t) = softmax(table[state(y_<t)]), T steps over V tokens, every sequence enumerable."""

    def __init__(self, T: int = 3, V: int = 3, seed: int = 0):
        self.T, self.V = T, V
        self.n_states = sum(V ** t for t in range(T))
        g = torch.Generator().manual_seed(seed)
        self.student = torch.randn(self.n_states, V, generator=g, dtype=DT)
        self.teacher = torch.randn(self.n_states, V, generator=g, dtype=DT)
        self.seqs_N_T = torch.tensor(list(itertools.product(range(V), repeat=T)), dtype=torch.long)
        self.states_N_T = torch.tensor([[self.state(seq[:t]) for t in range(T)] for seq in self.seqs_N_T.tolist()],
                                       dtype=torch.long)

    def state(self, prefix) -> int:
        """Index of a prefix: the prefixes of length t come after all shorter ones, in lexicographic order."""
        offset = sum(self.V ** t for t in range(len(prefix)))
        code = 0
        for y in prefix:
            code = code * self.V + int(y)
        return offset + code

    def logits_N_T_V(self, table: torch.Tensor) -> torch.Tensor:
        return table[self.states_N_T]

    def token_logp(self, table: torch.Tensor) -> torch.Tensor:
        """log pi(y_t | s_t) for every sequence and step (N × T)."""
        return self.logits_N_T_V(table).log_softmax(-1).gather(-1, self.seqs_N_T[..., None]).squeeze(-1)

    def seq_logp(self, table: torch.Tensor) -> torch.Tensor:
        return self.token_logp(table).sum(-1)

    def seq_kl(self, table_p: torch.Tensor, table_q: torch.Tensor) -> torch.Tensor:
        """Sequence-level KL(P || Q) = sum_y P(y) (log P(y) - log Q(y)), exactly."""
        logp, logq = self.seq_logp(table_p), self.seq_logp(table_q)
        return (logp.exp() * (logp - logq)).sum()

    def expected_pg(self, theta: torch.Tensor, adv_N_T: torch.Tensor) -> torch.Tensor:
        """E_{y~pi_theta}[sum_t A_t(y) grad log pi_theta(y_t | s_t)] for fixed advantages, exactly."""
        adv = adv_N_T.detach()

        def surrogate(th):
            logp_tok = self.token_logp(th)
            prob = logp_tok.sum(-1).exp().detach()
            return (prob[:, None] * adv * logp_tok).sum()
        return grad_of(surrogate, theta)


def credit_bias_variance(ar: TabularAR, gammas) -> list[dict]:
    """Bias and variance of discounted k1 credit (METHODS.md §3) as an estimator of the sequence
    reverse-KL gradient, exactly, on an enumerable autoregressive toy.

    One sampled sequence y gives g(y) = sum_t A_t(y) grad log pi(y_t | s_t) with A the gamma-
    discounted sum of future k1 rewards -log r. Against the exact -grad KL(pi || pi_T) over
    sequences: bias = |E g - target|, variance = E |g - E g|^2 (both summed over the table)."""
    from ..feedback.credit import CREDITS
    from ..feedback.shaping import SHAPINGS

    theta = ar.student.detach()
    target = -grad_of(lambda th: ar.seq_kl(th, ar.teacher), theta)
    jac_N_T_S_V = torch.autograd.functional.jacobian(ar.token_logp, theta)  # d log pi(y_t|s_t) / d table
    learner, teacher = ar.token_logp(theta), ar.token_logp(ar.teacher)
    prob_N = ar.seq_logp(theta).exp()
    rew, mask = SHAPINGS["k1"](learner - teacher), torch.ones_like(learner)
    rows = []
    for gamma in gammas:
        adv_N_T = CREDITS["gamma"](rew, mask, None, gamma=float(gamma))
        g_N_S_V = torch.einsum("nt,ntsv->nsv", adv_N_T, jac_N_T_S_V)
        mean_S_V = torch.einsum("n,nsv->sv", prob_N, g_N_S_V)
        variance = torch.einsum("n,n->", prob_N, (g_N_S_V - mean_S_V).square().sum((1, 2)))
        rows.append({"gamma": float(gamma), "bias": float((mean_S_V - target).norm()),
                     "variance": float(variance)})
    return rows
