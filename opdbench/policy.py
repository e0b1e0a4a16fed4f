"""Per-token quantities of a model on a rollout batch (shared by the learner and the teachers)."""

from __future__ import annotations

import torch

from .rollout import Rollout


def response_logits(model, batch: Rollout, hidden: bool = False):
    """Logits predicting each response token: `logits_B_R_V[:, t]` scores response token t.
    With `hidden=True`, also the last hidden state at the same positions (the state s_t)."""
    mask = batch.attention_mask_B_L
    device = next(model.parameters()).device
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=batch.input_ids_B_L.to(device), attention_mask=mask.to(device),
                position_ids=positions.to(device), use_cache=False, output_hidden_states=hidden)
    P = batch.prompt_len
    logits = out.logits[:, P - 1:-1].float()
    return (logits, out.hidden_states[-1][:, P - 1:-1].float()) if hidden else logits


def token_logp(logits_B_R_V: torch.Tensor, ids_B_R: torch.Tensor) -> torch.Tensor:
    return logits_B_R_V.log_softmax(-1).gather(-1, ids_B_R.to(logits_B_R_V.device)[..., None]).squeeze(-1)


def entropy(logits_B_R_V: torch.Tensor) -> torch.Tensor:
    logp = logits_B_R_V.log_softmax(-1)
    return -(logp.exp() * logp).sum(-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)
