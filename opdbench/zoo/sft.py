"""Supervised fine-tuning on reference responses: how the zoo's teachers and student are made."""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F

from ..chat import encode_prompt, encode_response


def sft_batch(tokenizer, examples, with_context=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded prompt+response ids, attention mask, and labels (-100 outside the response).

    `with_context[i]` true renders example i's prompt with its reference as privileged context
    (a `<|context|>` turn), so the model learns to use context when it is given (OPSD).
    """
    seqs, labels = [], []
    for i, ex in enumerate(examples):
        context = ex.reference if with_context is not None and with_context[i] else None
        p, r = encode_prompt(tokenizer, ex.prompt, context=context), encode_response(tokenizer, ex.reference)
        seqs.append(p + r)
        labels.append([-100] * len(p) + r)
    width = max(len(s) for s in seqs)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
    lab = torch.tensor([l + [-100] * (width - len(l)) for l in labels])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    return ids, mask, lab


def sft(model, tokenizer, examples, *, steps: int, batch_size: int, lr: float, seed: int,
        warmup: int = 100, context_fraction: float = 0.0, on_step=None) -> None:
    """AdamW with linear warm-up and cosine decay; `on_step(step, loss)` may return True to stop early.

    With `context_fraction` > 0, each example is shown with its reference as context with that
    probability (drawn from the same seeded stream; at 0 the stream is exactly as before).
    """
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    model.train()
    for step in range(1, steps + 1):
        batch = rng.sample(examples, batch_size)
        with_context = [rng.random() < context_fraction for _ in batch] if context_fraction > 0 else None
        ids, mask, labels = sft_batch(tokenizer, batch, with_context)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if on_step is not None and on_step(step, loss.item()):
            break
    model.eval()
