"""The one training loop: rollout → teacher scoring → feedback → loss → AdamW step.

Every method runs through `train`; a method only changes which registered knob functions the
feedback step calls (opdbench/feedback/). Read top to bottom: `prepare` loads and validates
everything before any file is written, `train` is the loop, `update` is the gradient step.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from . import provenance, results
from .chat import decode_responses, encode_prompt, encode_response, prefixed
from .compat import check_compatible, embedding_rows
from .errors import OpdbenchError
from .evaluate import code_fingerprint, evaluate, memoized, modules_in_use, score_matrix
from .feedback import KNOBS, Signals, advantages, needs_whole_batch, token_loss, token_weights
from .feedback.credit import CREDITS
from .feedback.scaling import SCALINGS
from .feedback.shaping import SHAPINGS
from .feedback.support import StudentTokens
from .optim import AdamW
from .placement import (AUTOCAST, add_lora, autocast, copy_weights, enable_checkpointing, memory_estimate, merged_copy,
                        resolve_device)
from .policy import entropy, masked_mean, response_logits, token_logp
from .rollout import BACKENDS, Rollout, Sampler, hf, make_sampler, pad_responses
from .stats import area_under_curve
from .tasks import Task, make_task
from .teachers import ENSEMBLES, NEEDS_FULL, TeacherScores, assign_teachers, combine, micro_batches, score, score_all
from .zoo import DTYPES, checksums, hidden_size, load_model, load_tokenizer, resolve


@dataclass
class Run:
    """Everything a run needs, loaded and checked before anything is written."""

    cfg: DictConfig
    task: Task
    tokenizer: object
    student: torch.nn.Module  # the learner, fp32 (for a reference row: the model being scored)
    rollout_model: torch.nn.Module  # the student itself, or a copy in `rollout.dtype` (LoRA: adapters merged)
    teachers: list[torch.nn.Module]  # small → large
    reference: torch.nn.Module | None  # pi_ref (ExOPD, KL-to-reference), frozen
    value_head: torch.nn.Module | None  # V(s_t) for GAE-OPD
    cell: Path
    student_spec: str
    teacher_specs: list[str]
    device: torch.device  # the learner's
    sampler: Sampler  # rollout.backend, for the student's own samples

    def autocast(self):
        """The precision of the learner's and teachers' forward passes (train.autocast)."""
        return autocast(self.cfg.train.autocast, self.device)

    @property
    def method(self):
        return self.cfg.method


KINDS = ("train", "evaluate_student", "evaluate_teacher")
HF_SAMPLER = hf.HFSampler()


def validate(cfg: DictConfig) -> None:
    """Value checks the schema's types cannot express; each failure names the key and the fix."""
    m = cfg.method
    teachers = m.teachers or cfg.models.teachers
    checks = [
        (cfg.train.steps >= 0, "train.steps must be >= 0"),
        (cfg.train.batch_prompts >= 1, "train.batch_prompts must be >= 1"),
        (cfg.train.micro_batch >= 1, "train.micro_batch must be >= 1"),
        (cfg.train.epochs >= 1, "train.epochs must be >= 1"),
        (cfg.student.lora.r == 0 or cfg.rollout.backend == "hf",
         "student.lora with rollout.backend=vllm: pushing adapter weights to the engine is not written; use hf"),
        (cfg.train.lr > 0, "train.lr must be > 0"),
        (cfg.train.warmup_steps >= 0, "train.warmup_steps must be >= 0"),
        (cfg.train.grad_clip > 0, "train.grad_clip must be > 0"),
        (cfg.train.teacher_top_k >= 1, "train.teacher_top_k must be >= 1"),
        (cfg.rollout.temperature > 0, "rollout.temperature must be > 0"),
        (0 < cfg.rollout.top_p <= 1, "rollout.top_p must be in (0, 1]"),
        (cfg.rollout.samples_per_prompt >= 1, "rollout.samples_per_prompt must be >= 1"),
        (cfg.rollout.dtype in DTYPES, f"rollout.dtype must be one of {', '.join(DTYPES)}"),
        (cfg.train.autocast in AUTOCAST, f"train.autocast must be one of {', '.join(AUTOCAST)}"),
        (cfg.rollout.backend in BACKENDS, f"rollout.backend must be one of {', '.join(BACKENDS)}"),
        (1 <= cfg.eval.k <= cfg.eval.n, "eval.k must be between 1 and eval.n"),
        (cfg.eval.every >= 1, "eval.every must be >= 1"),
        (cfg.eval.num_prompts >= 1, "eval.num_prompts must be >= 1"),
        (cfg.eval.temperature > 0 and 0 < cfg.eval.top_p <= 1, "eval.temperature must be > 0 and eval.top_p in (0, 1]"),
        (len(teachers) >= 1, "models.teachers needs at least one teacher"),
        (m.kind in KINDS, f"method.kind must be one of {', '.join(KINDS)}"),
        (0 <= m.on_policy_fraction <= 1, "method.on_policy_fraction must be in [0, 1]"),
        (len(m.filter_band) == 2 and 0 <= m.filter_band[0] < m.filter_band[1] <= 100,
         "method.filter_band must be [min, max] with 0 <= min < max <= 100"),
        (m.reference in ("student_init", "teacher_base"), "method.reference must be student_init or teacher_base"),
        (m.on_policy_fraction == 1 or m.loss in ("gkd", "nll"),
         "method.on_policy_fraction < 1 (teacher samples) needs loss=gkd or loss=nll: advantages need student samples"),
        ((m.ensemble == "single") == (len(teachers) == 1),
         f"ensemble={m.ensemble} with {len(teachers)} teachers: 'single' takes one teacher, ensembles two or more"),
        (m.loss_params.get("k", 1) <= cfg.train.teacher_top_k, "method.loss_params.k must be <= train.teacher_top_k"),
    ]
    for ok, message in checks:
        if not ok:
            raise OpdbenchError(f"bad value: {message}")
    for knob, registry in {**KNOBS, "ensemble": ENSEMBLES}.items():
        fn = registry.get(m[knob])  # raises with the valid names
        params = m.get(f"{knob}_params") if knob != "is_correction" else m.is_params
        if params:
            _check_params(knob, m[knob], fn, params)


