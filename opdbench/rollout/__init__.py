"""Samplers: the student generates its own responses and records each sampled token's log-prob.

Every backend is a `Sampler` made by `make_sampler` from its entry in BACKENDS: `hf` (default, CPU
or GPU) is a batched loop over a Hugging Face model with a KV cache; `vllm` (the optional `[gpu]`
extra) is a vLLM engine on the student's GPU. Both return a `Rollout`, and both pass one contract
suite (tests/test_rollout_backends.py). A backend's module is imported on first use, so importing
this package never imports vLLM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

import torch

from ..registry import Registry


@dataclass
class Rollout:
    """A batch of sequences: left-padded prompts, then right-padded responses.

    Row b is `input_ids_B_L[b] = [pad.. prompt | response .. pad]`; the prompt block has the same
    width P for every row, so response token t of every row sits at column P + t.
    """

    input_ids_B_L: torch.Tensor
    attention_mask_B_L: torch.Tensor
    prompt_len: int  # P
    response_mask_B_R: torch.Tensor  # 1.0 on generated tokens up to and including EOS
    rollout_logp_B_R: torch.Tensor  # log-prob of each sampled token under the sampling model (raw logits, T=1)
    group_B: torch.Tensor  # index of the prompt each row answers (rows of one prompt share it)

    @property
    def response_ids_B_R(self) -> torch.Tensor:
        return self.input_ids_B_L[:, self.prompt_len:]

    @property
    def response_len(self) -> int:  # R
        return self.response_mask_B_R.shape[1]

    def __len__(self) -> int:
        return self.input_ids_B_L.shape[0]

    def select(self, rows: slice | torch.Tensor) -> "Rollout":
        """Some rows (a micro-batch), without the padding columns those rows all share.

        Per-token tensors kept outside the batch are sliced the same way: `x_B_R[rows, :mb.response_len]`.
        """
        mask = self.attention_mask_B_L[rows]
        first = int((mask.sum(0) > 0).nonzero()[0])  # prompts are left-padded
        response_mask = self.response_mask_B_R[rows]
        R = int((response_mask.sum(0) > 0).nonzero()[-1]) + 1  # every row has >= 1 response token
        end = self.prompt_len + R
        return Rollout(self.input_ids_B_L[rows, first:end], mask[:, first:end], self.prompt_len - first,
                       response_mask[:, :R], self.rollout_logp_B_R[rows, :R], self.group_B[rows])

    def with_prompts(self, prompts: list[list[int]], pad_id: int) -> "Rollout":
        """The same responses after other prompts (one per row): what a teacher sees when its prompt
        differs from the student's (privileged context for OPSD, no control token for ensembles)."""
        ids, mask = left_pad(prompts, pad_id)
        return Rollout(torch.cat([ids, self.response_ids_B_R], 1),
                       torch.cat([mask, self.response_mask_B_R.long()], 1), ids.shape[1],
                       self.response_mask_B_R, self.rollout_logp_B_R, self.group_B)

    def sorted_by_length(self) -> "Rollout":
        """Rows ordered by length, so consecutive micro-batches carry little padding; the rows of one
        prompt stay together (ordered by their longest), so a micro-batch runs each prompt once."""
        length_B, group_B = self.attention_mask_B_L.sum(1).tolist(), self.group_B.tolist()
        longest = {}
        for g, n in zip(group_B, length_B):
            longest[g] = max(longest.get(g, 0), n)
        order = torch.tensor(sorted(range(len(self)), key=lambda b: (longest[group_B[b]], group_B[b], b)))
        return self.select(order)


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s):] = 1
    return ids, mask


def pad_responses(x_B_r: torch.Tensor, R: int) -> torch.Tensor:
    """Right-pad a micro-batch's per-token tensor (dim 1) back to the batch's R columns with zeros."""
    missing = R - x_B_r.shape[1]
    if missing == 0:
        return x_B_r
    return torch.cat([x_B_r, x_B_r.new_zeros((x_B_r.shape[0], missing, *x_B_r.shape[2:]))], 1)


@runtime_checkable
class Sampler(Protocol):
    """A rollout backend."""

    def sample(self, model, prompts: list[list[int]], *, max_new_tokens: int, eos_id: int, pad_id: int,
               temperature: float, top_p: float, generator: torch.Generator, group: list[int] | None) -> Rollout:
        """One response per prompt (repeat prompts for several samples), each stopped at EOS, with the
        log-prob of every sampled token under the model's raw distribution (temperature 1, no top-p)."""
        ...

    def sync(self, model) -> None:
        """Called after every optimizer step: from then on, samples come from `model`'s current weights."""
        ...


# name -> factory(options, model_spec, dtype): `options` are the backend's own settings (the
# rollout config, or make_sampler's keywords), `model_spec` the student (zoo name, path or hub name).
BACKENDS: Registry[Callable[[Mapping[str, Any], str, str], Sampler]] = Registry("rollout backend")
BACKENDS.register_lazy("hf", "opdbench.rollout.hf:build")
BACKENDS.register_lazy("vllm", "opdbench.rollout.vllm:build")


def make_sampler(name: str, *, model_spec: str, dtype: str, **options) -> Sampler:
    """The sampler of backend `name` for the student `model_spec` sampling in `dtype`."""
    return BACKENDS.get(name)(options, model_spec, dtype)
