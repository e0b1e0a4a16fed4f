"""The zoo's one small tokenizer, shared by every tiny model.

Word-level over the task corpora, with digits split one per token (so arithmetic is learnable), line
breaks as tokens of their own (code), and a Metaspace pre-tokenizer (so decoding restores spaces
exactly). Saved as a plain `tokenizer.json` that `AutoTokenizer` loads as a fast tokenizer; the
models are Llama, never Qwen2, because `AutoTokenizer` swaps in its own class for
`model_type=qwen2` and silently changes token ids.
"""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

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


def build_tokenizer(texts) -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose vocabulary is every piece of `texts` (sorted, so deterministic)."""
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