def _check_params(knob: str, name: str, fn, params) -> None:
    accepted = [p.name for p in list(inspect.signature(fn).parameters.values()) if p.default is not p.empty]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise OpdbenchError(f"bad value: {knob} {name!r} has no parameter {', '.join(unknown)}; "
                            f"valid: {', '.join(accepted) or '(none)'}")


def uses_reference(m: DictConfig) -> bool:
    """ExOPD's scaling and a KL penalty to the reference both read a frozen reference model."""
    return m.scaling == "exopd" or m.kl_to_reference


def reads_teacher_base(m: DictConfig) -> bool:
    """Whether that reference is models.teacher_base (else the student's initial weights)."""
    return uses_reference(m) and m.reference == "teacher_base"


def prepare(cfg: DictConfig) -> Run:
    validate(cfg)
    m = cfg.method
    task = make_task(cfg.task)
    if cfg.eval.num_prompts > len(task.examples("eval")):
        raise OpdbenchError(f"bad value: eval.num_prompts={cfg.eval.num_prompts} but task "
                            f"{task.name!r} has {len(task.examples('eval'))} eval prompts")
    if cfg.train.batch_prompts > len(task.examples("train")):
        raise OpdbenchError(f"bad value: train.batch_prompts={cfg.train.batch_prompts} exceeds the "
                            f"{len(task.examples('train'))} training prompts")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    teacher_specs = list(m.teachers or cfg.models.teachers)
    student_spec = teacher_specs[-1] if m.kind == "evaluate_teacher" else cfg.models.student
    tokenizer = load_tokenizer(student_spec)
    check_encodable(tokenizer, task, student_spec)
    unknown = [t for t in m.mask_tokens if t not in tokenizer.get_vocab()]
    if unknown:
        raise OpdbenchError(f"bad value: method.mask_tokens {unknown} are not tokens of {student_spec!r}")
    device = resolve_device(cfg.device)
    teacher_device = resolve_device(cfg.models.teacher_device or cfg.device)
    # The native Llama computes from fused weights, which peft's adapters and transformers'
    # checkpointing never reach: a student with either loads through transformers.
    adapted = cfg.student.lora.r > 0 or cfg.train.gradient_checkpointing
    student = load_model(student_spec, native=not adapted).to(device).train()
    if cfg.train.gradient_checkpointing:
        enable_checkpointing(student)
    if cfg.student.lora.r > 0:
        with torch.random.fork_rng(devices=[]):  # the adapters' random init from the run's seed: reruns match
            torch.manual_seed(cfg.seed)
            student = add_lora(student, cfg.student.lora)
    teachers = [load_model(spec, cfg.models.teacher_dtype).to(teacher_device).requires_grad_(False)
                for spec in teacher_specs]
    for spec, teacher in zip(teacher_specs, teachers):  # can each teacher score the student's tokens? (before any step)
        check_compatible(student_spec, tokenizer, student, spec, load_tokenizer(spec), teacher,
                         allow_template_mismatch=cfg.models.allow_template_mismatch)
    reference = None
    if uses_reference(m):
        reference = (copy.deepcopy(student).eval() if m.reference == "student_init"
                     else load_model(cfg.models.teacher_base).to(teacher_device)).requires_grad_(False)
    value_head = None
    if m.credit == "gae":  # a scalar linear head on the (detached) last hidden state, starting at V = 0
        value_head = torch.nn.Linear(hidden_size(student), 1).to(device)
        torch.nn.init.zeros_(value_head.weight), torch.nn.init.zeros_(value_head.bias)
    if cfg.student.lora.r > 0 and cfg.student.lora.merged_rollout:
        rollout_model = merged_copy(student).to(DTYPES[cfg.rollout.dtype])
    else:
        rollout_model = student if cfg.rollout.dtype == "float32" else copy.deepcopy(student).to(DTYPES[cfg.rollout.dtype])
    sampler = make_sampler(cfg.rollout.backend, model_spec=student_spec, **cfg.rollout)  # rollout.dtype among them
    cell = results.cell_dir(cfg.results_dir, cfg.suite, results.method_dir(m.name, cfg.variant), cfg.task.name, cfg.seed)
    return Run(cfg, task, tokenizer, student, rollout_model, teachers, reference, value_head, cell,
               student_spec, teacher_specs, device, sampler)


