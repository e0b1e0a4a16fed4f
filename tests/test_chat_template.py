"""Teachers must render chats exactly as the student does: template, role tokens, special tokens."""

import copy

import pytest

from .conftest import make_llama
from opdbench import trainer
from opdbench.chat import rendering_difference
from opdbench.conf import load_config
from opdbench.errors import OpdbenchError
from opdbench.zoo.tokenizer import CHAT_TEMPLATE

# The zoo's template with "<|human|>"-style markers swapped in: same vocabulary, other role tokens.
SWAPPED_ROLES = CHAT_TEMPLATE.replace("<|{{ m['role'] }}|>", "{% if m['role'] == 'user' %}<|system|>"
                                      "{% else %}<|{{ m['role'] }}|>{% endif %}")
NO_BOS = CHAT_TEMPLATE.replace("{{ bos_token }}", "")


def _variant(tokenizer, template=None, **special):
    other = copy.deepcopy(tokenizer)
    if template is not None:
        other.chat_template = template
    for kind, token in special.items():
        setattr(other, kind, token)
    return other


def test_identical_tokenizers_render_alike(tokenizer):
    assert rendering_difference(tokenizer, copy.deepcopy(tokenizer)) is None


@pytest.mark.parametrize("template, special, expected", [
    (NO_BOS, {}, "first difference at token 0: '<|user|>' vs '<bos>'"),
    (SWAPPED_ROLES, {}, "first difference at token 1: '<|system|>' vs '<|user|>'"),
    (None, {"eos_token": "<|reserved-0|>"}, "vs '<eos>'"),  # the response's closing token differs
    (None, {"pad_token": "<|reserved-1|>"}, "pad token '<|reserved-1|>' vs '<pad>'"),
])
def test_differences_are_named(tokenizer, template, special, expected):
    difference = rendering_difference(_variant(tokenizer, template, **special), tokenizer)
    assert difference is not None and difference.endswith(expected), difference


def _checkpoint(path, tokenizer):
    make_llama(tokenizer).save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def mismatched(tmp_path, tokenizer):
    """A student and a teacher with one vocabulary but the teacher's user turns marked otherwise."""
    student = _checkpoint(tmp_path / "student", tokenizer)
    teacher = _checkpoint(tmp_path / "teacher", _variant(tokenizer, SWAPPED_ROLES))
    return student, teacher


def _overrides(tmp_path, student, teacher, *extra):
    return ["budget=smoke", f"results_dir={tmp_path / 'runs'}", f"models.student={student}",
            f"models.teachers=[{teacher}]", "progress=false", *extra]


def test_prepare_refuses_a_teacher_with_another_template(tmp_path, mismatched):
    student, teacher = mismatched
    with pytest.raises(OpdbenchError) as err:
        trainer.prepare(load_config(_overrides(tmp_path, student, teacher)))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"chat template mismatch: teacher '{teacher}' renders chats differently from "
                              f"student '{student}': first difference at token 1: '<|system|>' vs '<|user|>'")
    assert "models.allow_template_mismatch=true" in message


def test_prepare_warns_once_when_the_mismatch_is_allowed(tmp_path, mismatched, capsys):
    student, teacher = mismatched
    run = trainer.prepare(load_config(_overrides(tmp_path, student, teacher, "models.allow_template_mismatch=true")))
    assert run.teachers and run.student is not None
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "chat template mismatch" in warnings[0]


def test_prepare_accepts_matching_models(tmp_path, tokenizer, capsys):
    student = _checkpoint(tmp_path / "student", tokenizer)
    teacher = _checkpoint(tmp_path / "teacher", copy.deepcopy(tokenizer))
    trainer.prepare(load_config(_overrides(tmp_path, student, teacher)))
    assert "warning" not in capsys.readouterr().err
