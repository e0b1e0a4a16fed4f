"""The zoo's one small tokenizer, shared by every tiny model.

Word-level over the task corpora, with digits split one per token (so arithmetic is learnable), line
breaks as tokens of their own (code), and a Metaspace pre-tokenizer (so decoding restores spaces
exactly). Saved as a plain `tokenizer.json` that `AutoTokenizer` loads as a fast tokenizer; the
models are Llama, never Qwen2, because `AutoTokenizer` swaps in its own class for
`model_type=qwen2` and silently changes token ids.

A cell loads it as `ZooTokenizer`, the few methods opdbench calls over the same `tokenizers`
backend: importing transformers would cost a tiny-tier cell ~1 s, half of its start-up.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
ROLES = ("<|system|>", "<|user|>", "<|assistant|>", "<|context|>")
CONTROL = tuple(f"<|teacher-{k}|>" for k in range(4))  # routes a prompt to teacher k (ensembles)
RESERVED = tuple(f"<|reserved-{k}|>" for k in range(8))
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK) + ROLES + CONTROL + RESERVED
MAX_VOCAB = 512

# Messages are rendered by the tokenizer's own template, so real-tier models use theirs unchanged.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _pre_tokenizer():
    return pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(prepend_scheme="always"),
        pre_tokenizers.Split("\n", behavior="isolated"),  # code: a line break is a token of its own
        # Each digit and each punctuation mark is a token, keeping the space before it ("▁="):
        # arithmetic stays digit by digit, and a space costs no token of its own.
        pre_tokenizers.Split(Regex(r"▁?(?:[^\w\s▁]|\d)"), behavior="isolated"),
    ])


def build_tokenizer(texts):
    """A word-level tokenizer whose vocabulary is every piece of `texts` (sorted, so deterministic),
    as transformers' `PreTrainedTokenizerFast` (for `save_pretrained`)."""
    from transformers import PreTrainedTokenizerFast

    pre = _pre_tokenizer()
    pieces = sorted({piece for text in texts for piece, _ in pre.pre_tokenize_str(text)})
    vocab = {tok: i for i, tok in enumerate(list(SPECIAL_TOKENS) + [p for p in pieces if p not in SPECIAL_TOKENS])}
    if len(vocab) > MAX_VOCAB:
        raise ValueError(f"tokenizer vocabulary has {len(vocab)} entries, more than {MAX_VOCAB}")
    core = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    core.pre_tokenizer = pre
    core.decoder = decoders.Metaspace(prepend_scheme="always")
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        additional_special_tokens=list(ROLES + CONTROL + RESERVED),
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


# The keys of the tokenizer_config.json that build_tokenizer's save_pretrained writes (transformers 5).
ZOO_CONFIG_KEYS = {"backend", "bos_token", "eos_token", "extra_special_tokens", "is_local", "local_files_only",
                   "model_max_length", "pad_token", "tokenizer_class", "unk_token"}


class ZooTokenizer:
    """What opdbench asks of a tokenizer, for a folder the zoo saved: the same ids, text and chat
    rendering as transformers' `PreTrainedTokenizerFast` on it (tests/test_tokenizer.py compares
    them over every task's data), without importing transformers. `load` returns None for a folder
    it does not cover (another template or tokenizer class): transformers loads that one."""

    SPECIALS = ("bos", "eos", "pad", "unk")

    def __init__(self, backend: Tokenizer, special_tokens: dict[str, str | None], chat_template: str):
        self.backend, self.chat_template = backend, chat_template
        self.special_tokens = special_tokens
        for kind in self.SPECIALS:
            token = special_tokens.get(f"{kind}_token")
            setattr(self, f"{kind}_token", token)
            setattr(self, f"{kind}_token_id", None if token is None else backend.token_to_id(token))
        import jinja2.sandbox  # transformers' settings, so a template renders as it would there

        env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        self._template = env.from_string(chat_template)

    @classmethod
    def load(cls, folder: Path) -> ZooTokenizer | None:
        config_file, template_file = folder / "tokenizer_config.json", folder / "chat_template.jinja"
        if not (config_file.exists() and template_file.exists() and (folder / "tokenizer.json").exists()):
            return None
        config = json.loads(config_file.read_text())
        # Only what build_tokenizer saves: any other setting (add_bos_token, clean-up of spaces, more
        # special tokens) is one that transformers would apply and this class does not.
        if set(config) - ZOO_CONFIG_KEYS or config.get("tokenizer_class") != "TokenizersBackend" \
                or config.get("extra_special_tokens") != list(ROLES + CONTROL + RESERVED) \
                or template_file.read_text() != CHAT_TEMPLATE:
            return None
        specials = {f"{kind}_token": config.get(f"{kind}_token") for kind in cls.SPECIALS}
        return cls(Tokenizer.from_file(str(folder / "tokenizer.json")), specials, CHAT_TEMPLATE)

    def __len__(self) -> int:
        return self.backend.get_vocab_size()

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.backend.encode(text, add_special_tokens=add_special_tokens).ids

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": self.encode(text, add_special_tokens)}

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = False, tokenize: bool = True):
        text = self._template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                     **self.special_tokens)
        return self.encode(text, add_special_tokens=False) if tokenize else text

    def get_vocab(self) -> dict[str, int]:
        return self.backend.get_vocab()

    def convert_tokens_to_ids(self, tokens: str | list[str]):
        """An unknown token is the unk id, as in transformers."""
        if isinstance(tokens, str):
            found = self.backend.token_to_id(tokens)
            return self.unk_token_id if found is None else found
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | list[int]):
        return self.backend.id_to_token(ids) if isinstance(ids, int) else [self.backend.id_to_token(i) for i in ids]