def memory_line(run: Run) -> str:
    """`placement.memory_estimate` for this run's models and its longest sequence (prompt + response)."""
    prompts = [encode_prompt(run.tokenizer, ex.prompt) for ex in run.task.examples("train")[:256]]
    extra = [m for m in (run.reference, run.value_head, run.rollout_model) if m is not None and m is not run.student]
    _, line = memory_estimate(run.student, run.teachers, micro_batch=run.cfg.train.micro_batch,
                              max_tokens=max(map(len, prompts)) + run.task.max_new_tokens,
                              vocab=embedding_rows(run.student), extra_models=extra)  # padded rows too
    return line


def check_encodable(tokenizer, task: Task, spec: str, probe: int = 20) -> None:
    """A tokenizer that cannot spell a task's text would train and score on <unk>: refuse. (The
    zoo's word-level tokenizer covers the tasks it was built on, zoo.build.ZOO_TASKS, and no other.)"""
    unk = tokenizer.unk_token_id
    if unk is None:
        return
    for ex in task.examples("eval")[:probe]:
        if unk in encode_prompt(tokenizer, ex.prompt) + encode_response(tokenizer, ex.reference):
            raise OpdbenchError(f"the tokenizer of {spec!r} cannot encode task {task.name!r} (unknown tokens in its "
                                "text): use models whose tokenizer covers the task")


