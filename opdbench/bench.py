"""`opdbench bench`: seconds per training step of each method at a budget, relative to k1.

Speed is measured here, not in timed tests. Every method runs the same prompts (seeded) for a few
steps after one warm-up step; a cell's training time is about `steps` times this, plus the evals,
which cost the same for every method.
"""

from __future__ import annotations

import random
import time

import torch

from . import trainer
from .conf import load_config


def seconds_per_step(method: str, overrides: list[str], steps: int) -> dict:
    cfg = load_config([f"method={method}", *overrides])
    run = trainer.prepare(cfg)
    optimizer = trainer.make_optimizer(run)
    generator, prompt_rng = torch.Generator().manual_seed(cfg.seed), random.Random(cfg.seed)
    pool = run.task.examples("train")
    phases = {"rollout_s": 0.0, "teacher_s": 0.0, "update_s": 0.0}
    tokens = 0  # response tokens sampled (and trained on) per timed step
    start = None
    for step in range(steps + 1):  # step 0 warms up (lazy initialization, allocator)
        if step == 1:
            start = time.perf_counter()
        chosen = prompt_rng.sample(range(len(pool)), cfg.train.batch_prompts)
        row, timing = trainer.train_step(run, optimizer, [pool[i] for i in chosen], chosen, generator,
                                         progress=step / max(steps, 1))
        if step:
            tokens += row["tokens"] / steps
            for k in phases:
                phases[k] += timing[k] / steps
    return {"method": method, "s_per_step": (time.perf_counter() - start) / steps, **phases,
            "tokens_per_step": tokens}
