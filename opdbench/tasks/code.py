"""Tiny-tier code: write the body of a small Python function from a spec and examples.

    prompt:    "def f(xs): keep items above 3, then add 2 to each item, then return the sum.
                f([1, 5, 4]) == 13"
    response:  "xs = [v for v in xs if v > 3]
                xs = [v + 2 for v in xs]
                return sum(xs)"

The response is run as the body of `def f(xs):` against hidden tests in the sandbox
(opdbench/sandbox.py); the score is the fraction of hidden tests passed, so a program that gets
one step wrong can still earn partial credit. The hidden tests expect pairwise different answers,
so no constant program passes more than one. Each line of the body depends on the lines before
it, as each scratchpad step does in the math task.
"""

from __future__ import annotations

import ast
import operator
import random
import re
import textwrap

from .. import sandbox
from .base import SPLITS, Example, Task, disjoint_splits, memoized_splits

# (spec phrase, body line, what the line does); K is a small constant drawn per problem. The
# functions compute the expected outputs without running code; tests check they match the lines.
TRANSFORMS = (
    ("keep items above {k}", "xs = [v for v in xs if v > {k}]", lambda xs, k: [v for v in xs if v > k]),
    ("keep items below {k}", "xs = [v for v in xs if v < {k}]", lambda xs, k: [v for v in xs if v < k]),
    ("keep even items", "xs = [v for v in xs if v % 2 == 0]", lambda xs, k: [v for v in xs if v % 2 == 0]),
    ("keep odd items", "xs = [v for v in xs if v % 2 == 1]", lambda xs, k: [v for v in xs if v % 2 == 1]),
    ("add {k} to each item", "xs = [v + {k} for v in xs]", lambda xs, k: [v + k for v in xs]),
    ("subtract {k} from each item", "xs = [v - {k} for v in xs]", lambda xs, k: [v - k for v in xs]),
    ("multiply each item by {k}", "xs = [v * {k} for v in xs]", lambda xs, k: [v * k for v in xs]),
)
RESULTS = (
    ("return the sum", "return sum(xs)", sum),
    ("return the count", "return len(xs)", len),
    ("return the largest", "return max(xs, default=0)", lambda xs: max(xs, default=0)),
    ("return the smallest", "return min(xs, default=0)", lambda xs: min(xs, default=0)),
    ("return the list", "return xs", list),
)


_TEST = re.compile(r"assert f\((\[[0-9, ]*\])\) == (.+)$")
_ELEMENT_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Mod: operator.mod}
_COMPARISONS = {ast.Gt: operator.gt, ast.Lt: operator.lt, ast.GtE: operator.ge, ast.LtE: operator.le,
                ast.Eq: operator.eq, ast.NotEq: operator.ne}
_REDUCERS = {"sum": sum, "len": len, "max": max, "min": min}


def list_program(body: str):
    """The function a response computes, when its body is only list steps the task's own language
    has, `xs = [v OP K for v in xs]`, `xs = [v for v in xs if v CMP K]` (or `v % K CMP K`), and
    `return xs` / `return sum|len|max|min(xs[, default=K])`, evaluated with Python's own operators
    and builtins on the values (so `min([])` and `sum(xs, default=0)` raise as they would): the
    same results as running it, with nothing of the response executed. None for anything else,
    which then runs in the sandbox. `tests/test_code_task.py` checks agreement with the sandbox."""
    try:
        statements = ast.parse(body).body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    steps = [_step(statement) for statement in statements]
    if not steps or None in steps:
        return None

    def f(xs):
        for kind, fn in steps:
            if kind == "return":
                return fn(xs)
            xs = fn(xs)
        return None  # no return statement: Python's f returns None

    return f


def _int(node) -> int | None:
    return node.value if isinstance(node, ast.Constant) and type(node.value) is int else None