def rollout(run: Run, model, prompt_ids: list[list[int]], group: list[int], generator: torch.Generator) -> Rollout:
    """The student's samples come from `rollout.backend`, which first takes the weights of the last
    optimizer step; a teacher's (GKD's off-policy share) from the hf loop over the teacher itself."""
    cfg = run.cfg
    sampler = run.sampler if model is run.rollout_model else HF_SAMPLER
    if model is run.rollout_model:
        if model is not run.student:  # a copy in another dtype, or with LoRA's adapters merged
            copy_weights(model, run.student)
        sampler.sync(model)
    repeats = cfg.rollout.samples_per_prompt
    batch = sampler.sample(model, [p for p in prompt_ids for _ in range(repeats)],
                           max_new_tokens=run.task.max_new_tokens, eos_id=run.tokenizer.eos_token_id,
                           pad_id=run.tokenizer.pad_token_id, temperature=cfg.rollout.temperature,
                           top_p=cfg.rollout.top_p, generator=generator, group=[g for g in group for _ in range(repeats)])
    return batch.sorted_by_length()


def first_occurrences(ids_B_R: torch.Tensor, mask_B_R: torch.Tensor, token_ids: list[int]) -> torch.Tensor:
    """1.0 at the first occurrence of each listed token in each response (special-token masking)."""
    out = torch.zeros_like(mask_B_R)
    for token in token_ids:
        hit = (ids_B_R == token) & mask_B_R.bool()
        first = hit & (hit.long().cumsum(1) == 1)
        out = torch.maximum(out, first.float())
    return out


@dataclass
class StepInputs:
    """What the feedback needs besides the learner: fixed for the step, one row per sequence."""

    batch: Rollout
    teacher: TeacherScores  # combined over the teachers
    ref_logp_B_R: torch.Tensor | None
    special_B_R: torch.Tensor | None
    on_policy: bool = True  # False: the sequences are teacher samples


def forward(run: Run, mb: Rollout, teacher: TeacherScores):
    """The learner on a micro-batch: StudentTokens (with gradient), the detached per-token student
    signals the feedback reads, and V(s_t) with gradient for the value head (or None)."""
    hidden = run.value_head is not None
    out = response_logits(run.student, mb, hidden=hidden)
    logits, last_hidden = out if hidden else (out, None)
    student = StudentTokens(logits, token_logp(logits, mb.response_ids_B_R))
    values = run.value_head(last_hidden.detach()).squeeze(-1) if hidden else None
    with torch.no_grad():
        logp_full = logits.log_softmax(-1)
        p_full = logp_full.exp()
        signals = {
            "learner_logp_B_R": student.logp_b_r.detach().cpu(),
            "student_entropy_B_R": entropy(logp_full).cpu(),
            "values_B_R": None if values is None else values.detach().cpu(),
            "token_kl_B_R": None if teacher.logp_full_B_R_V is None else
            (p_full * (logp_full - teacher.logp_full_B_R_V.to(logits.device))).sum(-1).cpu(),
            "teacher_topk_mass_B_R": p_full.gather(-1, teacher.topk_idx_B_R_K.to(logits.device)).sum(-1).cpu(),
        }
    return student, signals, values


def signals_for(run: Run, inputs: StepInputs, rows, R: int, student_signals: dict) -> Signals:
    b = inputs.batch
    cut = (lambda x: None if x is None else x[rows, :R])
    return Signals(learner_logp_B_R=student_signals["learner_logp_B_R"], rollout_logp_B_R=b.rollout_logp_B_R[rows, :R],
                   teacher=inputs.teacher.rows(rows, R), mask_B_R=b.response_mask_B_R[rows, :R], group_B=b.group_B[rows],
                   student_entropy_B_R=student_signals["student_entropy_B_R"], values_B_R=student_signals["values_B_R"],
                   ref_logp_B_R=cut(inputs.ref_logp_B_R), token_kl_B_R=student_signals["token_kl_B_R"],
                   special_B_R=cut(inputs.special_B_R))


@torch.no_grad()
def learner_pass(run: Run, inputs: StepInputs) -> Signals:
    """The whole batch's student signals without gradient: for knobs that need batch statistics."""
    b, parts = inputs.batch, []
    for rows in micro_batches(len(b), run.cfg.train.micro_batch):
        mb = b.select(rows)
        with run.autocast():
            _, student_signals, _ = forward(run, mb, inputs.teacher.rows(rows, mb.response_len))
        parts.append({k: None if v is None else pad_responses(v, b.response_len) for k, v in student_signals.items()})
    whole = {k: None if parts[0][k] is None else torch.cat([p[k] for p in parts]) for k in parts[0]}
    return signals_for(run, inputs, slice(None), b.response_len, whole)


