"""Batched sampling from a causal LM with a KV cache (the default rollout backend, CPU or GPU).

One loop serves two kinds of model through a small decoder interface (`start`, `step`, `keep`):
opdbench's own `Llama` (the fast path: the zoo, and any checkpoint `opdbench.llama` covers) and
any other Hugging Face causal LM (through its `forward` and a preallocated cache).
"""

from __future__ import annotations

import torch

from ..llama import Cache, Llama
from . import Rollout, left_pad


class _NativeDecoder:
    """opdbench.llama.Llama: each prompt prefilled once; its samples attend to its keys in place."""

    def __init__(self, model: Llama):
        self.model = model

    def start(self, prompt_ids_G_P, prompt_mask_G_P, source_B, capacity: int) -> torch.Tensor:
        hidden_G, prompts = self.model.prefill(prompt_ids_G_P, prompt_mask_G_P)
        self.cache = Cache(prompts, source_B, capacity - prompt_ids_G_P.shape[1])
        self.position_B = prompt_mask_G_P.sum(1)[source_B]
        return self.model.logits(hidden_G)[source_B].float()

    def step(self, token_B: torch.Tensor) -> torch.Tensor:
        hidden = self.model(token_B[:, None], self.position_B[:, None], self.cache)
        self.position_B = self.position_B + 1
        return self.model.logits(hidden[:, -1]).float()

    def keep(self, rows: torch.Tensor) -> None:
        self.cache.keep(rows)
        self.position_B = self.position_B[rows]


class _HFDecoder:
    """Any Hugging Face causal LM, through its own forward and an in-place KV cache."""

    def __init__(self, model):
        self.model = model

    def start(self, prompt_ids_G_P, prompt_mask_G_P, source_B, capacity: int) -> torch.Tensor:
        positions = (prompt_mask_G_P.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=prompt_ids_G_P, attention_mask=prompt_mask_G_P, position_ids=positions,
                         use_cache=True, past_key_values=_hf_kv_cache(self.model, capacity))
        self.cache = out.past_key_values
        self.cache.batch_select_indices(source_B)  # one copy of its prompt's cache per sample
        self.mask, self.next_pos = prompt_mask_G_P[source_B], positions[source_B, -1:] + 1
        return out.logits[:, -1].float()[source_B]

    def step(self, token_B: torch.Tensor) -> torch.Tensor:
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=-1)
        out = self.model(input_ids=token_B[:, None], attention_mask=self.mask, position_ids=self.next_pos,
                         past_key_values=self.cache, use_cache=True)
        self.next_pos = self.next_pos + 1
        return out.logits[:, -1].float()

    def keep(self, rows: torch.Tensor) -> None:
        self.cache.batch_select_indices(rows)
        self.mask, self.next_pos = self.mask[rows], self.next_pos[rows]


def _hf_kv_cache(model, capacity: int):
    """transformers' Cache with layers that write each new token in place (its DynamicLayer
    re-allocates the whole cache every step with `torch.cat`); None (the model's default) for
    models that are not plain full attention. Defined here, not at module level, so that a cell on
    opdbench's own Llama never imports transformers' cache code."""
    from transformers.cache_utils import Cache, DynamicLayer

    class PreallocatedLayer(DynamicLayer):
        def __init__(self):
            super().__init__()
            self.length = 0

        def lazy_initialization(self, key_states, value_states) -> None:
            B, H, _, D = key_states.shape
            self.dtype, self.device = key_states.dtype, key_states.device
            self.key_buffer = key_states.new_empty(B, H, capacity, D)
            self.value_buffer = value_states.new_empty(B, H, capacity, D)
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

        def batch_select_indices(self, indices) -> None:
            self.key_buffer, self.value_buffer = self.key_buffer[indices], self.value_buffer[indices]
            self.keys, self.values = self.key_buffer[:, :, :self.length], self.value_buffer[:, :, :self.length]

    config = model.config.get_text_config(decoder=True)
    if getattr(config, "sliding_window", None) or set(getattr(config, "layer_types", None) or ["full_attention"]) != {"full_attention"}:
        return None
    return Cache(layers=[PreallocatedLayer() for _ in range(config.num_hidden_layers)])


