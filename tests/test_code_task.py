import random

import pytest

from opdbench import sandbox
from opdbench.tasks.code import RESULTS, TRANSFORMS, CodeTask, list_program, list_score, program_of

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


def test_list_programs_score_as_the_sandbox_scores_them():
    """Responses in the task's list language are scored without running them: they must get
    exactly the sandbox's score, for right and wrong programs (other constants and operators,
    lines swapped, dropped or repeated, dead lines after a return, no return, blank lines, and
    calls that raise: `min([])`, `sum(xs, default=0)`, `v % 0`)."""
    task, rng = CodeTask(**SMALL), random.Random(0)
    lines = ([line.format(k=k) for _, line, _ in TRANSFORMS for k in (0, 1, 3, 12)] + [line for _, line, _ in RESULTS]
             + ["return min(xs)", "return max(xs)", "return sum(xs, default=0)", "return len(xs, default=3)",
                "xs = [v % 0 for v in xs]", "xs = [v for v in xs if v % 3 != 1]", "xs = [v for v in xs if v >= 4]"])
    bodies, targets = [], []
    for ex in task.examples("eval")[:60]:
        reference = ex.reference.split("\n")
        for body in (reference, reference[::-1], reference[1:], reference[:-1], reference + [rng.choice(lines)],
                     [rng.choice(lines) for _ in range(rng.randint(1, 4))], ["", *reference, ""]):
            bodies.append("\n".join(body))
            targets.append(ex.target)
    assert all(list_program(b) is not None for b in bodies)
    expected = sandbox.score_many([(program_of(b), list(t)) for b, t in zip(bodies, targets)])
    assert [list_score(b, t) for b, t in zip(bodies, targets)] == expected
    assert len(set(expected)) > 3  # the programs are not all right, nor all wrong


def test_anything_outside_the_list_language_goes_to_the_sandbox():
    for body in ("return 0", "import os", "xs = [w + 1 for w in xs]\nreturn xs", "xs = [v + 1 for v in ys]",
                 "xs = [v + True for v in xs]", "xs = [f(v) for v in xs]", "return sorted(xs)", "return sum(xs, 1)",
                 "xs = [v for v in xs if 2 < v < 5]", "return xs[0]", "print(xs)\nreturn xs", "return"):
        assert list_program(body) is None, body
