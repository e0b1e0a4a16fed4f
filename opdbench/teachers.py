"""Teacher scoring and ensembles: for every response token, what the teachers think of it.

`score` runs one teacher over a rollout batch. `ENSEMBLES` combines the scores of K teachers
(ordered small → large) into one reference distribution (METHODS.md §7); every OPD method then
reads the combined `TeacherScores`, so ensembles need no special case downstream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch

from .policy import entropy, response_logits
from .registry import Registry
from .rollout import Rollout, pad_responses


@dataclass
class TeacherScores:
    logp_B_R: torch.Tensor  # log pi_T(y_t | s_t) of the sampled token
    topk_idx_B_R_K: torch.Tensor  # the teacher's K most likely next tokens
    topk_logp_B_R_K: torch.Tensor  # and their log-probs
    entropy_B_R: torch.Tensor  # entropy of the teacher's next-token distribution
    logp_full_B_R_V: torch.Tensor | None = None  # the whole distribution, when a method needs it

    def rows(self, rows, R: int) -> "TeacherScores":
        """These rows and the first R response columns (a micro-batch's slice)."""
        return TeacherScores(*(None if x is None else x[rows, :R] for x in self._tensors()))

    def _tensors(self):
        return [getattr(self, f.name) for f in fields(self)]


def micro_batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def from_log_probs(logp_full_B_R_V: torch.Tensor, ids_B_R: torch.Tensor, top_k: int, keep_full: bool) -> TeacherScores:
    top = logp_full_B_R_V.topk(min(top_k, logp_full_B_R_V.shape[-1]), dim=-1)
    return TeacherScores(logp_full_B_R_V.gather(-1, ids_B_R[..., None]).squeeze(-1), top.indices, top.values,
                         entropy(logp_full_B_R_V), logp_full_B_R_V if keep_full else None)


@torch.no_grad()
def score(teacher, batch: Rollout, *, top_k: int, micro_batch: int, full: bool = False) -> TeacherScores:
    """One teacher's scores of every response token; `full` also keeps the whole distribution."""
    parts = []
    for rows in micro_batches(len(batch), micro_batch):
        mb = batch.select(rows)
        logp = response_logits(teacher, mb).log_softmax(-1)
        part = from_log_probs(logp, mb.response_ids_B_R.to(logp.device), top_k, full)
        parts.append([None if x is None else pad_responses(x.cpu(), batch.response_len) for x in part._tensors()])
    return TeacherScores(*(None if xs[0] is None else torch.cat(xs) for xs in zip(*parts)))


def score_all(teachers, batch: Rollout, *, top_k: int, micro_batch: int, full: bool = False) -> list[TeacherScores]:
    """One `TeacherScores` per teacher, in the order given (small → large)."""
    return [score(t, batch, top_k=top_k, micro_batch=micro_batch, full=full) for t in teachers]


# Ensembles. Each gets the K teachers' scores, the response ids, training progress in [0, 1] and
# each row's assigned teacher (for the per-prompt rules), and returns one TeacherScores.
ENSEMBLES: Registry = Registry("ensemble")
NEEDS_FULL = {"arith_mean", "geo_mean", "soft_switch"}  # mix whole distributions
ASSIGNS_ROWS = {"control_token", "random"}  # one teacher per prompt, chosen before the rollout


def _mixture(scores, weights, ids_B_R, top_k, keep_full) -> TeacherScores:
    """p_ref = sum_k w_k p_k (probability space)."""
    logp = torch.stack([s.logp_full_B_R_V for s in scores])
    log_w = torch.log(torch.tensor(weights, dtype=logp.dtype)).view(-1, 1, 1, 1)
    return from_log_probs(torch.logsumexp(logp + log_w, 0), ids_B_R, top_k, keep_full)


def _per_row(scores, teacher_B: torch.Tensor) -> TeacherScores:
    """Row b takes every score from teacher `teacher_B[b]`."""
    def pick(tensors):
        if tensors[0] is None:
            return None
        stacked = torch.stack(tensors)
        return stacked[teacher_B, torch.arange(len(teacher_B))]
    return TeacherScores(*(pick(list(xs)) for xs in zip(*(s._tensors() for s in scores))))


@ENSEMBLES.register("single")
def single(scores, ids_B_R, progress, teacher_B, top_k, keep_full):
    if len(scores) != 1:
        raise ValueError("ensemble=single takes exactly one teacher")
    return scores[0]


@ENSEMBLES.register("arith_mean")
def arith_mean(scores, ids_B_R, progress, teacher_B, top_k, keep_full):
    """p_ref = (1/K) sum_k p_k."""
    return _mixture(scores, [1 / len(scores)] * len(scores), ids_B_R, top_k, keep_full)


@ENSEMBLES.register("geo_mean")
def geo_mean(scores, ids_B_R, progress, teacher_B, top_k, keep_full):
    """p_ref ∝ prod_k p_k^(1/K), normalized over the vocabulary."""
    mean_logp = torch.stack([s.logp_full_B_R_V for s in scores]).mean(0)
    return from_log_probs(mean_logp.log_softmax(-1), ids_B_R, top_k, keep_full)


def hard_switch_index(progress: float, K: int) -> int:
    return min(K - 1, math.floor(progress * K))


@ENSEMBLES.register("hard_switch")
def hard_switch(scores, ids_B_R, progress, teacher_B, top_k, keep_full):
    """Teacher j = min(K - 1, floor(progress K)): small teachers first, the largest last."""
    return scores[hard_switch_index(progress, len(scores))]


@ENSEMBLES.register("soft_switch")
def soft_switch(scores, ids_B_R, progress, teacher_B, top_k, keep_full):
    """s = progress (K - 1), j = floor(s): p_ref = (1 - (s - j)) p_j + (s - j) p_{j+1}."""
    s = progress * (len(scores) - 1)
    j = min(math.floor(s), len(scores) - 1)
    frac = s - j
    if frac == 0:
        return replace(scores[j], logp_full_B_R_V=scores[j].logp_full_B_R_V if keep_full else None)
    return _mixture([scores[j], scores[j + 1]], [1 - frac, frac], ids_B_R, top_k, keep_full)


@ENSEMBLES.register("control_token")
def control_token(scores, ids_B_R, progress, teacher_B, top_k, keep_full):
    """Each prompt carries `<|teacher-k|>` and is scored by teacher k; prompts are split evenly."""
    return _per_row(scores, teacher_B)


@ENSEMBLES.register("random")
def random_teacher(scores, ids_B_R, progress, teacher_B, top_k, keep_full):
    """One uniformly random teacher per prompt."""
    return _per_row(scores, teacher_B)


def assign_teachers(ensemble: str, n_prompts: int, K: int, generator: torch.Generator) -> list[int]:
    """The teacher of each prompt of a step: even split (control_token), uniform draw (random), else 0."""
    if ensemble == "control_token":
        return [i % K for i in range(n_prompts)]
    if ensemble == "random":
        return torch.randint(K, (n_prompts,), generator=generator).tolist()
    return [0] * n_prompts


def combine(ensemble: str, scores: list[TeacherScores], ids_B_R, progress: float, teacher_B, *, top_k: int,
            keep_full: bool) -> TeacherScores:
    combined = ENSEMBLES.get(ensemble)(scores, ids_B_R, progress, teacher_B, top_k, keep_full)
    return combined if keep_full else replace(combined, logp_full_B_R_V=None)
