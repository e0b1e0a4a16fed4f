"""`opdbench zoo build`: make the tiny model zoo from scratch, deterministically, on CPU.

Every model shares one tokenizer and the Llama architecture with 4 layers (DESIGN.md, "Calibrating
the tiny tier": fewer layers cannot learn the math task).

- `teacher-xs`, `teacher-s`, `teacher-m`, `teacher`: teachers of growing width and MLP size, same
  SFT recipe and steps (for ensembles and teacher-size sweeps); the smaller ones plateau lower.
- `teacher-base`: the `teacher` run's weights at SFT step `base_step`, saved during that same run
  (no extra training): the teacher before its final stage, pi_ref for reward correction (ExOPD).
- `student`: teacher-m's architecture with another seed and its own task mixtures, in SFT stages
  (`ModelSpec.then`) each stopped early, as soon as its mean@8 on a slice of the *training*
  prompts (never the eval set) reaches the stage's `student_target`, so OPD has room to show
  something. A share (`context_fraction`) of its SFT examples show the reference solution as
  privileged context, so that the frozen initial student, shown the reference, is a strong
  teacher for self-distillation (OPSD); the manifest records its score with context too.

The build runs on one thread whatever the machine: CPU kernels split reductions by thread count,
and a different split changes the weights' bits.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import shutil
import statistics
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial

import torch
from omegaconf import OmegaConf
from transformers import LlamaConfig, LlamaForCausalLM

from ..chat import messages_of
from ..conf import task_files
from ..evaluate import evaluate
from ..tasks import TASKS
from . import MANIFEST, ZOO_DIR, checksums, load_model, load_tokenizer
from .sft import sft
from .tokenizer import build_tokenizer


@dataclass(frozen=True)
class Stage:
    """A further SFT stage: from the weights where the previous stage stopped, with a fresh AdamW
    (warm-up, cosine decay over `steps`), its own mixture and its own stopping targets. Fields
    mean what they mean in ModelSpec."""
    seed: int
    steps: int
    lr: float
    warmup: int = 100
    sft_examples: dict[str, int] | None = None
    student_target: dict[str, float] | None = None
    calibrate_from: int = 0
    context_fraction: float = 0.0


@dataclass(frozen=True)
class ModelSpec:
    seed: int
    steps: int
    hidden: int = 48
    layers: int = 4
    heads: int = 4
    intermediate: int = 192
    lr: float = 3e-3
    batch_size: int = 64
    student_target: dict[str, float] | None = None  # stop once each task's calibration mean@8 reaches its target
    calibrate_from: int = 0  # first SFT step at which the calibration is measured
    # How many of each task's SFT examples (the first N) this model trains on; default all. Tasks
    # are learned at different speeds, so the student's mixture puts each near its transition at
    # the same step.
    sft_examples: dict[str, int] | None = None
    context_fraction: float = 0.0  # share of SFT examples shown with their reference as context
    base_step: int | None = None  # also ship the weights at this SFT step (first stage), as "<name>-base"
    then: tuple[Stage, ...] = ()  # later SFT stages, in order

    @property
    def stages(self) -> tuple[Stage, ...]:
        first = Stage(seed=self.seed, steps=self.steps, lr=self.lr, sft_examples=self.sft_examples,
                      student_target=self.student_target, calibrate_from=self.calibrate_from,
                      context_fraction=self.context_fraction)  # Stage's own warm-up
        return (first, *self.then)


# Teachers, smallest to largest, all trained on every task's whole SFT split (tasks/*/task.yaml
# sizes: math 20,000, dialogue 16,000, code 4,000). Same steps for all: size decides where the SFT
# plateau lies (measured on math alone, 1,500 steps, 4 layers: width 24 → mean@8 0.13, 32 → 0.42,
# 40 → 0.71-0.79, 48 → 0.91 with MLP 96, 1.0 with MLP 192). From width 32 on, every teacher reaches
# code's ceiling (1.0) and dialogue's (~0.8: a change to an earlier item, or a removal, is applied
# to the wrong item; 6 layers did no better), so there the ladder is monotone only up to sampling
# noise, which the manifest records (`eval_stderr`; tests/test_zoo.py). An MLP narrower than the
# smaller teacher's breaks the ladder: 40/96 scored below 32/128 on every task (NOTES.md).
#
# The student: OPD lifts a student caught early in a task's SFT transition far more than one
# before it, and each task has a sharp one whose timing varies by hundreds of steps between
# mixtures and seeds (code after ~4,000 examples, math ~40,000, dialogue 20,000-30,000). So it
# trains in two stages: a mixture light on dialogue, stopped as math enters its transition, then
# a dialogue-heavy mixture (math and code kept at a small share: dropping a task makes the model
# forget it) stopped as dialogue enters its own (NOTES.md, "The multi-task zoo, build 4").
SPECS = {
    "teacher-xs": ModelSpec(seed=5, steps=2500, hidden=32, intermediate=128),
    "teacher-s": ModelSpec(seed=3, steps=2500, hidden=40, intermediate=128),
    "teacher-m": ModelSpec(seed=1, steps=2500, hidden=48, intermediate=192),
    "teacher": ModelSpec(seed=1, steps=2500, hidden=64, intermediate=256, base_step=1250),
    "student": ModelSpec(seed=2, steps=2500, student_target={"math": 0.19, "code": 0.12}, calibrate_from=800,
                         context_fraction=0.5, sft_examples={"math": 20000, "code": 1900, "dialogue": 11000},
                         then=(Stage(seed=7, steps=1000, lr=2e-3, warmup=25, student_target={"dialogue": 0.25},
                                     context_fraction=0.5,
                                     sft_examples={"math": 5000, "code": 500, "dialogue": 16000}),)),
}
# The tasks the zoo is trained and calibrated on.
ZOO_TASKS = ("math", "code", "dialogue")
CALIBRATION_EVERY = 25
CALIBRATION_PROMPTS = 100  # of the *training* prompts, never the eval set


def llama(spec: ModelSpec, tokenizer) -> LlamaForCausalLM:
    torch.manual_seed(spec.seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=spec.hidden, intermediate_size=spec.intermediate,
        num_hidden_layers=spec.layers, num_attention_heads=spec.heads, num_key_value_heads=spec.heads,
        max_position_embeddings=128, tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    return LlamaForCausalLM(config)


def load_tasks():
    """The zoo's tasks (ZOO_TASKS) with their default configs: what it is trained and scored on."""
    files = task_files()
    return [TASKS.get(name)(**OmegaConf.load(files[name]).get("params", {})) for name in ZOO_TASKS]


