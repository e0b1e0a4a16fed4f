"""Small builders shared by the tests."""

import torch

from opdbench.feedback import Signals
from opdbench.llama import Llama, Prompts
from opdbench.teachers import TeacherScores


def make_signals(learner, teacher, mask, **extra) -> Signals:
    """Signals for hand-written per-token values (B × R); unspecified fields get neutral values."""
    B, R = learner.shape
    scores = TeacherScores(teacher, torch.zeros(B, R, 1, dtype=torch.long), teacher[..., None],
                           extra.pop("teacher_entropy", torch.zeros(B, R)))
    fields = {"rollout_logp_B_R": learner, "group_B": torch.arange(B), "student_entropy_B_R": torch.zeros(B, R)}
    fields.update(extra)
    return Signals(learner_logp_B_R=learner, teacher=scores, mask_B_R=mask, **fields)


def sequence_logits(model, ids_B_L: torch.Tensor) -> torch.Tensor:
    """Logits at every position of unpadded sequences, through the model's plainest path (a
    transformers forward, or opdbench's Llama on a batch of whole prompts)."""
    if isinstance(model, Llama):
        mask = torch.ones_like(ids_B_L)
        return model.logits(model(ids_B_L, torch.arange(ids_B_L.shape[1]).expand_as(ids_B_L),
                                  Prompts(mask, model.lm_head.weight.dtype)))
    return model(input_ids=ids_B_L).logits
