import pytest

from opdbench import sandbox
from opdbench.tasks.code import RESULTS, TRANSFORMS, CodeTask, program_of

SMALL = dict(sizes={"sft": 200, "train": 100, "eval": 200})


def test_splits_are_deterministic_disjoint_and_large_enough():
    a, b = CodeTask(**SMALL), CodeTask(**SMALL)
    assert a.examples("eval") == b.examples("eval")
    prompts = {s: {e.prompt for e in a.examples(s)} for s in ("sft", "train", "eval")}
    assert len(prompts["eval"]) == 200
    assert not prompts["eval"] & prompts["train"] and not prompts["eval"] & prompts["sft"]
    assert not prompts["train"] & prompts["sft"]
    assert CodeTask(seed=1, **SMALL).examples("eval")[0] != a.examples("eval")[0]
    with pytest.raises(ValueError):
        a.examples("test")


def test_every_body_line_computes_what_its_spec_says():
    """The expected outputs come from Python functions, not from running the lines: check, in the
    sandbox, that every line (and every result) does what its function does."""
    xs = [0, 3, 4, 7, 9]
    jobs = []
    for _, line, fn in TRANSFORMS:
        for k in (1, 4):
            jobs.append((program_of(line.format(k=k) + "\nreturn xs"), [f"assert f({xs}) == {fn(xs, k)!r}"]))
    for _, line, fn in RESULTS:
        jobs.append((program_of(line), [f"assert f({xs}) == {fn(xs)!r}", f"assert f([]) == {fn([])!r}"]))
    results = sandbox.run_many(jobs)
    assert [r.status for r in results] == ["ok"] * len(jobs)
    assert all(r.score == 1.0 for r in results), [r.outcomes for r in results]


def test_references_pass_their_hidden_tests_in_the_sandbox():
    task = CodeTask(**SMALL)
    for ex in task.examples("eval")[:8]:
        result = sandbox.run_tests(program_of(ex.reference), list(ex.target))
        assert result.score == 1.0, (ex.reference, result)
        assert ex.prompt.startswith("def f(xs): ") and "==" in ex.prompt  # spec plus a shown example
        assert 1 <= ex.reference.count("\n") <= 2


def test_scores_give_partial_credit_and_never_raise():
    task = CodeTask(**SMALL)
    ex = task.examples("eval")[0]
    assert task.score(ex, ex.reference) == 1.0
    assert task.score(ex, ex.reference + "\n") == 1.0
    garbage = ["", "return", "xs = [", "\x00", "def (", "return xs[99]", ")" * 500, None, 12, "é" * 1000]
    assert all(task.score(ex, g) == 0.0 for g in garbage)
    # a body that returns a constant passes exactly the hidden tests expecting that constant
    for constant in ("1", "0", "[]"):
        expected = sum(test.endswith(f"== {constant}") for test in ex.target) / len(ex.target)
        assert task.score(ex, f"return {constant}") == pytest.approx(expected)


def test_hidden_outputs_differ_so_no_constant_program_passes_more_than_one_test():
    """Specs whose outputs cannot differ are redrawn: before, `return 0` scored 0.33 on eval."""
    task = CodeTask(**SMALL)
    for ex in task.examples("eval"):
        outputs = [test.split(" == ", 1)[1] for test in ex.target]
        assert len(set(outputs)) == len(outputs) == 5, ex.target
        assert ex.prompt.rsplit(" == ", 1)[1] not in outputs  # the shown example is not a hidden test's answer
    constant_scores = task.score_many(task.examples("eval"), ["return 0"] * 200)
    assert max(constant_scores) <= 1 / 5


def test_hostile_responses_score_zero_and_stay_contained():
    task = CodeTask(**SMALL, timeout_s=1.0)
    ex = task.examples("eval")[1]
    hostile = ["while True:\n    pass", "import os\nos.kill(os.getppid(), 9)", "raise SystemExit(0)",
               "return open('/etc/passwd').read()"]
    assert task.score_many([ex] * len(hostile), hostile) == [0.0] * len(hostile)


def test_score_many_runs_each_distinct_response_once(monkeypatch):
    task = CodeTask(**SMALL)
    ex = task.examples("eval")[2]
    calls = []
    real = sandbox.score_many
    monkeypatch.setattr(sandbox, "score_many", lambda jobs, **k: calls.extend(jobs) or real(jobs, **k))
    scores = task.score_many([ex] * 5, ["return 0", "return 0", ex.reference, "return (", "return 0"])
    assert len(calls) == 1  # the reference and the syntax error need no subprocess
    assert scores[0] == scores[1] == scores[4] and scores[2] == 1.0 and scores[3] == 0.0