def update(run: Run, optimizer, inputs: StepInputs):
    """One AdamW step on L = sum_t w_t m_t L_t / sum_t m_t over the whole batch (L_t = -sg(A_t) log pi
    for the sampled-token route). Each micro-batch divides by the token count of the *whole* batch,
    so the accumulated gradient is the same however the batch is split.

    The feedback (A and w) comes from the very forward pass that takes the gradient (detached), one
    micro-batch at a time, unless a knob needs statistics of the whole batch: then from a separate
    no-grad pass first. Both give the same numbers. Returns the stats and the batch's signals, A, w
    and the student's probability mass on the teacher's top-K tokens.
    """
    method, batch = run.method, inputs.batch
    whole = learner_pass(run, inputs) if needs_whole_batch(method) else None
    if whole is not None:
        whole_adv, whole_weight = advantages(method, whole), token_weights(method, whole)
    n_tokens = batch.response_mask_B_R.sum().clamp(min=1)
    optimizer.zero_grad()
    total, value_total, parts = 0.0, 0.0, []
    for rows in micro_batches(len(batch), run.cfg.train.micro_batch):
        mb = batch.select(rows)
        R = mb.response_len
        with run.autocast():
            student, student_signals, values = forward(run, mb, inputs.teacher.rows(rows, R))
        if whole is None:
            signals = signals_for(run, inputs, rows, R, student_signals)
            adv, weight = advantages(method, signals), token_weights(method, signals)
        else:
            signals, adv, weight = whole.rows(rows, R), whole_adv[rows, :R], whole_weight[rows, :R]
        device = student.logp_b_r.device
        per_token = token_loss(method, student, adv.to(device), _to(signals, device), mb.response_ids_B_R.to(device))
        loss = (weight.to(device) * per_token).sum() / n_tokens
        if values is not None:  # the value head regresses on the lambda-return A_t + V(s_t)
            target = value_targets(method, signals).to(device)
            value_loss = 0.5 * ((values - target).square() * mb.response_mask_B_R.to(device)).sum() / n_tokens
            loss = loss + value_loss
            value_total += value_loss.item()
        loss.backward()
        total += loss.item()
        parts.append((signals, adv, weight, student_signals["teacher_topk_mass_B_R"]))
    grad_norm = torch.nn.utils.clip_grad_norm_(optimizer.params, run.cfg.train.grad_clip).item()
    optimizer.step()
    R = batch.response_len
    signals = whole if whole is not None else _concat_signals([p[0] for p in parts], R)
    adv, weight, topk_mass = (torch.cat([pad_responses(p[i], R) for p in parts]) for i in (1, 2, 3))
    stats = {"loss": total, "grad_norm": grad_norm, **({"value_loss": value_total} if run.value_head else {})}
    return stats, signals, adv, weight, topk_mass


def value_targets(method, signals: Signals) -> torch.Tensor:
    """The lambda-return: GAE's advantage (before any whitening) plus V(s_t)."""
    reward = SHAPINGS.get(method.shaping)(SCALINGS.get(method.scaling)(signals, **method.scaling_params),
                                          **method.shaping_params) * signals.mask_B_R
    return CREDITS.get(method.credit)(reward, signals.mask_B_R, signals.values_B_R, **method.credit_params) + signals.values_B_R


def _to(signals: Signals, device) -> Signals:
    if device.type == "cpu":
        return signals
    return Signals(*(x.to(device) if isinstance(x, torch.Tensor) else
                     (TeacherScores(*(None if t is None else t.to(device) for t in x._tensors()))
                      if isinstance(x, TeacherScores) else x) for x in vars(signals).values()))


def _concat_signals(parts: list[Signals], R: int) -> Signals:
    def join(xs):
        if xs[0] is None:
            return None
        if isinstance(xs[0], TeacherScores):
            return TeacherScores(*(join(list(t)) for t in zip(*(x._tensors() for x in xs))))
        return torch.cat(xs) if xs[0].dim() == 1 else torch.cat([pad_responses(x, R) for x in xs])
    return Signals(*(join([getattr(p, f) for p in parts]) for f in vars(parts[0])))


