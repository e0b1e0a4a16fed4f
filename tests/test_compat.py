"""A teacher must be able to score the student's tokens: rows, token ids, special tokens, template."""

import copy
import json
import shutil

import pytest
from torch import nn

from .conftest import make_llama
from opdbench.compat import PROBES, check_compatible, embedding_rows
from opdbench.errors import OpdbenchError
from opdbench.zoo import ZOO_DIR, load_model, load_tokenizer
from opdbench.zoo.tokenizer import CHAT_TEMPLATE

STUDENT, TEACHER = "zoo:student", "zoo:teacher"


@pytest.fixture(scope="module")
def zoo():
    """The shipped pair: one tokenizer (saved twice), native Llama models of 151 rows."""
    return (load_tokenizer(STUDENT), load_model(STUDENT), load_tokenizer(TEACHER), load_model(TEACHER))


def _teacher_tokenizer(tmp_path, edit_config=None, edit_tokenizer=None, template=None):
    """A copy of the zoo teacher's tokenizer files with one edit, loaded as a checkpoint folder would be."""
    path = tmp_path / "teacher"
    path.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(ZOO_DIR / "teacher" / name, path / name)
    for name, edit in (("tokenizer_config.json", edit_config), ("tokenizer.json", edit_tokenizer)):
        if edit is not None:
            data = json.loads((path / name).read_text())
            edit(data)
            (path / name).write_text(json.dumps(data))
    if template is not None:
        (path / "chat_template.jinja").write_text(template)
    return str(path), load_tokenizer(str(path))


def _with_rows(model, rows: int):
    """A copy of a native Llama whose (tied) embedding has `rows` rows."""
    model = copy.deepcopy(model)
    model.model.embed_tokens = nn.Embedding(rows, model.shape.hidden_size)
    model.lm_head.weight = model.model.embed_tokens.weight
    return model


def _refusal(*args, **kwargs) -> str:
    with pytest.raises(OpdbenchError) as err:
        check_compatible(*args, **kwargs)
    message = str(err.value)
    assert "\n" not in message  # the CLI prints one line
    return message


def test_the_zoo_pair_is_compatible_without_notes(zoo, capsys):
    assert check_compatible(STUDENT, zoo[0], zoo[1], TEACHER, zoo[2], zoo[3]) == []
    assert capsys.readouterr().err == ""


def test_probes_cover_the_text_kinds_and_the_zoo_tokenizer_agrees_on_unk(zoo):
    # The zoo tokenizer knows none of these words: they must pass as the same <unk>, not fail.
    unk = zoo[0].unk_token_id
    assert len(PROBES) >= 15 and any("\n" in p for p in PROBES) and any(not p.isascii() for p in PROBES)
    assert any(unk in zoo[0].encode(p, add_special_tokens=False) for p in PROBES)


@pytest.mark.parametrize("kind", ["opdbench", "transformers"])
def test_padded_rows_pass_with_a_note(zoo, capsys, kind):
    # Real checkpoints pad the embedding to a multiple of 64; both kinds of model count rows alike.
    tokenizer = zoo[0]
    if kind == "opdbench":
        student, teacher = _with_rows(zoo[1], 192), _with_rows(zoo[3], 192)
    else:
        student, teacher = (make_llama(tokenizer, seed=s) for s in (0, 1))
        for model in (student, teacher):
            model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64, mean_resizing=False)
    assert embedding_rows(student) == embedding_rows(teacher) == 192
    capsys.readouterr()
    notes = check_compatible(STUDENT, tokenizer, student, TEACHER, zoo[2], teacher)
    assert notes == [f"note: {role} '{spec}' has 192 embedding rows for 151 tokens: 41 padded rows that no token "
                     "maps to (a trained model gives them almost no probability; nothing masks them out of sampling)"
                     for role, spec in (("student", STUDENT), ("teacher", TEACHER))]
    assert capsys.readouterr().err.splitlines() == notes


def test_fewer_rows_than_tokens_is_refused(zoo, capsys):
    message = _refusal(STUDENT, zoo[0], zoo[1], TEACHER, zoo[2], _with_rows(zoo[3], 128))
    assert message == (f"vocabulary mismatch: teacher '{TEACHER}' (with student '{STUDENT}') has 128 embedding rows "
                       "for the 151 tokens of its tokenizer: ids 128..150 have no row to score; use the tokenizer "
                       "saved with that model")
    assert capsys.readouterr().err == ""


