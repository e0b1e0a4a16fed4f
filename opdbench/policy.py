"""Per-token quantities of a model on a rollout batch (shared by the learner and the teachers)."""

from __future__ import annotations

import torch

from .llama import Llama, Prefix
from .rollout import Rollout


def response_logits(model, batch: Rollout, hidden: bool = False):
    """Logits predicting each response token: `logits_B_R_V[:, t]` scores response token t.
    With `hidden=True`, also the last hidden state at the same positions (the state s_t)."""
    if isinstance(model, Llama):
        hidden_B_R = _shared_prompt_pass(model, batch)
        logits = model.logits(hidden_B_R).float()
        return (logits, hidden_B_R.float()) if hidden else logits
    mask = batch.attention_mask_B_L
    device = next(model.parameters()).device
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=batch.input_ids_B_L.to(device), attention_mask=mask.to(device),
                position_ids=positions.to(device), use_cache=False, output_hidden_states=hidden)
    P = batch.prompt_len
    logits = out.logits[:, P - 1:-1].float()
    return (logits, out.hidden_states[-1][:, P - 1:-1].float()) if hidden else logits


def _shared_prompt_pass(model: Llama, batch: Rollout) -> torch.Tensor:
    """Hidden states at the positions that predict each response token, each distinct prompt run
    once (its samples attend to its keys and values: the same arithmetic as a pass over each whole
    sequence, with or without gradient, minus the repeated prompt work; dialogue's prompts are
    ~4x its responses)."""
    device = model.device
    P = batch.prompt_len
    prompt_B_P = batch.input_ids_B_L[:, :P].to(device)
    prompt_mask_B_P = batch.attention_mask_B_L[:, :P].to(device)
    distinct, source_B = torch.unique(torch.cat([prompt_B_P, prompt_mask_B_P], 1), dim=0, return_inverse=True)
    last_G, prompts = model.prefill(distinct[:, :P], distinct[:, P:])
    first_B = last_G[source_B][:, None]  # predicts response token 0
    R = batch.response_len
    if R == 1:
        return first_B
    # Response tokens 0..R-2 predict tokens 1..R-1: each attends to its prompt, then causally.
    ids_B_T = batch.response_ids_B_R[:, :R - 1].to(device)
    positions = prompt_mask_B_P.sum(1, keepdim=True) + torch.arange(R - 1, device=device)
    rest_B_T = model(ids_B_T, positions, Prefix(prompts, source_B))
    return torch.cat([first_B, rest_B_T], 1)


def token_logp(logits_B_R_V: torch.Tensor, ids_B_R: torch.Tensor) -> torch.Tensor:
    return logits_B_R_V.log_softmax(-1).gather(-1, ids_B_R.to(logits_B_R_V.device)[..., None]).squeeze(-1)


def entropy(logp_B_R_V: torch.Tensor) -> torch.Tensor:
    """Entropy of each next-token distribution, from its log-probs (log_softmax already taken)."""
    return -(logp_B_R_V.exp() * logp_B_R_V).sum(-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)
