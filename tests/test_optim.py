"""opdbench's AdamW is torch.optim.AdamW's arithmetic, to the bit (the committed cells ran torch's)."""

import pytest
import torch

from opdbench.optim import AdamW


def _params(seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(50, 30, generator=g).requires_grad_(), torch.randn(700, generator=g).requires_grad_(),
            torch.randn(20, 20, generator=g).requires_grad_()]


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_steps_match_torch_adamw_bit_for_bit(weight_decay):
    ours, theirs = _params(0), _params(0)
    mine = AdamW(ours, lr=1e-3, weight_decay=weight_decay)
    torch_opt = torch.optim.AdamW(theirs, lr=1e-3, weight_decay=weight_decay)
    warmup = torch.optim.lr_scheduler.LambdaLR(torch_opt, lambda s: min(1.0, (s + 1) / 4))
    g = torch.Generator().manual_seed(1)
    for step in range(1, 9):
        mine.lr = 1e-3 * min(1.0, step / 4)  # the trainer's warm-up, as LambdaLR computes it
        grads = [torch.randn(p.shape, generator=g) * 10 ** step for p in ours]
        for i, (a, b) in enumerate(zip(ours, theirs)):
            skip = i == 2 and step % 3 == 0  # a parameter without a gradient this step is left alone
            a.grad, b.grad = (None, None) if skip else (grads[i].clone(), grads[i].clone())
        mine.step()
        torch_opt.step()
        warmup.step()
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert torch.equal(a, b)
            for moment in ("exp_avg", "exp_avg_sq"):
                assert torch.equal(mine.state[i][moment], torch_opt.state[b][moment])
    mine.zero_grad()
    assert all(p.grad is None for p in ours)


def test_moments_exist_only_for_parameters_that_trained():
    frozen, trained = torch.zeros(3, requires_grad=True), torch.zeros(3, requires_grad=True)
    opt = AdamW([frozen, trained], lr=0.1)
    trained.grad = torch.ones(3)
    opt.step()
    assert list(opt.state) == [1] and opt.state[1]["step"] == 1
    assert torch.equal(frozen, torch.zeros(3)) and (trained < 0).all()