def top_p_filter(logits_B_V: torch.Tensor, top_p: float, candidates: int = 32) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability reaches top_p (the top token always stays).

    The nucleus is looked for among each row's `candidates` most likely tokens first (a top-k is
    ~4x cheaper than sorting the vocabulary); only if some row needs more does it sort them all.
    """
    if top_p >= 1.0:
        return logits_B_V
    k = min(candidates, logits_B_V.shape[-1])
    top, order = logits_B_V.topk(k, dim=-1)
    probs = (top - logits_B_V.logsumexp(-1, keepdim=True)).exp()
    if k < logits_B_V.shape[-1] and not bool((probs.sum(-1) > top_p).all()):
        top, order = logits_B_V.sort(dim=-1, descending=True)
        probs = top.softmax(-1)
    drop = probs.cumsum(-1) - probs > top_p  # mass *before* this token already reaches top_p
    return torch.full_like(logits_B_V, float("-inf")).scatter(-1, order, top.masked_fill(drop, float("-inf")))


def draw(probs_B_V: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One token per row by inverting the CDF at a uniform draw: one random number a row, where
    `torch.multinomial` spends one per vocabulary entry (12x slower at 256 x 151). A token of
    probability zero is never drawn: its CDF step is flat."""
    cdf = probs_B_V.cumsum(-1)
    u = torch.rand(len(cdf), 1, generator=generator).to(cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[-1] - 1).squeeze(-1)


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
    decoder = _NativeDecoder(model) if isinstance(model, Llama) else _HFDecoder(model)
    B = len(prompts)
    distinct: dict[tuple[int, ...], int] = {}
    source_B = torch.tensor([distinct.setdefault(tuple(p), len(distinct)) for p in prompts], device=device)
    prompt_ids, prompt_mask = left_pad([list(p) for p in distinct], pad_id)
    prompt_ids, prompt_mask = prompt_ids.to(device), prompt_mask.to(device)
    logits = decoder.start(prompt_ids, prompt_mask, source_B, capacity=prompt_ids.shape[1] + max_new_tokens)

    response_B_R = torch.full((B, max_new_tokens), pad_id, dtype=torch.long)
    response_mask_B_R = torch.zeros(B, max_new_tokens)
    rollout_logp_B_R = torch.zeros(B, max_new_tokens)
    rows = torch.arange(B)  # the output row of each row still in the batch
    alive = torch.ones(B, dtype=torch.bool, device=device)
    steps = 0
    for t in range(max_new_tokens):
        raw_logp = logits.log_softmax(-1)
        probs = top_p_filter(logits / temperature, top_p).softmax(-1)
        token = draw(probs, generator)
        token = torch.where(alive, token, torch.full_like(token, pad_id))
        live = rows[alive.cpu()]
        response_B_R[live, t] = token[alive].cpu()
        response_mask_B_R[live, t] = 1.0
        rollout_logp_B_R[live, t] = raw_logp.gather(-1, token[:, None]).squeeze(-1)[alive].float().cpu()
        steps = t + 1
        alive = alive & (token != eos_id)
        n_alive = int(alive.sum())
        if n_alive == 0 or t == max_new_tokens - 1:
            break
        if n_alive <= len(alive) // 2:  # drop the stopped rows from the batch
            keep = alive.nonzero().squeeze(-1)
            decoder.keep(keep)
            rows, alive, token = rows[keep.cpu()], alive[keep], token[keep]
        logits = decoder.step(token)
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


class HFSampler:
    """`sample` as a `Sampler`. It samples from the module it is handed (the student, or the trainer's
    copy of it in `rollout.dtype`), so there is no engine to keep in sync."""

    def sample(self, model, prompts: list[list[int]], *, max_new_tokens: int, eos_id: int, pad_id: int,
               temperature: float, top_p: float, generator: torch.Generator, group: list[int] | None) -> Rollout:
        return sample(model, prompts, max_new_tokens=max_new_tokens, eos_id=eos_id, pad_id=pad_id,
                      temperature=temperature, top_p=top_p, generator=generator, group=group)

    def sync(self, model) -> None:
        pass


def build(options, model_spec: str, dtype: str) -> HFSampler:
    """BACKENDS' `hf` factory: no engine, so nothing to load from the checkpoint and no options."""
    return HFSampler()
