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


def stepper(method: str, overrides: list[str]):
    """(config, run, step) for a method at these overrides: `step(progress)` trains one step on the
    next batch of prompts, drawn from the train split with the run's seeded generators as
    `opdbench train` draws them, and returns `trainer.train_step`'s (row, seconds per phase)."""
    cfg = load_config([f"method={method}", *overrides])
    run = trainer.prepare(cfg)
    optimizer = trainer.make_optimizer(run)
    generator, prompt_rng = torch.Generator().manual_seed(cfg.seed), random.Random(cfg.seed)
    pool = run.task.examples("train")

    def step(progress: float) -> tuple[dict, dict]:
        chosen = prompt_rng.sample(range(len(pool)), cfg.train.batch_prompts)
        return trainer.train_step(run, optimizer, [pool[i] for i in chosen], chosen, generator, progress=progress)

    return cfg, run, step


def seconds_per_step(method: str, overrides: list[str], steps: int) -> dict:
    _, _, step = stepper(method, overrides)
    phases = {"rollout_s": 0.0, "teacher_s": 0.0, "update_s": 0.0}
    tokens = 0  # response tokens sampled (and trained on) per timed step
    start = None
    for n in range(steps + 1):  # step 0 warms up (lazy initialization, allocator)
        if n == 1:
            start = time.perf_counter()
        row, timing = step(progress=n / max(steps, 1))
        if n:
            tokens += row["tokens"] / steps
            for k in phases:
                phases[k] += timing[k] / steps
    return {"method": method, "s_per_step": (time.perf_counter() - start) / steps, **phases,
            "tokens_per_step": tokens}