def collect(run: Run, examples, group: list[int], generator: torch.Generator, progress: float) -> tuple[StepInputs, dict]:
    """Sample the step's sequences and score them with the teachers (and the reference policy)."""
    cfg, m, tok = run.cfg, run.method, run.tokenizer
    t0 = time.perf_counter()
    K = len(run.teachers)
    teacher_of_prompt = assign_teachers(m.ensemble, len(examples), K, generator)
    control = m.ensemble == "control_token"
    student_prompts = [encode_prompt(tok, prefixed(ex.prompt, f"<|teacher-{k}|>") if control else ex.prompt)
                       for ex, k in zip(examples, teacher_of_prompt)]
    teacher_prompts = [encode_prompt(tok, ex.prompt, context=ex.reference if m.teacher_context else None)
                       for ex in examples]
    on_policy = m.on_policy_fraction == 1 or (
        m.on_policy_fraction > 0 and torch.rand(1, generator=generator).item() < m.on_policy_fraction)
    if on_policy:
        batch = rollout(run, run.rollout_model, student_prompts, group, generator)
    else:  # teacher-generated sequences (GKD's off-policy share, SFT on teacher samples)
        batch = rollout(run, run.teachers[-1], teacher_prompts, group, generator)
    t1 = time.perf_counter()

    position = {g: i for i, g in enumerate(group)}
    rows_prompt = [position[g] for g in batch.group_B.tolist()]

    def view(prompts):  # the batch's responses after these prompts (one per step prompt)
        return batch.with_prompts([prompts[i] for i in rows_prompt], tok.pad_token_id)

    if teacher_prompts != student_prompts:  # the student learns on its own view, each teacher scores its own
        batch, teacher_batch = (batch, view(teacher_prompts)) if on_policy else (view(student_prompts), batch)
    else:
        teacher_batch = batch
    keep_full = m.loss == "gkd" or m.token_filter == "kl"  # the combined teacher's whole distribution
    top_k = cfg.train.teacher_top_k
    with run.autocast():
        scores = score_all(run.teachers, teacher_batch, top_k=top_k, micro_batch=cfg.train.micro_batch,
                           full=keep_full or m.ensemble in NEEDS_FULL)
    teacher = combine(m.ensemble, scores, batch.response_ids_B_R, progress,
                      torch.tensor([teacher_of_prompt[i] for i in rows_prompt]), top_k=top_k,
                      keep_full=keep_full)
    ref_logp = None
    if run.reference is not None:
        with run.autocast():
            ref_logp = score(run.reference, batch, top_k=1, micro_batch=cfg.train.micro_batch).logp_B_R
    special = None
    if m.mask_tokens:
        special = first_occurrences(batch.response_ids_B_R, batch.response_mask_B_R,
                                    tok.convert_tokens_to_ids(list(m.mask_tokens)))
    return StepInputs(batch, teacher, ref_logp, special, on_policy), {"rollout_s": t1 - t0, "teacher_s": time.perf_counter() - t1}


