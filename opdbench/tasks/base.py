"""A task is data plus a scorer; the trainer and the evaluator only see this interface."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import random
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
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


def memoized_splits(generate: Callable[..., dict[str, list[Example]]]):
    """Decorates a task's `generate(*params) -> splits`: memoized in the process, and on disk in
    `$OPDBENCH_TASK_CACHE` (default `~/.cache/opdbench/tasks`; empty: off) for the next process.
    Generating is a pure function of the parameters and of the code of its module and this one (both
    in the key, with Python's version: `random`'s streams are its own), and it costs each process
    what a cell's start-up should (code: 1.9 s for 8,500 problems). A file that does not load is
    generated again."""
    module_file = Path(sys.modules[generate.__module__].__file__)
    code = hashlib.sha256(module_file.read_bytes() + Path(__file__).read_bytes()).hexdigest()

    @functools.lru_cache(maxsize=8)
    @functools.wraps(generate)
    def splits(*params):
        folder = os.environ.get("OPDBENCH_TASK_CACHE", "~/.cache/opdbench/tasks")
        if not folder:
            return generate(*params)
        key = json.dumps([generate.__module__, generate.__qualname__, params, code, sys.version_info[:2]])
        path = Path(folder).expanduser() / f"{hashlib.sha256(key.encode()).hexdigest()}.pkl"
        try:
            return pickle.loads(path.read_bytes())
        except Exception:  # not there yet, or torn or foreign: generate it
            pass
        out = generate(*params)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(tmp, path)  # atomic: a concurrent cell reads the whole file or none
        return out

    return splits
