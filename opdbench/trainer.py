"""The one training loop: rollout → teacher scoring → feedback → loss → AdamW step.

Every method runs through `train`; a method only changes which registered knob functions the
feedback step calls (opdbench/feedback/). Read top to bottom: `prepare` loads and validates
everything before any file is written, `train` is the loop, `update` is the gradient step.
"""

from __future__ import annotations

import copy
import hashlib
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from . import provenance, results
from .chat import decode_responses, encode_prompt
from .errors import OpdbenchError
from .evaluate import evaluate
from .feedback import SHAPINGS, Signals, advantages
from .policy import entropy, masked_mean, response_logits, token_logp
from .rollout import BACKENDS, Rollout, hf, pad_responses
from .tasks import Task, make_task
from .teachers import micro_batches, score_all
from .zoo import DTYPES, load_model, load_tokenizer


@dataclass
class Run:
    """Everything a run needs, loaded and checked before anything is written."""

    cfg: DictConfig
    task: Task
    tokenizer: object
    student: torch.nn.Module  # the learner, fp32
    rollout_model: torch.nn.Module  # the student itself, or a copy in `rollout.dtype`
    teachers: list[torch.nn.Module]
    cell: Path


def validate(cfg: DictConfig) -> None:
    """Value checks the schema's types cannot express; each failure names the key and the fix."""
    checks = [
        (cfg.train.steps >= 0, "train.steps must be >= 0"),
        (cfg.train.batch_prompts >= 1, "train.batch_prompts must be >= 1"),
        (cfg.train.micro_batch >= 1, "train.micro_batch must be >= 1"),
        (cfg.train.lr > 0, "train.lr must be > 0"),
        (cfg.train.warmup_steps >= 0, "train.warmup_steps must be >= 0"),
        (cfg.train.grad_clip > 0, "train.grad_clip must be > 0"),
        (cfg.train.teacher_top_k >= 1, "train.teacher_top_k must be >= 1"),
        (cfg.rollout.temperature > 0, "rollout.temperature must be > 0"),
        (0 < cfg.rollout.top_p <= 1, "rollout.top_p must be in (0, 1]"),
        (cfg.rollout.samples_per_prompt >= 1, "rollout.samples_per_prompt must be >= 1"),
        (cfg.rollout.dtype in DTYPES, f"rollout.dtype must be one of {', '.join(DTYPES)}"),
        (cfg.rollout.backend in BACKENDS, f"rollout.backend must be one of {', '.join(BACKENDS)}"),
        (1 <= cfg.eval.k <= cfg.eval.n, "eval.k must be between 1 and eval.n"),
        (cfg.eval.every >= 1, "eval.every must be >= 1"),
        (cfg.eval.num_prompts >= 1, "eval.num_prompts must be >= 1"),
        (cfg.eval.temperature > 0 and 0 < cfg.eval.top_p <= 1, "eval.temperature must be > 0 and eval.top_p in (0, 1]"),
        (len(cfg.models.teachers) >= 1, "models.teachers needs at least one teacher"),
    ]
    for ok, message in checks:
        if not ok:
            raise OpdbenchError(f"bad value: {message}")
    SHAPINGS.get(cfg.method.shaping)  # raises with the valid names


def prepare(cfg: DictConfig) -> Run:
    validate(cfg)
    task = make_task(cfg.task)
    if cfg.eval.num_prompts > len(task.examples("eval")):
        raise OpdbenchError(f"bad value: eval.num_prompts={cfg.eval.num_prompts} but task "
                            f"{task.name!r} has {len(task.examples('eval'))} eval prompts")
    if cfg.train.batch_prompts > len(task.examples("train")):
        raise OpdbenchError(f"bad value: train.batch_prompts={cfg.train.batch_prompts} exceeds the "
                            f"{len(task.examples('train'))} training prompts")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    tokenizer = load_tokenizer(cfg.models.student)
    for spec in cfg.models.teachers:
        if load_tokenizer(spec).get_vocab() != tokenizer.get_vocab():
            raise OpdbenchError(f"tokenizer mismatch: teacher {spec!r} and student "
                                f"{cfg.models.student!r} have different vocabularies; use models that share one")
    student = load_model(cfg.models.student).train()
    teachers = [load_model(spec) for spec in cfg.models.teachers]
    rollout_model = student if cfg.rollout.dtype == "float32" else copy.deepcopy(student).to(DTYPES[cfg.rollout.dtype])
    cell = results.cell_dir(cfg.results_dir, cfg.suite, cfg.method.name, cfg.task.name, cfg.seed)
    return Run(cfg, task, tokenizer, student, rollout_model, teachers, cell)