def _is_name(node, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _value_of_v(node):
    """`v` or `v OP K` as a function of v; None otherwise."""
    if _is_name(node, "v"):
        return lambda v: v
    if isinstance(node, ast.BinOp) and _is_name(node.left, "v") and type(node.op) in _ELEMENT_OPS and _int(node.right) is not None:
        op, k = _ELEMENT_OPS[type(node.op)], _int(node.right)
        return lambda v: op(v, k)
    return None


def _step(statement):
    """("assign", xs -> new xs) or ("return", xs -> value) for a statement of the language; else None."""
    if isinstance(statement, ast.Return) and statement.value is not None:
        value = statement.value
        if _is_name(value, "xs"):
            return "return", lambda xs: xs
        if (isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in _REDUCERS
                and len(value.args) == 1 and _is_name(value.args[0], "xs")
                and all(kw.arg == "default" and _int(kw.value) is not None for kw in value.keywords)
                and len(value.keywords) <= 1):
            reducer, keywords = _REDUCERS[value.func.id], {kw.arg: _int(kw.value) for kw in value.keywords}
            return "return", lambda xs: reducer(xs, **keywords)
        return None
    if not (isinstance(statement, ast.Assign) and len(statement.targets) == 1 and _is_name(statement.targets[0], "xs")
            and isinstance(statement.value, ast.ListComp) and len(statement.value.generators) == 1):
        return None
    loop = statement.value.generators[0]
    element = _value_of_v(statement.value.elt)
    if not (_is_name(loop.target, "v") and _is_name(loop.iter, "xs") and not loop.is_async and len(loop.ifs) <= 1
            and element is not None):
        return None
    if not loop.ifs:
        return "assign", lambda xs: [element(v) for v in xs]
    test = loop.ifs[0]
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and type(test.ops[0]) in _COMPARISONS
            and _int(test.comparators[0]) is not None):
        return None
    left = _value_of_v(test.left)
    if left is None:
        return None
    compare, k = _COMPARISONS[type(test.ops[0])], _int(test.comparators[0])
    return "assign", lambda xs: [element(v) for v in xs if compare(left(v), k)]


def list_score(body: str, tests) -> float | None:
    """Fraction of the tests `list_program(body)` passes (one that raises fails); None when the
    body is not in the language."""
    f = list_program(body)
    parsed = [_TEST.match(t) for t in tests]
    if f is None or not all(parsed):
        return None
    passed = 0
    for m in parsed:
        try:
            passed += f(ast.literal_eval(m.group(1))) == ast.literal_eval(m.group(2))
        except Exception:  # ValueError (min of []), TypeError (sum's default), ZeroDivisionError (v % 0)
            pass
    return passed / len(tests)


def program_of(body: str) -> str:
    """The candidate program: the response, indented, as the body of `f`."""
    return "def f(xs):\n" + textwrap.indent(body, "    ") + "\n"


def _random_list(rng: random.Random) -> list[int]:
    return [rng.randint(0, 9) for _ in range(rng.randint(2, 5))]


def _distinct_inputs(rng: random.Random, f, n: int, tries: int = 50) -> list[list[int]] | None:
    """`n` inputs on which `f` gives pairwise different outputs, or None when the spec is too
    degenerate for that (e.g. "keep items above 4, then keep items below 3"). With distinct outputs
    no constant program passes more than one test: before this filter, `return 0` scored 0.33."""
    inputs, outputs = [], []
    for _ in range(tries):
        xs = _random_list(rng)
        out = f(xs)
        if out not in outputs:
            inputs.append(xs)
            outputs.append(out)
            if len(inputs) == n:
                return inputs
    return None


