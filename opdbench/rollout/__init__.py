"""Samplers: the student generates its own responses and records each sampled token's log-prob.

`hf` (default, CPU or GPU) is a batched loop over a Hugging Face model with a KV cache; `vllm`
(optional `[gpu]` extra) arrives with the real tier. Both return a `Rollout`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


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

    def __len__(self) -> int:
        return self.input_ids_B_L.shape[0]

    def select(self, rows: slice | torch.Tensor) -> "Rollout":
        """Rows of the batch (for micro-batches); every per-row tensor is sliced alike."""
        return Rollout(self.input_ids_B_L[rows], self.attention_mask_B_L[rows], self.prompt_len,
                       self.response_mask_B_R[rows], self.rollout_logp_B_R[rows], self.group_B[rows])


BACKENDS = ("hf", "vllm")