def train_step(run: Run, optimizer, examples, group: list[int], generator, progress: float) -> tuple[dict, dict]:
    """One step on these prompts; returns (metrics row, seconds per phase)."""
    inputs, timing = collect(run, examples, group, generator, progress)
    t2 = time.perf_counter()
    for _ in range(run.cfg.train.epochs):  # the row reports the last epoch
        stats, signals, adv, weight, topk_mass = update(run, optimizer, inputs)
    timing["update_s"] = time.perf_counter() - t2
    batch = inputs.batch

    mask, log_r = batch.response_mask_B_R, signals.log_r_B_R
    by_group = dict(zip(group, examples))
    texts = decode_responses(run.tokenizer, batch.response_ids_B_R, mask)
    # train_score is a diagnostic: where scoring is costly (sandboxed code) the task asks for a
    # subset, every n-th row of the length-sorted batch, so all lengths stay represented.
    stride = -(-len(texts) // (run.task.train_score_max or len(texts)))
    scored_rows = range(0, len(texts), stride)
    train_scores = run.task.score_many([by_group[batch.group_B[i].item()] for i in scored_rows],
                                       [texts[i] for i in scored_rows])
    row = {
        **stats,
        "kl_k1": masked_mean(log_r, mask).item(),  # per-token estimates of KL(student || teacher)
        "kl_k3": masked_mean(torch.expm1(-log_r) + log_r, mask).item(),
        "adv_mean": masked_mean(adv, mask).item(),
        "adv_abs": masked_mean(adv.abs(), mask).item(),
        "kept_fraction": masked_mean((weight > 0).float(), mask).item(),  # tokens the gates leave in the loss
        "entropy": masked_mean(signals.student_entropy_B_R, mask).item(),
        "teacher_entropy": masked_mean(signals.teacher_entropy_B_R, mask).item(),
        "mass_outside_teacher_topk": masked_mean(1 - topk_mass, mask).item(),
        "drift": masked_mean((signals.learner_logp_B_R - batch.rollout_logp_B_R).abs(), mask).item(),
        "on_policy": int(inputs.on_policy),
        "tokens": int(mask.sum().item()),
        "response_len": mask.sum(1).mean().item(),
        "train_score": sum(train_scores) / len(train_scores),
    }
    return row, timing


def _eval(run: Run, model, progress: bool) -> tuple[dict, list[dict]]:
    e = run.cfg.eval
    return evaluate(model, run.tokenizer, run.task, num_prompts=e.num_prompts, n=e.n, k=e.k,
                    temperature=e.temperature, top_p=e.top_p, seed=e.seed, batch_size=e.batch_size,
                    progress=progress)


def _eval_checkpoint(run: Run, model, spec: str, progress: bool) -> tuple[dict, bool]:
    """{"metrics", "scores"} of a model that is still exactly its checkpoint (the teacher; the
    student at step 0), memoized by checkpoint checksums, task, eval settings, code and threads."""
    e = run.cfg.eval
    folder = Path(resolve(spec))
    key = None
    if folder.is_dir():
        key = {"model": checksums(folder), "dtype": str(next(model.parameters()).dtype),
               "task": OmegaConf.to_container(run.cfg.task, resolve=True),
               "eval": {f: e[f] for f in ("num_prompts", "n", "k", "temperature", "top_p", "seed", "batch_size")}}
    def compute() -> dict:
        metrics, samples = _eval(run, model, progress)
        return {"metrics": metrics, "scores": score_matrix(samples)}

    return memoized(e.cache_dir or None, key, compute)


def make_optimizer(run: Run) -> AdamW:
    """AdamW over what trains: the student's trainable weights (LoRA: the adapters alone) and the value head."""
    params = [p for p in run.student.parameters() if p.requires_grad]
    params += list(run.value_head.parameters()) if run.value_head else []
    return AdamW(params, lr=run.cfg.train.lr, weight_decay=run.cfg.train.weight_decay)


def train(cfg: DictConfig) -> dict:
    """Train one cell (method × task × seed) and write it to results/; returns summary.json."""
    run = prepare(cfg)
    start = time.perf_counter()
    print(memory_line(run), file=sys.stderr)
    k = cfg.eval.k
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)  # every rollout draw
    prompt_rng = random.Random(cfg.seed)  # which prompts each batch uses
    optimizer = make_optimizer(run)
    steps = cfg.train.steps if cfg.method.kind == "train" else 0  # a reference row is scored, not trained
    pool = run.task.examples("train")
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)

    with results.CellWriter(run.cell) as cell:
        results.write_atomic(cell.path("config.yaml"), config_yaml)
        cached = []  # which evaluations were memoized (see _eval_checkpoint)
        teacher_eval = {}
        if cfg.eval.teacher_reference:
            teacher_eval, hit = _eval_checkpoint(run, run.teachers[-1], run.teacher_specs[-1], cfg.progress)
            teacher_eval = teacher_eval["metrics"]
            cached += ["teacher"] * hit
        step0, hit = _eval_checkpoint(run, run.student, run.student_spec, cfg.progress)
        cached += ["step0"] * hit
        step0, final_scores = step0["metrics"], step0["scores"]
        curve = [(0, step0)]
        cell.append("metrics.jsonl", {"step": 0, **{f"eval/{m}": v for m, v in step0.items()}})
        cell.append("timing.jsonl", {"step": 0, "wall_s": round(time.perf_counter() - start, 3)})

        final, samples = step0, []
        tokens = 0  # response tokens trained on; every teacher scores each of them
        bar = tqdm(range(1, steps + 1), desc=f"{cfg.method.name}/{cfg.task.name}/seed={cfg.seed}",
                   disable=not cfg.progress, dynamic_ncols=True)
        for step in bar:
            chosen = prompt_rng.sample(range(len(pool)), cfg.train.batch_prompts)
            optimizer.lr = cfg.train.lr * min(1.0, step / (cfg.train.warmup_steps + 1))  # linear warm-up
            row, timing = train_step(run, optimizer, [pool[i] for i in chosen], chosen, generator,
                                     progress=(step - 1) / steps)
            if not math.isfinite(row["loss"]):  # fail the cell now: NaN weights would only score 0
                raise OpdbenchError(f"training diverged: the loss is {row['loss']} at step {step} "
                                    f"({cfg.method.name} on {cfg.task.name}, seed {cfg.seed})")
            row, timing = {"step": step, **row}, {"step": step, **timing}
            tokens += row["tokens"]
            if step % cfg.eval.every == 0 or step == steps:
                final, samples = _eval(run, run.student, False)
                final_scores = score_matrix(samples)
                curve.append((step, final))
                row.update({f"eval/{m}": v for m, v in final.items()})
            timing["wall_s"] = time.perf_counter() - start
            cell.append("metrics.jsonl", row)
            cell.append("timing.jsonl", {key: round(v, 4) if isinstance(v, float) else v for key, v in timing.items()})
            bar.set_postfix(kl=f"{row['kl_k1']:.3f}", score=f"{row['train_score']:.2f}",
                            **({f"mean@{k}": f"{final[f'mean@{k}']:.3f}"} if f"eval/mean@{k}" in row else {}))

        # The final eval twice: every generation, compressed (for reading), and the scores alone,
        # prompts x samples (for statistics: stats.cell_ci resamples prompts).
        results.write_jsonl_gz(cell.path("samples.jsonl.gz"), [{"step": steps, **r} for r in samples])
        results.write_json(cell.path("scores.json"), {"step": steps, "k": k, "scores": final_scores})
        summary = {
            "suite": cfg.suite, "method": cfg.method.name, "variant": cfg.variant, "task": cfg.task.name, "seed": cfg.seed,
            "budget": cfg.budget, "steps": steps,
            f"step0_mean@{k}": step0[f"mean@{k}"], f"step0_best@{k}": step0[f"best@{k}"],
            f"mean@{k}": final[f"mean@{k}"], f"best@{k}": final[f"best@{k}"],
            # the best eval after training began (a reference row has only step 0)
            f"max_mean@{k}": max(m[f"mean@{k}"] for _, m in curve[1:] or curve),
            f"max_best@{k}": max(m[f"best@{k}"] for _, m in curve[1:] or curve),
            f"auc_mean@{k}": area_under_curve([s for s, _ in curve], [m[f"mean@{k}"] for _, m in curve]),
            **({f"teacher_mean@{k}": teacher_eval[f"mean@{k}"], f"teacher_best@{k}": teacher_eval[f"best@{k}"]}
               if teacher_eval else {}),
            "student_tokens": tokens, "teacher_tokens": tokens * len(run.teachers) if steps else 0,
            "wall_s": round(time.perf_counter() - start, 2),
            "cached_evals": cached,
            "path": str(run.cell),
        }
        results.write_json(cell.path("provenance.json"), provenance.collect(  # last: every module is imported by now
            config_hash=hashlib.sha256(config_yaml.encode()).hexdigest(), code_hash=code_fingerprint(),
            code_modules=modules_in_use(), models=[cfg.models.student, *(cfg.method.teachers or cfg.models.teachers),
                                                   *([cfg.models.teacher_base] if reads_teacher_base(cfg.method) else [])]))
        cell.finish(summary)
    return summary