def build(out=ZOO_DIR, log=print, jobs: int = 2) -> dict:
    """Train every model of SPECS into `out` (replaced only once all are done); returns the manifest.

    Models train in `jobs` processes at once, each on one thread: the bits do not depend on `jobs`.
    """
    with _one_thread():
        return _build(out, log, jobs)


@contextmanager
def _one_thread():
    """Torch on one thread, restored after: the same bits on every machine (module docstring)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _build(out, log, jobs: int) -> dict:
    tasks = load_tasks()
    texts = [t for task in tasks for split in ("sft", "train", "eval") for ex in task.examples(split)
             for t in [m["content"] for m in messages_of(ex.prompt)] + [ex.reference]]
    tokenizer = build_tokenizer(texts)
    sft_data = {task.name: task.examples("sft") for task in tasks}

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    manifest = {"tokenizer_vocab": len(tokenizer), "models": {}}
    log(f"tokenizer: {len(tokenizer)} tokens; SFT mixture: " + ", ".join(
        f"{t.name} {len(t.examples('sft'))}" for t in tasks))
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        biggest_first = sorted(SPECS, key=lambda n: -SPECS[n].layers * SPECS[n].hidden * SPECS[n].intermediate)
        futures = {name: pool.submit(_train_and_score, name, SPECS[name], tokenizer, tasks, sft_data, log)
                   for name in biggest_first}  # biggest first: the shortest wall time
        for name, future in futures.items():
            for model_name, (state, entry) in future.result().items():
                manifest["models"][model_name] = save_model(tmp / model_name, SPECS[name], tokenizer, state, entry)
    (tmp / MANIFEST.name).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return manifest


def save_model(folder, spec: ModelSpec, tokenizer, state: dict, entry: dict) -> dict:
    """Write one trained model as a checkpoint folder; returns its manifest entry (with size and
    file checksums)."""
    model = llama(spec, tokenizer)
    model.load_state_dict(state)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return {**entry, "params": sum(p.numel() for p in model.parameters()), "files": checksums(folder)}


def prompt_stderr(samples: list[dict]) -> float:
    """The standard error of mean@k over prompts (per-sample records from `evaluate`): the noise a
    difference between two models' scores must clear to mean anything."""
    by_prompt = defaultdict(list)
    for record in samples:
        by_prompt[record["prompt_index"]].append(record["score"])
    return statistics.stdev(statistics.fmean(s) for s in by_prompt.values()) / math.sqrt(len(by_prompt))


