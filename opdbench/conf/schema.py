"""Typed configuration: Hydra validates every override and every YAML against these dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


@dataclass
class MethodConfig:
    """One baseline = one choice per knob (baselines/*.yaml). Knob values name registered functions."""

    name: str = MISSING
    source: str = ""  # paper / arXiv id, shown by `opdbench methods`
    shaping: str = "k1"  # per-token advantage from log r (opdbench.feedback.shaping.SHAPINGS)
    shaping_params: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskConfig:
    name: str = MISSING
    params: dict[str, Any] = field(default_factory=dict)  # passed to the task's constructor


@dataclass
class ModelsConfig:
    """`zoo:NAME` is a shipped tiny checkpoint; anything else is a local path or a hub name."""

    student: str = "zoo:student"
    teachers: list[str] = field(default_factory=lambda: ["zoo:teacher"])


@dataclass
class RolloutConfig:
    backend: str = "hf"
    temperature: float = 1.0
    top_p: float = 1.0
    samples_per_prompt: int = 4
    dtype: str = "float32"  # bfloat16 gives a real rollout/learner mismatch on CPU


@dataclass
class TrainConfig:
    steps: int = 100
    batch_prompts: int = 64  # × rollout.samples_per_prompt sequences per step (k1 needs ~256: variance)
    micro_batch: int = 64  # sequences per forward/backward; the loss does not depend on it
    lr: float = 1e-3
    warmup_steps: int = 10  # linear lr warm-up: Adam's first steps are sign-like and full-size
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    teacher_top_k: int = 8


@dataclass
class EvalConfig:
    every: int = 25
    num_prompts: int = 200
    n: int = 8
    k: int = 8
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int = 0  # fixed across steps and methods: common random numbers
    batch_size: int = 800
    teacher_reference: bool = True  # also score the (first) teacher on the same prompts


@dataclass
class Config:
    method: MethodConfig = field(default_factory=MethodConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    budget: str = "default"
    seed: int = 0
    suite: str = "default"
    results_dir: str = "results/runs"
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    progress: bool = True