def rollout(run: Run, prompt_ids: list[list[int]], group: list[int], generator: torch.Generator) -> Rollout:
    cfg = run.cfg
    if run.rollout_model is not run.student:  # same weights, other dtype: copy and cast
        run.rollout_model.load_state_dict(run.student.state_dict())
    repeats = cfg.rollout.samples_per_prompt
    batch = hf.sample(run.rollout_model, [p for p in prompt_ids for _ in range(repeats)],
                      max_new_tokens=run.task.max_new_tokens, eos_id=run.tokenizer.eos_token_id,
                      pad_id=run.tokenizer.pad_token_id, temperature=cfg.rollout.temperature,
                      top_p=cfg.rollout.top_p, generator=generator, group=[g for g in group for _ in range(repeats)])
    return batch.sorted_by_length()


def update(model, optimizer, batch: Rollout, advantages_of, *, micro_batch: int, grad_clip: float):
    """One AdamW step on L = -sum_t m_t sg(A_t) log pi(y_t) / sum_t m_t over the whole batch.

    `advantages_of(rows, learner_logp_b_r)` gives A for a micro-batch's rows from the learner's own
    (detached) log-probs, so the forward pass that takes the gradient also provides the feedback:
    no separate no-grad pass over the batch. Each micro-batch divides by the token count of the
    *whole* batch, so the accumulated gradient is the same however the batch is split.
    Returns the step's stats and the learner's log-probs and entropies (B × R, detached).
    """
    n_tokens = batch.response_mask_B_R.sum().clamp(min=1)
    optimizer.zero_grad(set_to_none=True)
    total, logps, entropies = 0.0, [], []
    for rows in micro_batches(len(batch), micro_batch):
        mb = batch.select(rows)
        logits = response_logits(model, mb)
        logp = token_logp(logits, mb.response_ids_B_R)
        device = logp.device
        adv = advantages_of(rows, logp.detach().cpu()).to(device)
        loss = -(adv * logp * mb.response_mask_B_R.to(device)).sum() / n_tokens
        loss.backward()
        total += loss.item()
        logps.append(pad_responses(logp.detach().cpu(), batch.response_len))
        with torch.no_grad():
            entropies.append(pad_responses(entropy(logits).cpu(), batch.response_len))
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip).item()
    optimizer.step()
    return {"loss": total, "grad_norm": grad_norm}, torch.cat(logps), torch.cat(entropies)


def train_step(run: Run, optimizer, examples, prompt_ids, group, generator) -> tuple[dict, dict]:
    """One OPD step on these prompts; returns (metrics row, seconds per phase)."""
    cfg = run.cfg
    t0 = time.perf_counter()
    batch = rollout(run, prompt_ids, group, generator)
    t1 = time.perf_counter()
    teacher_scores = score_all(run.teachers, batch, top_k=cfg.train.teacher_top_k, micro_batch=cfg.train.micro_batch)
    t2 = time.perf_counter()

    def advantages_of(rows, learner_logp_b_r):
        R = learner_logp_b_r.shape[1]
        return advantages(cfg.method, Signals(
            learner_logp_B_R=learner_logp_b_r, rollout_logp_B_R=batch.rollout_logp_B_R[rows, :R],
            teacher_logp_B_R=teacher_scores[0].logp_B_R[rows, :R], mask_B_R=batch.response_mask_B_R[rows, :R],
            group_B=batch.group_B[rows]))

    stats, learner_logp, student_entropy = update(run.student, optimizer, batch, advantages_of,
                                                  micro_batch=cfg.train.micro_batch, grad_clip=cfg.train.grad_clip)
    t3 = time.perf_counter()
    signals = Signals(learner_logp_B_R=learner_logp, rollout_logp_B_R=batch.rollout_logp_B_R,
                      teacher_logp_B_R=teacher_scores[0].logp_B_R, mask_B_R=batch.response_mask_B_R,
                      group_B=batch.group_B)
    adv = advantages(cfg.method, signals)

    mask, log_r = batch.response_mask_B_R, signals.log_r_B_R
    by_group = dict(zip(group, examples))
    texts = decode_responses(run.tokenizer, batch.response_ids_B_R, mask)
    row = {
        **stats,
        "kl_k1": masked_mean(log_r, mask).item(),  # per-token estimates of KL(student || teacher)
        "kl_k3": masked_mean(torch.expm1(-log_r) + log_r, mask).item(),
        "adv_mean": masked_mean(adv, mask).item(),
        "entropy": masked_mean(student_entropy, mask).item(),
        "teacher_entropy": masked_mean(teacher_scores[0].entropy_B_R, mask).item(),
        "drift": masked_mean((learner_logp - batch.rollout_logp_B_R).abs(), mask).item(),
        "tokens": int(mask.sum().item()),
        "response_len": mask.sum(1).mean().item(),
        "train_score": sum(run.task.score(by_group[g], t) for g, t in zip(batch.group_B.tolist(), texts)) / len(texts),
    }
    return row, {"rollout_s": t1 - t0, "teacher_s": t2 - t1, "update_s": t3 - t2}


