"""Can this teacher score this student's tokens? Checked before any compute is spent.

The teacher reads the student's token ids as its own, so the two must agree on what every id means:
the same rows to score, the same ids for the same text, the same special tokens and the same chat
rendering. A mismatch trains on silently wrong log-probs (the failure OPD users report most), so
`check_compatible` refuses it with one line naming both models and the first difference.
"""

from __future__ import annotations

import sys

from .chat import rendering_difference
from .errors import OpdbenchError

# Text both tokenizers must split into the same ids: the kinds of text the tasks and chats contain.
# Words a tokenizer does not know may map to its unk: that is agreement too (the zoo's word-level
# tokenizer knows only its corpora's words, and the zoo's models share it).
PROBES = (
    "12345",
    "3.14",
    "2 + 3 = 5",
    "-7 * 8 = -56",
    "The answer is 42.",
    "how many pens does ann have now?",
    "Hello, World! CamelCase and UPPER",
    "x = (a + b) / 2; y[0] != z",
    "a  b\t c   d",
    "line one\nline two\n\n",
    "def f(x):\n    return x",
    "for v in xs:\n\tif v % 2 == 0:\n\t\tprint(v)",
    "café",
    "naïve résumé",
    "日本",
    "smile 🙂",
    "<|user|>What is 2 + 3?<|assistant|>2 + 3 = 5.",
    "User: hi!\nAssistant: Hello, how can I help?",
    "  leading and trailing  ",
)
SPECIALS = ("bos", "eos", "pad", "unk")


def check_compatible(student_spec: str, student_tokenizer, student_model, teacher_spec: str, teacher_tokenizer,
                     teacher_model, *, allow_template_mismatch: bool = False) -> list[str]:
    """Refuse (OpdbenchError, one line naming both models and what differs) a teacher that cannot
    score the student's tokens; return the notes and warnings printed to stderr.

    Checks in order: embedding rows against each tokenizer and against each other, token ids of
    `PROBES`, the bos/eos/pad/unk tokens, the chat rendering. The lines are returned as printed
    ('note: ...', or 'warning: ...' for an allowed template mismatch) and printed only once every
    check has passed, so a refusal prints nothing but its error.
    """
    notes = _check_rows(student_spec, student_tokenizer, student_model, teacher_spec, teacher_tokenizer, teacher_model)
    _check_probes(student_spec, student_tokenizer, teacher_spec, teacher_tokenizer)
    _check_specials(student_spec, student_tokenizer, teacher_spec, teacher_tokenizer)
    warning = _check_template(student_spec, student_tokenizer, teacher_spec, teacher_tokenizer, allow_template_mismatch)
    lines = notes + ([warning] if warning else [])
    for line in lines:
        print(line, file=sys.stderr)
    return lines


def embedding_rows(model) -> int:
    """Rows of the input embedding: transformers' models through `get_input_embeddings`,
    opdbench.llama.Llama through `model.embed_tokens` (the transformers parameter name)."""
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else model.model.embed_tokens
    return embedding.weight.shape[0]


def _check_rows(student_spec, student_tokenizer, student_model, teacher_spec, teacher_tokenizer, teacher_model):
    rows, notes = {}, []
    for role, spec, tokenizer, model, other in (
            ("student", student_spec, student_tokenizer, student_model, f"teacher {teacher_spec!r}"),
            ("teacher", teacher_spec, teacher_tokenizer, teacher_model, f"student {student_spec!r}")):
        rows[role], tokens = embedding_rows(model), len(tokenizer)
        if rows[role] < tokens:
            raise OpdbenchError(f"vocabulary mismatch: {role} {spec!r} (with {other}) has {rows[role]} embedding "
                                f"rows for the {tokens} tokens of its tokenizer: ids {rows[role]}..{tokens - 1} have "
                                "no row to score; use the tokenizer saved with that model")
        if rows[role] > tokens:  # padded to a multiple of 64/128 for fast matmuls: harmless once trained, but say so
            notes.append(f"note: {role} {spec!r} has {rows[role]} embedding rows for {tokens} tokens: "
                         f"{rows[role] - tokens} padded rows that no token maps to (a trained model gives them "
                         "almost no probability; nothing masks them out of sampling)")
    if rows["student"] != rows["teacher"]:
        raise OpdbenchError(f"vocabulary mismatch: student {student_spec!r} has {rows['student']} embedding rows, "
                            f"teacher {teacher_spec!r} has {rows['teacher']}: their per-token distributions are over "
                            "different ids; use models that share one vocabulary")
    return notes


def _check_probes(student_spec, student_tokenizer, teacher_spec, teacher_tokenizer) -> None:
    for probe in PROBES:
        ids, teacher_ids = (tok.encode(probe, add_special_tokens=False) for tok in (student_tokenizer, teacher_tokenizer))
        if ids != teacher_ids:
            first = next((i for i, (a, b) in enumerate(zip(ids, teacher_ids)) if a != b), min(len(ids), len(teacher_ids)))
            start = max(0, first - 2)  # the lists from just before the first difference
            raise OpdbenchError(f"tokenizer mismatch: student {student_spec!r} and teacher {teacher_spec!r} encode "
                                f"{probe!r} differently from id {first} on: {_ids(ids, start)} vs "
                                f"{_ids(teacher_ids, start)}; use models that share one tokenizer")


def _ids(ids: list[int], start: int, limit: int = 12) -> str:
    shown = ", ".join(map(str, ids[start:start + limit]))
    return f"[{'..., ' if start else ''}{shown}{', ...' if start + limit < len(ids) else ''}]"


def _check_specials(student_spec, student_tokenizer, teacher_spec, teacher_tokenizer) -> None:
    for kind in SPECIALS:
        student, teacher = (_special(tok, kind) for tok in (student_tokenizer, teacher_tokenizer))
        if student != teacher:
            raise OpdbenchError(f"special token mismatch: student {student_spec!r} has {kind} {student}, teacher "
                                f"{teacher_spec!r} has {kind} {teacher}; use models that share special tokens")


def _special(tokenizer, kind: str) -> str:
    token, token_id = getattr(tokenizer, f"{kind}_token"), getattr(tokenizer, f"{kind}_token_id")
    return "none" if token is None and token_id is None else f"{token!r} (id {token_id})"


def _check_template(student_spec, student_tokenizer, teacher_spec, teacher_tokenizer, allow: bool) -> str | None:
    """The chat rendering (chat.rendering_difference); an allowed mismatch's warning is returned, not printed."""
    difference = rendering_difference(teacher_tokenizer, student_tokenizer)
    if difference is None:
        return None
    message = (f"chat template mismatch: teacher {teacher_spec!r} renders chats differently from student "
               f"{student_spec!r}: {difference}")
    if not allow:
        raise OpdbenchError(f"{message}; use models that share a template, or set models.allow_template_mismatch=true")
    return f"warning: {message} (allowed by models.allow_template_mismatch)"
