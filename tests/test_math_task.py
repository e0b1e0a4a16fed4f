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


def test_generated_splits_are_memoized_on_disk_for_the_next_process(tmp_path, monkeypatch):
    """tasks.base.memoized_splits: a later process reads the splits an earlier one generated (the
    same examples, not generated again); other parameters, a torn file or no cache folder generate."""
    import inspect

    from opdbench.tasks import math as math_module
    from opdbench.tasks.base import memoized_splits

    generate = inspect.unwrap(math_module._generate)  # the undecorated generator
    calls = []
    counting = memoized_splits(lambda *params: calls.append(params) or generate(*params))
    monkeypatch.setenv("OPDBENCH_TASK_CACHE", str(tmp_path))
    params = (7, (("eval", 20), ("sft", 30), ("train", 40)), 2, 3, 99)
    first = counting(*params)
    assert len(calls) == 1 and first == generate(*params) and len(list(tmp_path.glob("*.pkl"))) == 1
    counting.cache_clear()  # as a new process would find it
    assert counting(*params) == first and len(calls) == 1
    assert counting(8, *params[1:]) != first and len(calls) == 2  # another seed: another file
    counting.cache_clear()
    for path in tmp_path.glob("*.pkl"):
        path.write_bytes(b"torn")
    assert counting(*params) == first and len(calls) == 3
    counting.cache_clear()
    monkeypatch.setenv("OPDBENCH_TASK_CACHE", "")
    assert counting(*params) == first and len(calls) == 4
