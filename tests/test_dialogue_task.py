import re

import pytest

from opdbench.chat import encode_prompt
from opdbench.tasks.dialogue import DialogueTask, parse_reply

SMALL = dict(sizes={"sft": 200, "train": 100, "eval": 200})


def replay(messages) -> dict[str, int]:
    """An independent reading of the conversation: the order after every user turn."""
    order: dict[str, int] = {}
    for m in messages:
        if m["role"] != "user":
            continue
        text = m["content"]
        if m2 := re.match(r"remove the (\w+)\.", text):
            del order[m2[1]]
        else:
            for item, n in re.findall(r"(\w+) x(\d+)", text):
                order[item] = int(n)
    return order


def test_splits_are_deterministic_disjoint_and_large_enough():
    a = DialogueTask(**SMALL)
    assert a.examples("eval") == DialogueTask(**SMALL).examples("eval")
    keys = {s: {str(e.prompt) for e in a.examples(s)} for s in ("sft", "train", "eval")}
    assert len(keys["eval"]) == 200 and not keys["eval"] & keys["train"] and not keys["eval"] & keys["sft"]


def test_conversations_are_multi_turn_and_the_reply_follows_the_state():
    task = DialogueTask(**SMALL)
    for ex in task.examples("eval"):
        roles = [m["role"] for m in ex.prompt]
        assert roles[0] == roles[-1] == "user" and roles.count("user") >= 3  # at least one change
        assert replay(ex.prompt) == ex.target["order"]
        assert ex.target["total"] == sum(ex.target["order"].values())
        assert task.score(ex, ex.reference) == 1.0


def test_prompts_use_the_chat_template_role_tokens(tokenizer):
    ex = DialogueTask(**SMALL).examples("eval")[0]
    ids = encode_prompt(tokenizer, ex.prompt)
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens.count("<|user|>") == len([m for m in ex.prompt if m["role"] == "user"])
    assert tokens.count("<|assistant|>") == len(ex.prompt) // 2 + 1  # earlier replies + the header


def test_partial_credit_per_slot():
    task = DialogueTask(**SMALL)
    ex = next(e for e in task.examples("eval") if len(e.target["order"]) == 2)
    (a, na), (b, nb) = ex.target["order"].items()
    total = na + nb
    assert task.score(ex, f"{a} x{na}, {b} x{nb}. total {total}.") == 1.0
    assert task.score(ex, f"{b} x{nb}, {a} x{na}. total {total}.") == 1.0  # order of items is free
    assert task.score(ex, f"{a} x{na}, {b} x{nb}. total {total + 1}.") == pytest.approx(2 / 3)
    assert task.score(ex, f"{a} x{na}, {b} x{nb + 1}. total {total + 1}.") == pytest.approx(1 / 3)
    assert task.score(ex, f"{a} x{na}. total {total + 1}.") == pytest.approx(1 / 3)
    other = next(i for i in ("pizza", "soda", "salad", "pie") if i not in ex.target["order"])
    assert task.score(ex, f"{a} x{na}, {b} x{nb}, {other} x1. total {total}.") == pytest.approx(2 / 4)


def test_a_right_total_earns_nothing_over_wrong_items():
    """The total confirms the whole order: a reply that tracked the quantities but named other
    items gets no credit for it (such replies scored 0.2-0.33 when the total always counted)."""
    task = DialogueTask(**SMALL)
    ex = next(e for e in task.examples("eval") if len(e.target["order"]) == 2)
    (a, na), (b, nb) = ex.target["order"].items()
    c, d = [i for i in ("pizza", "soda", "salad", "pie", "taco") if i not in ex.target["order"]][:2]
    assert task.score(ex, f"{c} x{na}, {d} x{nb}. total {na + nb}.") == 0.0
    assert task.score(ex, f"{a} x{na}, {d} x{nb}. total {na + nb}.") == pytest.approx(1 / 4)


def test_scorer_never_raises():
    task = DialogueTask(**SMALL)
    ex = task.examples("eval")[0]
    for reply in ["", "total", "pizza x" + "9" * 5000 + ". total " + "9" * 5000, None, 3, "ok.", "é" * 100,
                  "total total 3", "x" * 1000]:
        assert 0.0 <= task.score(ex, reply) <= 1.0
    assert parse_reply("pizza x2, soda x1. total 3.") == ({"pizza": 2, "soda": 1}, 3)
