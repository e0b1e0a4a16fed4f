"""Tiny-tier math: multi-step arithmetic word problems with a scratchpad and a final answer line.

    prompt:    "ann has 12 pens. buys 7. loses 5. how many pens now?"
    response:  "12+7=19. 19-5=14. answer: 14"

Every step of the scratchpad depends on the previous one, so one wrong digit early ruins the
answer: temporal credit matters. Numbers are written digit by digit by the tokenizer.
"""

from __future__ import annotations

import random
import re

from .base import SPLITS, Example, Task, disjoint_splits, memoized_splits

NAMES = ("ann", "bob", "cat", "dan", "eve", "fay", "gus", "hal", "ivy", "joe", "kim", "lou")
ITEMS = ("apples", "pens", "coins", "books", "cards", "eggs", "stamps", "shells")
GAIN = ("buys", "finds", "gets", "wins")
LOSS = ("loses", "sells", "gives away", "drops")

_ANSWER = re.compile(r"answer\s*:\s*(-?\d+)")


def make_problem(rng: random.Random, min_steps: int, max_steps: int, max_value: int) -> Example:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    value = rng.randint(10, max_value // 2)
    sentences = [f"{name} has {value} {item}."]
    scratch = []
    for _ in range(rng.randint(min_steps, max_steps)):
        can_gain, can_lose = value < max_value - 1, value > 1
        gain = can_gain and (not can_lose or rng.random() < 0.5)
        amount = rng.randint(1, min(29, max_value - 1 - value) if gain else min(29, value - 1))
        verb = rng.choice(GAIN if gain else LOSS)
        new = value + amount if gain else value - amount
        sentences.append(f"{verb} {amount}.")
        scratch.append(f"{value}{'+' if gain else '-'}{amount}={new}.")
        value = new
    sentences.append(f"how many {item} now?")
    return Example(prompt=" ".join(sentences), reference=" ".join(scratch) + f" answer: {value}", target=value)


class MathTask(Task):
    """Arithmetic word problems; splits are disjoint by prompt text and fixed by `seed`."""

    name = "math"

    def __init__(self, seed: int = 1234, sizes: dict | None = None, min_steps: int = 2,
                 max_steps: int = 3, max_value: int = 99, max_new_tokens: int = 48):
        self.seed = seed
        self.sizes = dict(sizes or {"sft": 20000, "train": 4000, "eval": 500})
        self.min_steps, self.max_steps, self.max_value = min_steps, max_steps, max_value
        self.max_new_tokens = max_new_tokens

    def examples(self, split: str) -> list[Example]:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {SPLITS}")
        return _generate(self.seed, tuple(sorted(self.sizes.items())), self.min_steps,
                         self.max_steps, self.max_value)[split]

    def score(self, example: Example, response: str) -> float:
        if not isinstance(response, str):
            return 0.0
        found = _ANSWER.findall(response)
        return float(bool(found) and int(found[-1]) == int(example.target))


@memoized_splits
def _generate(seed, sizes, min_steps, max_steps, max_value) -> dict[str, list[Example]]:
    return disjoint_splits(lambda rng: make_problem(rng, min_steps, max_steps, max_value), seed, dict(sizes))