def _eval(run: Run, model, progress: bool) -> tuple[dict, list[dict]]:
    e = run.cfg.eval
    return evaluate(model, run.tokenizer, run.task, num_prompts=e.num_prompts, n=e.n, k=e.k,
                    temperature=e.temperature, top_p=e.top_p, seed=e.seed, batch_size=e.batch_size,
                    progress=progress)


def train(cfg: DictConfig) -> dict:
    """Train one cell (method × task × seed) and write it to results/; returns summary.json."""
    run = prepare(cfg)
    start = time.perf_counter()
    k = cfg.eval.k
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)  # every rollout draw
    prompt_rng = random.Random(cfg.seed)  # which prompts each batch uses
    optimizer = torch.optim.AdamW(run.student.parameters(), lr=cfg.train.lr,
                                  weight_decay=cfg.train.weight_decay)
    warmup = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / (cfg.train.warmup_steps + 1)))
    pool = run.task.examples("train")
    pool_ids = [encode_prompt(run.tokenizer, ex.prompt) for ex in pool]
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)

    with results.CellWriter(run.cell) as cell:
        results.write_atomic(cell.path("config.yaml"), config_yaml)
        results.write_json(cell.path("provenance.json"), provenance.collect(
            config_hash=hashlib.sha256(config_yaml.encode()).hexdigest(),
            models=[cfg.models.student, *cfg.models.teachers]))
        teacher_eval = _eval(run, run.teachers[0], cfg.progress)[0] if cfg.eval.teacher_reference else {}
        step0, _ = _eval(run, run.student, cfg.progress)
        curve = [(0, step0[f"mean@{k}"])]
        cell.append("metrics.jsonl", {"step": 0, **{f"eval/{m}": v for m, v in step0.items()}})
        cell.append("timing.jsonl", {"step": 0, "wall_s": round(time.perf_counter() - start, 3)})

        final, samples = step0, []
        bar = tqdm(range(1, cfg.train.steps + 1), desc=f"{cfg.method.name}/{cfg.task.name}/seed={cfg.seed}",
                   disable=not cfg.progress, dynamic_ncols=True)
        for step in bar:
            chosen = prompt_rng.sample(range(len(pool)), cfg.train.batch_prompts)
            row, timing = train_step(run, optimizer, [pool[i] for i in chosen],
                                     [pool_ids[i] for i in chosen], chosen, generator)
            warmup.step()
            row, timing = {"step": step, **row}, {"step": step, **timing}
            if step % cfg.eval.every == 0 or step == cfg.train.steps:
                final, samples = _eval(run, run.student, False)
                curve.append((step, final[f"mean@{k}"]))
                row.update({f"eval/{m}": v for m, v in final.items()})
            timing["wall_s"] = time.perf_counter() - start
            cell.append("metrics.jsonl", row)
            cell.append("timing.jsonl", {key: round(v, 4) if isinstance(v, float) else v for key, v in timing.items()})
            bar.set_postfix(kl=f"{row['kl_k1']:.3f}", score=f"{row['train_score']:.2f}",
                            **({f"mean@{k}": f"{final[f'mean@{k}']:.3f}"} if f"eval/mean@{k}" in row else {}))

        for record in samples:
            cell.append("samples.jsonl", {"step": cfg.train.steps, **record})
        summary = {
            "suite": cfg.suite, "method": cfg.method.name, "task": cfg.task.name, "seed": cfg.seed,
            "budget": cfg.budget, "steps": cfg.train.steps,
            f"step0_mean@{k}": step0[f"mean@{k}"], f"step0_best@{k}": step0[f"best@{k}"],
            f"mean@{k}": final[f"mean@{k}"], f"best@{k}": final[f"best@{k}"],
            f"auc_mean@{k}": _area_under(curve),
            **({f"teacher_mean@{k}": teacher_eval[f"mean@{k}"], f"teacher_best@{k}": teacher_eval[f"best@{k}"]}
               if teacher_eval else {}),
            "wall_s": round(time.perf_counter() - start, 2),
            "path": str(run.cell),
        }
        cell.finish(summary)
    return summary


def _area_under(curve: list[tuple[int, float]]) -> float:
    """Mean of the eval curve over training (trapezoids over steps): rewards learning early."""
    if len(curve) < 2 or curve[-1][0] == 0:
        return curve[-1][1]
    area = sum((s1 - s0) * (v0 + v1) / 2 for (s0, v0), (s1, v1) in zip(curve, curve[1:]))
    return area / curve[-1][0]