def test_student_and_teacher_row_counts_must_match(zoo, capsys):
    # Each padding alone is fine; different ones put the two distributions over different ids.
    message = _refusal(STUDENT, zoo[0], _with_rows(zoo[1], 192), TEACHER, zoo[2], zoo[3])
    assert message.startswith(f"vocabulary mismatch: student '{STUDENT}' has 192 embedding rows, teacher "
                              f"'{TEACHER}' has 151: ")
    assert capsys.readouterr().err == ""  # the student's padding note is not printed before a refusal


def _swap(a: str, b: str):
    """An edit of tokenizer.json: tokens a and b trade ids (same tokens, same size, other ids)."""
    def edit(data):
        vocab = data["model"]["vocab"]
        vocab[a], vocab[b] = vocab[b], vocab[a]
    return edit


def test_a_probe_encoded_differently_is_refused(tmp_path, zoo):
    spec, teacher_tokenizer = _teacher_tokenizer(tmp_path, edit_tokenizer=_swap("▁1", "▁2"))
    assert len(teacher_tokenizer) == len(zoo[0]) and teacher_tokenizer.unk_token_id == zoo[0].unk_token_id
    ids = zoo[0].encode("12345", add_special_tokens=False)
    teacher_ids = [ids[0] + 1] + ids[1:]  # "▁1" now has the id of "▁2", the next one
    message = _refusal(STUDENT, zoo[0], zoo[1], spec, teacher_tokenizer, zoo[3])
    assert message == (f"tokenizer mismatch: student '{STUDENT}' and teacher '{spec}' encode '12345' differently "
                       f"from id 0 on: {ids} vs {teacher_ids}; use models that share one tokenizer")


def test_long_id_lists_are_cut_around_the_first_difference(tmp_path, zoo):
    # "▁v" first occurs in the for-loop probe (19 ids), at id 1: shown from id 0, 12 ids, then "...".
    spec, teacher_tokenizer = _teacher_tokenizer(tmp_path, edit_tokenizer=_swap("▁v", "▁cat"))
    probe = next(p for p in PROBES if p.startswith("for v"))
    ids = zoo[0].encode(probe, add_special_tokens=False)
    message = _refusal(STUDENT, zoo[0], zoo[1], spec, teacher_tokenizer, zoo[3])
    assert f"encode {probe!r} differently from id 1 on: [{', '.join(map(str, ids[:12]))}, ...] vs [" in message


def test_a_different_eos_is_refused_before_the_template(tmp_path, zoo):
    # Another eos also changes the rendered chat; the special-token check runs first and names it.
    spec, teacher_tokenizer = _teacher_tokenizer(tmp_path, edit_config=lambda c: c.update(eos_token="<|reserved-0|>"))
    eos, reserved = zoo[0].convert_tokens_to_ids(["<eos>", "<|reserved-0|>"])
    message = _refusal(STUDENT, zoo[0], zoo[1], spec, teacher_tokenizer, zoo[3])
    assert message == (f"special token mismatch: student '{STUDENT}' has eos '<eos>' (id {eos}), teacher '{spec}' "
                       f"has eos '<|reserved-0|>' (id {reserved}); use models that share special tokens")


SWAPPED_ROLES = CHAT_TEMPLATE.replace("<|{{ m['role'] }}|>", "{% if m['role'] == 'user' %}<|system|>"
                                      "{% else %}<|{{ m['role'] }}|>{% endif %}")


def test_a_different_template_is_refused_or_allowed_with_a_warning(tmp_path, zoo, capsys):
    spec, teacher_tokenizer = _teacher_tokenizer(tmp_path, template=SWAPPED_ROLES)
    args = (STUDENT, zoo[0], zoo[1], spec, teacher_tokenizer, zoo[3])
    mismatch = (f"chat template mismatch: teacher '{spec}' renders chats differently from student '{STUDENT}': "
                "first difference at token 1: '<|system|>' vs '<|user|>'")
    assert _refusal(*args) == f"{mismatch}; use models that share a template, or set models.allow_template_mismatch=true"
    lines = check_compatible(*args, allow_template_mismatch=True)
    assert lines == [f"warning: {mismatch} (allowed by models.allow_template_mismatch)"]
    assert capsys.readouterr().err.splitlines() == lines
