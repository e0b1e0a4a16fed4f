"""Prompts go through the tokenizer's own chat template, so real-tier models keep theirs."""

from __future__ import annotations

import torch


def messages_of(prompt: str | tuple[dict, ...] | list[dict]) -> list[dict]:
    """A task's prompt as chat messages: a string is one user turn, a conversation stays as it is."""
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]


def prefixed(prompt: str | tuple[dict, ...], prefix: str) -> str | tuple[dict, ...]:
    """The prompt with `prefix` (e.g. a control token) opening its last user turn."""
    if isinstance(prompt, str):
        return f"{prefix} {prompt}"
    *earlier, last = messages_of(prompt)
    return (*earlier, {**last, "content": f"{prefix} {last['content']}"})


def render_prompt(tokenizer, prompt: str | tuple[dict, ...], context: str | None = None) -> str:
    """Text of the prompt's turns plus the assistant header, with the template's own special
    tokens (a bos, if it has one); `context` is privileged information (e.g. a reference
    solution) shown in its own turn before the conversation."""
    messages = [{"role": "context", "content": context}] if context is not None else []
    messages += messages_of(prompt)
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def encode_prompt(tokenizer, prompt: str | tuple[dict, ...], context: str | None = None) -> list[int]:
    """Token ids of `render_prompt`: the template already placed the special tokens, so none are added."""
    return tokenizer(render_prompt(tokenizer, prompt, context), add_special_tokens=False)["input_ids"]


def encode_response(tokenizer, response: str) -> list[int]:
    return tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def decode_responses(tokenizer, response_ids_B_R: torch.Tensor, response_mask_B_R: torch.Tensor) -> list[str]:
    """Text of each response, without EOS and padding."""
    out = []
    for ids, mask in zip(response_ids_B_R.tolist(), response_mask_B_R.tolist()):
        kept = [i for i, m in zip(ids, mask) if m and i != tokenizer.eos_token_id]
        out.append(tokenizer.decode(kept, skip_special_tokens=True))
    return out
