"""The arithmetic of benchmarks/roofline.py and benchmarks/budget_fidelity.py, whose numbers the
closing notes and README quote (the scripts themselves take minutes: run by hand)."""

import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import budget_fidelity  # noqa: E402
import roofline  # noqa: E402


def matmul_work():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(5, 7, generator=gen, requires_grad=True)
    w, bias = torch.randn(3, 7, generator=gen), torch.randn(3, generator=gen)
    q = torch.randn(4, 2, 6, generator=gen, requires_grad=True)
    k = torch.randn(4, 9, 6, generator=gen)
    loss = (torch.nn.functional.linear(a, w, bias).sum() + (a @ w.T).sum()
            + (q @ k.transpose(1, 2)).sum() + torch.baddbmm(torch.zeros(4, 2, 9), q, k.transpose(1, 2), alpha=0.5).sum())
    loss.backward()


def test_roofline_counts_what_torch_counts_forward_and_backward():
    log = roofline.MatmulLog()
    log.phase = "x"
    with log:
        matmul_work()
    with FlopCounterMode(display=False) as counter:
        matmul_work()
    ops = {call[0] for call in log.calls["x"]}
    assert ops == roofline.MATMULS  # addmm, mm, bmm, baddbmm all seen
    assert sum(roofline.flops(c) * n for c, n in log.calls["x"].items()) == counter.get_total_flops()


def test_roofline_replays_a_call_with_its_layout():
    log = roofline.MatmulLog()
    log.phase = "x"
    x = torch.randn(6, 4)
    with log:
        x.T @ x  # a transposed (non-contiguous) factor
    (call,) = log.calls["x"]
    replayed = [roofline.materialize(a, torch.Generator().manual_seed(0)) for a in call[1]]
    assert [(t.shape, t.stride()) for t in replayed] == [(x.T.shape, x.T.stride()), (x.shape, x.stride())]
    assert roofline.best_time(call, torch.Generator().manual_seed(0)) > 0


def curves(values_by_step: dict[int, list[list[float]]]) -> pd.DataFrame:
    """rows r0.. x (step, seed) from {step: [[row0 seed0, row0 seed1], ...]}."""
    columns = {(step, seed): [row[seed] for row in rows]
               for step, rows in values_by_step.items() for seed in range(len(rows[0]))}
    return pd.DataFrame(columns, index=[f"r{i}" for i in range(len(next(iter(values_by_step.values()))))])


def test_fidelity_of_the_final_step_is_its_own_seed_agreement():
    same = [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.9]]
    out = budget_fidelity.fidelity(curves({0: [[0, 0]] * 4, 10: same, 20: same}))
    assert set(out) == {10, 20}
    assert out[20]["spearman_means"] == pytest.approx(1.0) and out[20]["spearman_seed"] == pytest.approx(1.0)
    assert out[10] == out[20] and out[10]["top10_overlap"] == 4


def test_fidelity_sees_a_reversed_ranking():
    final = [[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]]
    early = [[0.3, 0.3], [0.2, 0.2], [0.1, 0.1]]
    out = budget_fidelity.fidelity(curves({0: [[0, 0]] * 3, 5: early, 9: final}))
    assert out[5]["spearman_means"] == pytest.approx(-1.0) and out[5]["spearman_seed"] == pytest.approx(-1.0)
