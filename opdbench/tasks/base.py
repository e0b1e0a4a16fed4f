"""A task is data plus a scorer; the trainer and the evaluator only see this interface."""

from __future__ import annotations

import json
import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Example:
    """One problem: what the model is asked, a reference response, and what the scorer checks."""

    prompt: str | tuple[dict, ...]  # one user turn, or a conversation ({"role", "content"} dicts) ending in a user turn
    reference: str  # a correct response (SFT target for the zoo; privileged context for self-distillation)
    target: Any  # whatever `Task.score` compares against (an int for math)
    meta: dict = field(default_factory=dict, compare=False)


SPLITS = ("sft", "train", "eval")


class Task(ABC):
    """Base class. Subclasses generate (or load) examples per split and score responses.

    Splits: `sft` trains the zoo, `train` is the prompt pool OPD samples from, `eval` is held out.
    `score` must return a float in [0, 1] and never raise, whatever the response holds.
    """

    name: str = "task"
    max_new_tokens: int = 64
    train_score_max: int | None = None  # score at most this many of a step's responses for the train_score metric

    @abstractmethod
    def examples(self, split: str) -> list[Example]:
        """All examples of a split, in a fixed order."""

    @abstractmethod
    def score(self, example: Example, response: str) -> float:
        """Score in [0, 1]; malformed responses score 0 and never raise."""

    def score_many(self, examples: list[Example], responses: list[str]) -> list[float]:
        """Scores of many responses at once: what the evaluator and the trainer call. Tasks whose
        scorer has a start-up cost per call (a sandboxed subprocess) override it to batch."""
        return [self.score(ex, r) for ex, r in zip(examples, responses)]


def disjoint_splits(make: Callable[[random.Random], Example], seed: int, sizes: dict[str, int]) -> dict[str, list[Example]]:
    """Examples drawn by `make` from one seeded stream: the held-out split first, then the others,
    skipping any prompt already drawn, so no prompt is in two splits."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out = {}
    for split in ("eval", "train", "sft"):
        examples: list[Example] = []
        while len(examples) < sizes[split]:
            ex = make(rng)
            key = ex.prompt if isinstance(ex.prompt, str) else json.dumps(ex.prompt, sort_keys=True)
            if key not in seen:
                seen.add(key)
                examples.append(ex)
        out[split] = examples
    return out
