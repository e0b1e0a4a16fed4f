import itertools
import random

import pytest

from opdbench.evaluate import best_at_k, evaluate, mean_at_k


def brute_best(scores, k):
    subsets = list(itertools.combinations(scores, k))
    return sum(max(s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_best_at_k_matches_enumeration(n):
    rng = random.Random(n)
    for _ in range(20):
        binary = [float(rng.random() < 0.3) for _ in range(n)]
        continuous = [rng.random() for _ in range(n)]
        for k in range(1, n + 1):
            assert best_at_k(binary, k) == pytest.approx(brute_best(binary, k), abs=1e-12)
            assert best_at_k(continuous, k) == pytest.approx(brute_best(continuous, k), abs=1e-12)


def test_best_at_k_binary_is_unbiased_pass_at_k():
    from math import comb
    n, c, k = 8, 3, 4
    scores = [1.0] * c + [0.0] * (n - c)
    assert best_at_k(scores, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))


def test_special_cases_and_errors():
    s = [0.0, 1.0, 0.5, 0.25]
    assert best_at_k(s, 4) == 1.0
    assert best_at_k(s, 1) == pytest.approx(mean_at_k(s))
    with pytest.raises(ValueError):
        best_at_k(s, 5)
    with pytest.raises(ValueError):
        best_at_k(s, 0)


def test_evaluate_is_deterministic_and_bounded(tiny_model, tokenizer, math_task):
    a, samples = evaluate(tiny_model, tokenizer, math_task, num_prompts=3, n=4, k=2, seed=5)
    b, again = evaluate(tiny_model, tokenizer, math_task, num_prompts=3, n=4, k=2, seed=5)
    _, other = evaluate(tiny_model, tokenizer, math_task, num_prompts=3, n=4, k=2, seed=6)
    assert a == b and samples == again  # same seed, same draws
    assert [s["response"] for s in other] != [s["response"] for s in samples]
    assert set(a) == {"mean@2", "best@2"}
    assert 0.0 <= a["mean@2"] <= a["best@2"] <= 1.0
    assert len(samples) == 12


def test_memoized_evaluations_come_back_only_for_the_same_key(tmp_path):
    from opdbench.evaluate import memoized

    calls = []

    def compute(value):
        return lambda: calls.append(value) or {"mean@8": value}

    key = {"model": {"model.safetensors": "abc"}, "eval": {"seed": 0}}
    assert memoized(str(tmp_path), key, compute(0.5)) == ({"mean@8": 0.5}, False)
    assert memoized(str(tmp_path), key, compute(0.9)) == ({"mean@8": 0.5}, True)  # not recomputed
    assert memoized(str(tmp_path), {**key, "eval": {"seed": 1}}, compute(0.7)) == ({"mean@8": 0.7}, False)
    assert memoized(None, key, compute(0.1)) == ({"mean@8": 0.1}, False)  # no cache: always computed
    assert memoized(str(tmp_path), None, compute(0.2)) == ({"mean@8": 0.2}, False)  # nothing to key on
    assert calls == [0.5, 0.7, 0.1, 0.2]