def eval_scores(name, model, tokenizer, tasks, with_context: bool, log) -> dict:
    """The manifest's scores of one model: mean@8 / best@8 on each task's eval prompts, the standard
    error of mean@8 over prompts, and (for a model trained to use it) mean@8 / best@8 with the
    reference shown as context."""
    entry = {"eval": {}, "eval_stderr": {}, **({"eval_with_context": {}} if with_context else {})}
    for task in tasks:
        entry["eval"][task.name], samples = evaluate(model, tokenizer, task)
        entry["eval_stderr"][task.name] = prompt_stderr(samples)
        line = f"  {name} {task.name}: eval mean@8 {entry['eval'][task.name]['mean@8']:.3f}"
        if with_context:  # the eval prompts shown with their reference solution as context
            entry["eval_with_context"][task.name], _ = evaluate(model, tokenizer, task, context=True)
            line += f", with context {entry['eval_with_context'][task.name]['mean@8']:.3f}"
        log(line)
    return entry


def rescore(out=ZOO_DIR, log=print) -> dict:
    """Recompute the manifest's scores of the shipped weights with the current task configs (after
    a change to how a task is evaluated, e.g. its `max_new_tokens`): what a rebuild would record,
    without retraining. One thread, as in the build."""
    manifest = json.loads((out / MANIFEST.name).read_text())
    with _one_thread():
        tasks = load_tasks()
        for name, entry in manifest["models"].items():
            model, tokenizer = load_model(str(out / name)), load_tokenizer(str(out / name))
            entry.update(eval_scores(name, model, tokenizer, tasks, "eval_with_context" in entry, log))
    (out / MANIFEST.name).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _train_and_score(name, spec: ModelSpec, tokenizer, tasks, sft_data, log) -> dict:
    """One model's SFT and eval scores, in a worker process on one thread: {model name: (weights,
    manifest entry)}, with the same run's weights at `base_step` as `<name>-base` when asked."""
    torch.set_num_threads(1)
    model, started, base, stages = llama(spec, tokenizer), time.perf_counter(), {}, spec.stages

    def scored(model_name, with_context=False):
        return eval_scores(model_name, model, tokenizer, tasks, with_context, log)

    def on_step(stage: Stage, step, loss):
        where = f"{name}" + (f" stage {stages.index(stage) + 1}" if spec.then else "") + f" step {step}"
        if step % 250 == 0:
            log(f"  {where}/{stage.steps} loss {loss:.3f}")
        if stage is stages[0] and step == spec.base_step:
            base.update((k, v.detach().clone()) for k, v in model.state_dict().items())
        if stage.student_target is None or step < stage.calibrate_from or step % CALIBRATION_EVERY:
            return False
        scores = {t.name: evaluate(model, tokenizer, t, split="train", num_prompts=CALIBRATION_PROMPTS)[0]["mean@8"]
                  for t in tasks}
        model.train()
        log(f"  {where}: calibration mean@8 " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
        return all(scores[task] >= target for task, target in stage.student_target.items())

    log(f"training {name} ({sum(p.numel() for p in model.parameters())} params)")
    for stage in stages:
        counts = stage.sft_examples or {}
        data = [ex for task, examples in sft_data.items() for ex in examples[:counts.get(task)]]
        sft(model, tokenizer, data, steps=stage.steps, batch_size=spec.batch_size, lr=stage.lr, seed=stage.seed,
            warmup=stage.warmup, context_fraction=stage.context_fraction, on_step=partial(on_step, stage))
    log(f"  {name}: trained in {time.perf_counter() - started:.0f} s")
    out = {name: ({k: v.clone() for k, v in model.state_dict().items()},
                  {"spec": asdict(spec), **scored(name, any(stage.context_fraction > 0 for stage in stages))})}
    if base:  # the same run's weights at `base_step`: no extra training
        model.load_state_dict(base)
        model.eval()
        out[f"{name}-base"] = (base, {"base_of": name, "sft_step": spec.base_step, **scored(f"{name}-base")})
    return out
