"""The shipped zoo: intact, calibrated, and its recorded scores reproduce."""

from dataclasses import asdict

import pytest

from opdbench import zoo
from opdbench.evaluate import evaluate
from opdbench.zoo.build import SPECS, load_tasks

TEACHERS = ["teacher-xs", "teacher-s", "teacher-m", "teacher"]  # smallest to largest


def mean8(entry, key="eval"):
    return entry[key]["math"]["mean@8"]


def test_checksums_match_the_manifest():
    models = zoo.manifest()["models"]
    assert set(models) == {*TEACHERS, "teacher-base", "student"}
    assert set(models) == set(zoo.list_models())
    for name, entry in models.items():
        assert zoo.checksums(zoo.ZOO_DIR / name) == entry["files"], f"{name} differs from the manifest"


def test_manifest_matches_the_build_specs():
    models = zoo.manifest()["models"]
    for name, spec in SPECS.items():
        assert models[name]["spec"] == asdict(spec), name
    assert models["teacher-base"]["base_of"] == "teacher"
    assert models["teacher-base"]["sft_step"] == SPECS["teacher"].base_step


def test_zoo_is_small():
    size = sum(p.stat().st_size for p in zoo.ZOO_DIR.rglob("*") if p.is_file())
    assert size < 25 * 2**20


def test_calibration_targets():
    models = zoo.manifest()["models"]
    params = [models[n]["params"] for n in TEACHERS]
    scores = [mean8(models[n]) for n in TEACHERS]
    assert params == sorted(set(params)), "teachers must grow in size"
    assert all(a < b for a, b in zip(scores, scores[1:])), f"teacher mean@8 not increasing with size: {scores}"
    assert scores[0] <= 0.8 and scores[-1] >= 0.9
    assert mean8(models["teacher-base"]) < mean8(models["teacher"])
    student = models["student"]
    assert 0.02 <= mean8(student) <= 0.3
    # The OPSD self-teacher (the student shown the reference as context) is far better than the student.
    assert mean8(student, "eval_with_context") >= 0.5
    assert mean8(student, "eval_with_context") >= mean8(student) + 0.3


@pytest.mark.parametrize("context", [False, True], ids=["no-context", "with-context"])
def test_student_recorded_scores_reproduce(context):
    task = load_tasks()[0]
    scores, _ = evaluate(zoo.load_model("zoo:student"), zoo.load_tokenizer("zoo:student"), task, context=context)
    entry = zoo.manifest()["models"]["student"]
    assert scores == pytest.approx(entry["eval_with_context" if context else "eval"]["math"], abs=1e-9)


def test_sft_batch_can_show_the_reference_as_context(tokenizer, math_task):
    from opdbench.chat import encode_prompt, encode_response
    from opdbench.zoo.sft import sft_batch

    examples = math_task.examples("sft")[:2]
    ids, mask, labels = sft_batch(tokenizer, examples, with_context=[True, False])
    with_ctx = encode_prompt(tokenizer, examples[0].prompt, context=examples[0].reference)
    plain = encode_prompt(tokenizer, examples[1].prompt)
    for row, prompt, ex in ((0, with_ctx, examples[0]), (1, plain, examples[1])):
        seq = prompt + encode_response(tokenizer, ex.reference)
        assert ids[row, :len(seq)].tolist() == seq and mask[row].sum() == len(seq)
        assert (labels[row, :len(prompt)] == -100).all()  # context and prompt are never targets
        assert labels[row, len(prompt):len(seq)].tolist() == seq[len(prompt):]
    assert tokenizer.convert_tokens_to_ids("<|context|>") in with_ctx
