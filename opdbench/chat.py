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


# A short multi-turn chat: every role token the trainer's prompts use, the generation prompt, and
# the end of a response. Its words need not be in the vocabulary (unknown ones encode alike).
PROBE_CONVERSATION = ({"role": "user", "content": "What is 2 + 3?"},
                      {"role": "assistant", "content": "2 + 3 = 5."},
                      {"role": "user", "content": "And 4 + 4?"})
PROBE_RESPONSE = "4 + 4 = 8."


def rendering_difference(tokenizer, other) -> str | None:
    """Where `tokenizer` and `other` tokenize a chat differently (first theirs, then other's), or None.

    Teachers score the student's token ids, so a teacher whose template or special tokens differ
    (other role markers, another EOS) would score sequences it was never trained on. Compares the
    probe's token ids as the trainer builds them, then the pad/bos/eos ids (pad is never rendered).
    """
    ids, other_ids = (encode_prompt(tok, PROBE_CONVERSATION) + encode_response(tok, PROBE_RESPONSE)
                      for tok in (tokenizer, other))
    if ids != other_ids:
        i = next((i for i, (a, b) in enumerate(zip(ids, other_ids)) if a != b), min(len(ids), len(other_ids)))
        token, other_token = (tok.convert_ids_to_tokens(seq[i]) if i < len(seq) else "(end)"
                              for tok, seq in ((tokenizer, ids), (other, other_ids)))
        return f"first difference at token {i}: {token!r} vs {other_token!r}"
    for kind in ("bos", "eos", "pad"):
        if getattr(tokenizer, f"{kind}_token_id") != getattr(other, f"{kind}_token_id"):
            return f"{kind} token {getattr(tokenizer, kind + '_token')!r} vs {getattr(other, kind + '_token')!r}"
    return None
