"""Teacher scoring: for every response token, what each teacher thinks of it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .policy import entropy, response_logits, token_logp
from .rollout import Rollout, pad_responses


@dataclass
class TeacherScores:
    logp_B_R: torch.Tensor  # log pi_T(y_t | s_t) of the sampled token
    topk_idx_B_R_K: torch.Tensor  # the teacher's K most likely next tokens
    topk_logp_B_R_K: torch.Tensor  # and their log-probs
    entropy_B_R: torch.Tensor  # entropy of the teacher's next-token distribution


def micro_batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


@torch.no_grad()
def score(teacher, batch: Rollout, *, top_k: int, micro_batch: int) -> TeacherScores:
    parts = []
    for rows in micro_batches(len(batch), micro_batch):
        mb = batch.select(rows)
        logits = response_logits(teacher, mb)
        top = logits.log_softmax(-1).topk(min(top_k, logits.shape[-1]), dim=-1)
        part = (token_logp(logits, mb.response_ids_B_R), top.indices, top.values, entropy(logits))
        parts.append(TeacherScores(*(pad_responses(x.cpu(), batch.response_len) for x in part)))
    return TeacherScores(*(torch.cat(tensors) for tensors in zip(*(vars(p).values() for p in parts))))


def score_all(teachers, batch: Rollout, *, top_k: int, micro_batch: int) -> list[TeacherScores]:
    """One `TeacherScores` per teacher, in the order given (small → large)."""
    return [score(t, batch, top_k=top_k, micro_batch=micro_batch) for t in teachers]
