"""Typed configuration: Hydra validates every override and every YAML against these dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import II, MISSING


@dataclass
class MethodConfig:
    """One baseline = one choice per knob (baselines/*.yaml). Knob values name registered functions
    (`opdbench methods` lists them); `*_params` are passed to that function as keyword arguments."""

    name: str = MISSING
    source: str = ""  # paper / arXiv id, shown by `opdbench methods`
    kind: str = "train"  # train | evaluate_student | evaluate_teacher (reference rows: no training)
    # Which sequences and which teachers.
    on_policy_fraction: float = 1.0  # GKD's lambda: share of steps on student rollouts; the rest on teacher samples
    rollout: dict[str, Any] = field(default_factory=dict)  # rollout settings the method requires (top_p, dtype): they win
    teachers: list[str] = field(default_factory=list)  # the method's own teachers (small → large); [] = models.teachers
    ensemble: str = "single"  # opdbench.teachers.ENSEMBLES
    teacher_context: bool = False  # teachers see the reference solution as privileged context (OPSD)
    reference: str = "student_init"  # pi_ref for ExOPD / KL-to-reference: student_init | teacher_base
    # The feedback pipeline (opdbench/feedback/), in order.
    scaling: str = "none"
    scaling_params: dict[str, Any] = field(default_factory=dict)
    shaping: str = "k1"  # per-token advantage from log r (SHAPINGS)
    shaping_params: dict[str, Any] = field(default_factory=dict)
    credit: str = "none"
    credit_params: dict[str, Any] = field(default_factory=dict)
    is_correction: str = "none"
    is_params: dict[str, Any] = field(default_factory=dict)
    token_filter: str = "none"
    filter_band: list[float] = field(default_factory=lambda: [0.0, 100.0])  # kept percentiles [min, max)
    mask_tokens: list[str] = field(default_factory=list)  # mask each one's first occurrence per response
    whiten: str = "none"
    loss: str = "reinforce"
    loss_params: dict[str, Any] = field(default_factory=dict)
    routing: str = "none"
    routing_params: dict[str, Any] = field(default_factory=dict)
    entropy_bonus: float = 0.0
    kl_to_reference: float = 0.0


@dataclass
class TaskConfig:
    name: str = MISSING
    params: dict[str, Any] = field(default_factory=dict)  # passed to the task's constructor
    # The default budget on this task: steps, and prompts x samples per step. Tasks learn at
    # different speeds and from different batches: each gets the cheapest budget in which k1 closes
    # a large share of its student-teacher gap and still separates from k3_naive (DESIGN.md,
    # "Calibrating"; NOTES.md, "A budget per task").
    steps: int = 75
    batch_prompts: int = 64
    samples_per_prompt: int = 4


@dataclass
class ModelsConfig:
    """`zoo:NAME` is a shipped tiny checkpoint; anything else is a local path or a hub name."""

    student: str = "zoo:student"
    teachers: list[str] = field(default_factory=lambda: ["zoo:teacher"])
    teacher_base: str = "zoo:teacher-base"  # the teacher before its last stage: pi_ref for reward correction
    # Teachers must render chats (template, role and special tokens) exactly as the student does;
    # true turns that check's error into a warning, e.g. for a teacher whose template only adds a system prompt.
    allow_template_mismatch: bool = False
    teacher_device: str = ""  # "" = `device`; e.g. cuda:1 to keep the teachers off the student's GPU
    teacher_dtype: str = "float32"  # the teachers' weights (inference only): bfloat16 halves their memory


@dataclass
class LoraConfig:
    """Low-rank adapters through peft (`pip install -e ".[lora]"`): only the adapters train."""

    r: int = 0  # 0: full fine-tuning
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=list)  # [] = every linear layer but the LM head
    # Sample from a plain copy of the student with the adapters merged into its weights, refreshed
    # before each rollout: decoding runs no adapter ops (tiny tier, one CPU thread: rollout 0.18 s
    # against 0.31 s; on an H200 the adapted model decoded at half full fine-tuning's tokens/s), for
    # one more copy of the student in rollout.dtype. false: sample the adapted model itself.
    merged_rollout: bool = True


@dataclass
class StudentConfig:
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class RolloutConfig:
    backend: str = "hf"
    temperature: float = 1.0
    top_p: float = 1.0
    samples_per_prompt: int = II("task.samples_per_prompt")
    dtype: str = "float32"  # bfloat16 gives a real rollout/learner mismatch on CPU
    gpu_memory_utilization: float = 0.4  # backend=vllm: the share of the GPU its engine takes (colocated with training)


@dataclass
class TrainConfig:
    steps: int = II("task.steps")  # a budget may fix it for every task (budget=smoke)
    batch_prompts: int = II("task.batch_prompts")  # × rollout.samples_per_prompt sequences per step
    micro_batch: int = 64  # sequences per forward/backward; the loss does not depend on it
    epochs: int = 1  # optimizer steps on each step's sequences; after the first they are off-policy (see tis/mis)
    lr: float = 1e-3
    warmup_steps: int = 10  # linear lr warm-up: Adam's first steps are sign-like and full-size
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    teacher_top_k: int = 8
    # bfloat16: learner and teacher forward passes under torch.autocast (the weights, their gradients
    # and AdamW's state stay float32). For GPUs: a CPU without bf16 arithmetic runs it slower.
    autocast: str = "none"
    # Recompute activations in the backward pass (transformers' gradient checkpointing): memory for time.
    gradient_checkpointing: bool = False


@dataclass
class EvalConfig:
    every: int = 25
    num_prompts: int = 200
    n: int = 8
    k: int = 8
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int = 0  # fixed across steps and methods: common random numbers
    batch_size: int = 1600  # 200 prompts × 8 in one batch: decoding pays per step, not per row
    teacher_reference: bool = True  # also score the (largest) teacher on the same prompts
    # Evaluations of unchanged checkpoints (the teacher, the student at step 0) are memoized here,
    # keyed by checksums, task, these settings, code and threads; "" evaluates every time.
    cache_dir: str = "${oc.env:OPDBENCH_EVAL_CACHE,'~/.cache/opdbench/evals'}"


@dataclass
class Config:
    method: MethodConfig = field(default_factory=MethodConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    budget: str = "default"
    seed: int = 0
    suite: str = "default"
    variant: str = ""  # a sweep's overrides of this cell ("train.lr=5e-4"): results go to <method>@<variant>/
    results_dir: str = "results/runs"
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    device: str = "cpu"  # cpu | cuda | cuda:N | auto (cuda when there is one)
    progress: bool = True
