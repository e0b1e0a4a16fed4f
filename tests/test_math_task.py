import pytest

from opdbench.tasks.math import MathTask


def test_splits_are_deterministic_disjoint_and_large_enough():
    a, b = MathTask(), MathTask()
    assert [e.prompt for e in a.examples("eval")] == [e.prompt for e in b.examples("eval")]
    prompts = {s: {e.prompt for e in a.examples(s)} for s in ("sft", "train", "eval")}
    assert len(prompts["eval"]) >= 200
    assert not prompts["eval"] & prompts["train"]
    assert not prompts["eval"] & prompts["sft"]
    assert not prompts["train"] & prompts["sft"]
    assert MathTask(seed=7).examples("eval")[0] != a.examples("eval")[0]


def test_references_score_one_and_have_a_scratchpad(math_task, tokenizer):
    lengths = []
    for ex in math_task.examples("eval"):
        assert math_task.score(ex, ex.reference) == 1.0
        assert ex.reference.count("=") >= 2  # at least two scratchpad steps
        lengths.append(len(tokenizer(ex.reference, add_special_tokens=False)["input_ids"]))
    assert sorted(lengths)[len(lengths) // 2] >= 15


def test_values_stay_in_range():
    for ex in MathTask().examples("train"):
        assert 0 <= ex.target <= 99


@pytest.mark.parametrize("response, expected", [
    ("12+7=19. 19-5=14. answer: 14", 1.0),
    ("answer: 14", 1.0),
    ("answer:14", 1.0),
    ("12+7=19. 19-5=14. answer: 15", 0.0),
    ("answer: 13 answer: 14", 1.0),  # the final answer line counts
    ("answer: 14 answer: 13", 0.0),
    ("12+7=19. 19-5=14.", 0.0),  # no answer line
    ("", 0.0),
    (None, 0.0),
    ("answer: ", 0.0),
    ("answer: -14", 0.0),
    ("answer: 99999999999999999999999999", 0.0),
    ("<unk> ?? = = answer", 0.0),
    ("answer: 1 4", 0.0),
])
def test_scorer_edge_cases(response, expected):
    task = MathTask()
    ex = next(e for e in task.examples("eval") if e.target == 14)
    score = task.score(ex, response)
    assert isinstance(score, float) and score == expected


def test_scorer_never_raises_on_arbitrary_text(math_task):
    ex = math_task.examples("eval")[0]
    for junk in ["\x00\xff", "answer: " * 1000, "answer: 1e9", "answer: ٣", 12345, b"answer: 1"]:
        assert math_task.score(ex, junk) in (0.0, 1.0)
