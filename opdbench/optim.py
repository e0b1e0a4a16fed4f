"""AdamW, written out.

torch.optim's optimizers import torch._dynamo when they are built (their methods are wrapped by
`torch._disable_dynamo`): 1.2-1.8 s, a third of a tiny-tier cell's start-up, for nothing a cell uses.
This is the same arithmetic as `torch.optim.AdamW`'s single-tensor path (its CPU default), op for op,
so a run is bit-identical to one with torch's class (tests/test_optim.py checks it to the bit).
On a GPU torch would take its multi-tensor ("foreach") path instead: this loop launches a few
kernels per parameter tensor (~300 tensors in a 0.6B model), not yet timed there.
"""

from __future__ import annotations

import torch


class AdamW:
    """Decoupled weight decay (Loshchilov & Hutter) and bias-corrected moments; `lr` may change
    between steps. As in torch, a parameter's moments are made, and its steps counted, only once it
    has a gradient (LoRA's frozen base weights never do, so they cost no optimizer memory)."""

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        self.params = list(params)
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.state: dict[int, dict] = {}  # parameter index -> {"step", "exp_avg", "exp_avg_sq"}

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            if i not in self.state:
                self.state[i] = {"step": 0, "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
            state = self.state[i]
            state["step"] += 1
            step = float(state["step"])  # torch counts in a float32 tensor and reads it back as a float
            if self.weight_decay != 0:
                p.mul_(1 - self.lr * self.weight_decay)
            state["exp_avg"].lerp_(p.grad, 1 - beta1)
            state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            step_size = self.lr / (1 - beta1 ** step)
            denom = (state["exp_avg_sq"].sqrt() / (1 - beta2 ** step) ** 0.5).add_(self.eps)
            p.addcdiv_(state["exp_avg"], denom, value=-step_size)
