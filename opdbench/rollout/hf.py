"""Batched sampling from a Hugging Face causal LM with a KV cache (the default rollout backend)."""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer

from . import Rollout, left_pad


class _PreallocatedLayer(DynamicLayer):
    """A KV cache layer that writes each new token in place instead of concatenating.

    `DynamicLayer` re-allocates the whole cache on every decoding step (`torch.cat`), which was
    ~40 % of a tiny model's decoding time on CPU; here keys/values are views into one buffer.
    """

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity, self.length = capacity, 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        B, H, _, D = key_states.shape
        self.dtype, self.device = key_states.dtype, key_states.device
        self.key_buffer = key_states.new_empty(B, H, self.capacity, D)
        self.value_buffer = value_states.new_empty(B, H, self.capacity, D)
        self.is_initialized = True

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        self.key_buffer[:, :, self.length:end] = key_states
        self.value_buffer[:, :, self.length:end] = value_states
        self.length = end
        self.keys, self.values = self.key_buffer[:, :, :end], self.value_buffer[:, :, :end]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.key_buffer, self.value_buffer = self.key_buffer[indices], self.value_buffer[indices]
        self.keys, self.values = self.key_buffer[:, :, :self.length], self.value_buffer[:, :, :self.length]


def _kv_cache(model, capacity: int) -> Cache | None:
    """The in-place cache for plain full-attention models; None (the model's default) otherwise."""
    config = model.config.get_text_config(decoder=True)
    if getattr(config, "sliding_window", None) or set(getattr(config, "layer_types", None) or ["full_attention"]) != {"full_attention"}:
        return None
    return Cache(layers=[_PreallocatedLayer(capacity) for _ in range(config.num_hidden_layers)])


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

    Two things keep it fast where per-token cost dominates (tiny models on CPU): each distinct
    prompt is prefilled once and its KV cache copied to its samples, and once half the rows have
    stopped they are dropped from the batch, so a long tail decodes only the rows still going.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    B = len(prompts)
    distinct: dict[tuple[int, ...], int] = {}
    source_B = torch.tensor([distinct.setdefault(tuple(p), len(distinct)) for p in prompts], device=device)
    prompt_ids, prompt_mask = left_pad([list(p) for p in distinct], pad_id)
    prompt_ids, prompt_mask = prompt_ids.to(device), prompt_mask.to(device)
    positions = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=positions, use_cache=True,
                past_key_values=_kv_cache(model, capacity=prompt_ids.shape[1] + max_new_tokens))
    cache = out.past_key_values
    cache.batch_select_indices(source_B)  # one copy of its prompt's cache per sample
    logits = out.logits[:, -1].float()[source_B]
    mask, next_pos = prompt_mask[source_B], positions[source_B, -1:] + 1

    response_B_R = torch.full((B, max_new_tokens), pad_id, dtype=torch.long)
    response_mask_B_R = torch.zeros(B, max_new_tokens)
    rollout_logp_B_R = torch.zeros(B, max_new_tokens)
    rows = torch.arange(B)  # the output row of each row still in the batch
    alive = torch.ones(B, dtype=torch.bool, device=device)
    steps = 0
    for t in range(max_new_tokens):
        raw_logp = logits.log_softmax(-1)
        probs = top_p_filter(logits / temperature, top_p).softmax(-1)
        token = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(device)
        token = torch.where(alive, token, torch.full_like(token, pad_id))
        live = rows[alive.cpu()]
        response_B_R[live, t] = token[alive].cpu()
        response_mask_B_R[live, t] = 1.0
        rollout_logp_B_R[live, t] = raw_logp.gather(-1, token[:, None]).squeeze(-1)[alive].float().cpu()
        steps = t + 1
        alive = alive & (token != eos_id)
        n_alive = int(alive.sum())
        if n_alive == 0:
            break
        if n_alive <= len(alive) // 2:  # drop the stopped rows from the batch
            keep = alive.nonzero().squeeze(-1)
            cache.batch_select_indices(keep)
            rows, alive, token, mask, next_pos = rows[keep.cpu()], alive[keep], token[keep], mask[keep], next_pos[keep]
        mask = torch.cat([mask, alive[:, None].long()], dim=-1)
        out = model(input_ids=token[:, None], attention_mask=mask, position_ids=next_pos,
                    past_key_values=cache, use_cache=True)
        next_pos = next_pos + 1
        logits = out.logits[:, -1].float()
    model.train(was_training)

    prompt_ids, prompt_mask = prompt_ids[source_B].cpu(), prompt_mask[source_B].cpu()
    response_B_R, response_mask_B_R = response_B_R[:, :steps], response_mask_B_R[:, :steps]
    return Rollout(
        input_ids_B_L=torch.cat([prompt_ids, response_B_R], 1),
        attention_mask_B_L=torch.cat([prompt_mask, response_mask_B_R.long()], 1),
        prompt_len=prompt_ids.shape[1],
        response_mask_B_R=response_mask_B_R,
        rollout_logp_B_R=rollout_logp_B_R[:, :steps],
        group_B=torch.tensor(group if group is not None else list(range(B)), dtype=torch.long),
    )