def make_problem(rng: random.Random, min_steps: int, max_steps: int, num_examples: int, num_tests: int) -> Example:
    while True:  # until a spec whose hidden tests can all expect different answers
        spec, body, steps = [], [], []
        for _ in range(rng.randint(min_steps, max_steps)):
            phrase, line, fn = rng.choice(TRANSFORMS)
            k = rng.randint(1, 5)
            spec.append(phrase.format(k=k))
            body.append(line.format(k=k))
            steps.append(lambda xs, fn=fn, k=k: fn(xs, k))
        phrase, line, fn = rng.choice(RESULTS)
        spec.append(phrase)
        body.append(line)
        steps.append(fn)

        def f(xs):
            for step in steps:
                xs = step(xs)
            return xs

        inputs = _distinct_inputs(rng, f, num_examples + num_tests)
        if inputs is not None:
            break
    shown, hidden = inputs[:num_examples], inputs[num_examples:]
    examples = " ".join(f"f({xs}) == {f(xs)}" for xs in shown)
    prompt = f"def f(xs): {', then '.join(spec)}. {examples}"
    tests = tuple(f"assert f({xs}) == {f(xs)!r}" for xs in hidden)
    return Example(prompt=prompt, reference="\n".join(body), target=tests)


class CodeTask(Task):
    """Small list-processing functions; splits are disjoint by prompt and fixed by `seed`.

    Scoring runs each distinct (response, tests) pair once in the sandbox; a response that does
    not compile scores 0 without a subprocess, one identical to the reference passes by
    construction (the references are checked against their tests in tests/test_code_task.py), and
    one in the task's little list language is evaluated by `list_score` without running it (the
    sandbox costs ~10 ms a candidate, most of a code cell's time; a student's responses are
    almost all in the language).
    """

    name = "code"

    def __init__(self, seed: int = 4321, sizes: dict | None = None, min_steps: int = 1, max_steps: int = 2,
                 num_examples: int = 1, num_tests: int = 5, max_new_tokens: int = 64,
                 timeout_s: float = 2.0, train_score_max: int | None = 32):
        self.seed = seed
        self.sizes = dict(sizes or {"sft": 20000, "train": 4000, "eval": 500})
        self.min_steps, self.max_steps = min_steps, max_steps
        self.num_examples, self.num_tests = num_examples, num_tests
        self.max_new_tokens = max_new_tokens
        self.timeout_s = timeout_s
        self.train_score_max = train_score_max  # each costs a sandboxed run: the metric needs only a sample

    def examples(self, split: str) -> list[Example]:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {SPLITS}")
        return _generate(self.seed, tuple(sorted(self.sizes.items())), self.min_steps, self.max_steps,
                         self.num_examples, self.num_tests)[split]

    def score(self, example: Example, response: str) -> float:
        return self.score_many([example], [response])[0]

    def score_many(self, examples: list[Example], responses: list[str]) -> list[float]:
        scores: dict[tuple, float] = {}
        to_run = []
        # (response, tests) identifies a run; a non-str response becomes None (scores 0), and a
        # target read back from JSON (lm-eval export) is a list.
        keys = [(r if isinstance(r, str) else None, tuple(ex.target)) for ex, r in zip(examples, responses)]
        for ex, key in zip(examples, keys):
            response = key[0]
            if key in scores:
                continue
            if response is None or not _compiles(program_of(response)):
                scores[key] = 0.0
            elif response.strip() == ex.reference:
                scores[key] = 1.0
            elif (score := list_score(response, key[1])) is not None:
                scores[key] = score
            else:
                scores[key] = None
                to_run.append(key)
        ran = sandbox.score_many([(program_of(r), list(tests)) for r, tests in to_run], timeout_s=self.timeout_s)
        scores.update(zip(to_run, ran))
        return [scores[key] for key in keys]


def _compiles(program: str) -> bool:
    try:
        compile(program, "<candidate>", "exec")  # parses only: nothing of the candidate runs here
        return True
    except Exception:  # SyntaxError, ValueError (null bytes), RecursionError, MemoryError
        return False


@memoized_splits
def _generate(seed, sizes, min_steps, max_steps, num_examples, num_tests) -> dict[str, list[Example]]:
    return disjoint_splits(lambda rng: make_problem(rng, min_steps, max_steps, num_examples, num_tests),
                           seed, dict(sizes))
