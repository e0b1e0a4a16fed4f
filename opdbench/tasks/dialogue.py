"""Tiny-tier dialogue: an ordering assistant whose last reply depends on every earlier turn.

    user:       i want pizza x2 and soda x1.
    assistant:  ok: pizza x2, soda x1.
    user:       add cake x3.
    assistant:  ok: pizza x2, soda x1, cake x3.
    user:       make it pizza x4.
    assistant:  ok.
    user:       what is my order?
    response:   pizza x4, soda x1, cake x3. total 8.

The conversation goes through the tokenizer's chat template with its role tokens, so the model
sees real multi-turn prompts. The scorer parses the reply into slots (one quantity per item, and
the total) and gives partial credit: the share of the order's slots the reply gets right, where
naming an item that is not in the order counts as one more slot missed. The total counts only
when every item is right (it confirms the whole order): otherwise a reply that tracked the
quantities but named random items scored 0.2-0.33 (NOTES.md, "The multi-task zoo, build 4").

The assistant confirms the order after every turn but the last change, as an ordering assistant
would: the reply must apply that change to the last confirmation and add up the total. Items are
written "pizza x2", never "2 pizzas", so an item is one token wherever it appears. (Measured with
the zoo's teachers: with plurals and bare "ok." confirmations the largest teacher got quantities
and totals right but bound the wrong items, mean@8 0.29; with "pizza x2" alone, 0.41.)
"""

from __future__ import annotations

import random
import re

from .base import SPLITS, Example, Task, disjoint_splits, memoized_splits

ITEMS = ("pizza", "soda", "salad", "burger", "taco", "cake", "soup", "pie")
_ITEM = re.compile(r"([a-z]+)\s*x\s*(\d+)")
_TOTAL = re.compile(r"total\s*:?\s*(\d+)")


def _named(n: int, item: str) -> str:
    return f"{item} x{n}"


def _listing(order: dict[str, int]) -> str:
    return ", ".join(_named(n, item) for item, n in order.items())


def make_dialogue(rng: random.Random, min_changes: int, max_changes: int) -> Example:
    order: dict[str, int] = {}  # insertion order = the order items were first mentioned
    first = rng.sample(ITEMS, rng.randint(1, 2))
    for item in first:
        order[item] = rng.randint(1, 5)
    turns = [f"i want {' and '.join(_named(order[i], i) for i in first)}."]
    states = [dict(order)]  # the order after each user turn
    for _ in range(rng.randint(min_changes, max_changes)):
        absent = [i for i in ITEMS if i not in order]
        kind = rng.choice(["add", "change"] + (["remove"] if len(order) > 1 else []))
        if kind == "add" and absent:
            item = rng.choice(absent)
            order[item] = rng.randint(1, 5)
            turns.append(f"add {_named(order[item], item)}.")
        elif kind == "remove":
            item = rng.choice(list(order))
            del order[item]
            turns.append(f"remove the {item}.")
        else:
            item = rng.choice(list(order))
            order[item] = rng.choice([n for n in range(1, 6) if n != order[item]])
            turns.append(f"make it {_named(order[item], item)}.")
        states.append(dict(order))
    turns.append("what is my order?")
    states.append(dict(order))
    messages = []
    for i, text in enumerate(turns):
        if i:  # the assistant confirms each turn's order, except the change the reply must apply
            confirmed = i < len(turns) - 1
            messages.append({"role": "assistant", "content": f"ok: {_listing(states[i - 1])}." if confirmed else "ok."})
        messages.append({"role": "user", "content": text})
    reply = f"{_listing(order)}. total {sum(order.values())}."
    return Example(prompt=tuple(messages), reference=reply, target={"order": dict(order), "total": sum(order.values())})


def parse_reply(reply: str) -> tuple[dict[str, int], int | None]:
    """Item quantities and the total a reply states (the last mention of an item wins)."""
    stated: dict[str, int] = {}
    body, _, _ = reply.partition("total")
    for item, count in _ITEM.findall(body):
        stated[item] = int(count)
    total = _TOTAL.findall(reply)
    return stated, int(total[-1]) if total else None


class DialogueTask(Task):
    """Multi-turn ordering dialogues; splits are disjoint by conversation and fixed by `seed`."""

    name = "dialogue"

    def __init__(self, seed: int = 2468, sizes: dict | None = None, min_changes: int = 1,
                 max_changes: int = 3, max_new_tokens: int = 40):
        self.seed = seed
        self.sizes = dict(sizes or {"sft": 20000, "train": 4000, "eval": 500})
        self.min_changes, self.max_changes = min_changes, max_changes
        self.max_new_tokens = max_new_tokens

    def examples(self, split: str) -> list[Example]:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {SPLITS}")
        return _generate(self.seed, tuple(sorted(self.sizes.items())), self.min_changes, self.max_changes)[split]

    def score(self, example: Example, response: str) -> float:
        if not isinstance(response, str):
            return 0.0
        try:
            stated, total = parse_reply(response.lower())
        except (ValueError, OverflowError):  # absurd digit strings
            return 0.0
        order = example.target["order"]
        right = sum(stated.get(item) == n for item, n in order.items())
        extra = sum(item not in order for item in stated)
        # The total confirms the whole order, so it counts only when every item is right: credit
        # for a right total over wrong items would reward a reply that ignored what was ordered.
        confirmed = right == len(order) and not extra and total == example.target["total"]
        return (right + confirmed) / (len(order) + 1 + extra)


@memoized_splits
def _generate(seed, sizes, min_changes, max_changes) -> dict[str, list[Example]]:
    return disjoint_splits(lambda rng: make_dialogue(rng, min_changes, max_changes), seed, dict(sizes))
