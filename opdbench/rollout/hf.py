"""Batched sampling from a Hugging Face causal LM with a KV cache (the default rollout backend)."""

from __future__ import annotations

import torch

from . import Rollout


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s):] = 1
    return ids, mask


def top_p_filter(logits_B_V: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability reaches top_p (the top token always stays)."""
    if top_p >= 1.0:
        return logits_B_V
    sorted_logits, order = logits_B_V.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    drop_sorted = probs.cumsum(-1) - probs > top_p  # mass *before* this token already reaches top_p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits_B_V.masked_fill(drop, float("-inf"))


@torch.no_grad()
def sample(model, prompts: list[list[int]], *, max_new_tokens: int, eos_id: int, pad_id: int,
           temperature: float = 1.0, top_p: float = 1.0, generator: torch.Generator | None = None,
           group: list[int] | None = None) -> Rollout:
    """Sample one response per prompt (repeat prompts for several samples).

    Stops each row at EOS and the whole batch when every row has stopped. Records the log-prob of
    each sampled token under the model's raw distribution (temperature 1, no top-p), the quantity a
    learner recomputes, so `learner - rollout` measures numerical drift alone.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    prompt_ids, prompt_mask = left_pad(prompts, pad_id)
    prompt_ids, prompt_mask = prompt_ids.to(device), prompt_mask.to(device)
    B = len(prompts)
    mask = prompt_mask
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=prompt_ids, attention_mask=mask, position_ids=positions, use_cache=True)
    cache, next_pos = out.past_key_values, positions[:, -1:] + 1
    logits = out.logits[:, -1].float()

    tokens, logps = [], []
    alive = torch.ones(B, dtype=torch.bool, device=device)
    alive_steps = []
    for _ in range(max_new_tokens):
        raw_logp = logits.log_softmax(-1)
        probs = top_p_filter(logits / temperature, top_p).softmax(-1)
        token = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(device)
        token = torch.where(alive, token, torch.full_like(token, pad_id))
        tokens.append(token)
        logps.append(raw_logp.gather(-1, token[:, None]).squeeze(-1) * alive)
        alive_steps.append(alive)
        alive = alive & (token != eos_id)
        if not alive.any():
            break
        mask = torch.cat([mask, alive[:, None].long()], dim=-1)
        out = model(input_ids=token[:, None], attention_mask=mask, position_ids=next_pos,
                    past_key_values=cache, use_cache=True)
        cache, next_pos = out.past_key_values, next_pos + 1
        logits = out.logits[:, -1].float()
    model.train(was_training)

    response_B_R = torch.stack(tokens, 1)
    response_mask_B_R = torch.stack(alive_steps, 1).float()
    return Rollout(
        input_ids_B_L=torch.cat([prompt_ids, response_B_R], 1).cpu(),
        attention_mask_B_L=torch.cat([prompt_mask, response_mask_B_R.long()], 1).cpu(),
        prompt_len=prompt_ids.shape[1],
        response_mask_B_R=response_mask_B_R.cpu(),
        rollout_logp_B_R=torch.stack(logps, 1).float().cpu(),
        group_B=torch.tensor(group if group is not None else list(range(B)), dtype=torch.long),
    )
