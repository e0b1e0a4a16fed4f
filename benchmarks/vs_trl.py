"""Seconds per training step: TRL's GKD trainer against opdbench on the same work.

The work of one step, for every contender: 32 math prompts from opdbench's train split (the same
batches `opdbench.bench.seconds_per_step` draws, rendered by `opdbench.chat.encode_prompt`), one
sample each, up to 32 new tokens at temperature 1 (no top-k / top-p, stopping at EOS), the
teacher's scores, the loss, backward and an AdamW step, fp32 on the CPU. Student: the shipped zoo
student (~155k parameters). Teacher: a randomly initialised, seeded Llama with the zoo's tokenizer
(hidden 128, MLP 512, 4 layers, 4 heads: ~1.07M parameters), saved to a temporary folder so that
every contender loads the same files.

- `trl_gkd`: `trl.experimental.gkd.GKDTrainer`, lmbda=1 (every step on student rollouts), beta=1.
  TRL's beta is the weight of the teacher in the mixture: beta=1 computes
  sum_v p_student (log p_student - log p_teacher), the reverse KL(student || teacher) over the
  full vocabulary; beta=0 is the forward KL. Timed from `on_step_begin` to `on_step_end` (rollout,
  teacher, loss, backward, clipping, optimizer step; the collator runs before `on_step_begin`);
  `interval` is end-to-end between consecutive steps, which adds collation and the loop's overhead.
- `opdbench_k1`, `opdbench_gkd_rkl`: `opdbench.bench.seconds_per_step` for methods k1
  (sampled-token REINFORCE) and gkd_rkl (full-vocabulary reverse KL: the same divergence as TRL's
  beta=1); each step is timed by wrapping `opdbench.trainer.train_step`.
- `hand_k1`: a minimal loop: transformers' `generate` (do_sample) on the student, one teacher
  forward, a k1 REINFORCE loss (advantage log p_teacher - log p_student of the sampled token) and
  AdamW: what the work costs in plain transformers without a trainer.

Each round runs every contender once from a freshly loaded student, in an order that rotates
between rounds, so all see the same machine load. TRL and the hand loop warm up on 2 steps
(opdbench's bench on 1) and then run the same `--steps` batches as opdbench. Reported: the median
over every timed step of every round, the per-step times and each round's mean.

    python benchmarks/vs_trl.py [--threads 2] [--steps 12] [--rounds 3] [--out results/bench/vs_trl.json]

Needs TRL: `pip install -e ".[bench]"`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import torch

from machine import cpu_model  # benchmarks/machine.py

PROMPTS, NEW_TOKENS, SEED, LR = 32, 32, 0, 1e-3
TEACHER_SHAPE = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                     num_attention_heads=4, num_key_value_heads=4, head_dim=32)
WARMUP = 2  # TRL and hand-loop steps discarded before timing
REFERENCE_CLAIM = {"trl_gkd": 0.093, "hand_k1": 0.082}  # s/step at 2 threads, the claim this reproduces


def opdbench_overrides(student: str, teacher: str, threads: int) -> list[str]:
    return [f"models.student={student}", f"models.teachers=[{teacher}]", f"train.batch_prompts={PROMPTS}",
            "rollout.samples_per_prompt=1", "task=math", f"task.params.max_new_tokens={NEW_TOKENS}",
            f"threads={threads}", "eval.teacher_reference=false", f"seed={SEED}", f"train.lr={LR}"]


def make_teacher(student: Path, folder: Path) -> None:
    """A seeded random Llama of TEACHER_SHAPE with the student's tokenizer and chat template."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig.from_pretrained(student)
    for key, value in TEACHER_SHAPE.items():
        setattr(config, key, value)
    torch.manual_seed(SEED)
    LlamaForCausalLM(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(student).save_pretrained(folder)


def prompt_indices(task, steps: int) -> list[list[int]]:
    """The train-split prompts `opdbench.bench.seconds_per_step` uses at each of its steps (its
    warm-up step first), drawn with the same seeded generator."""
    rng = random.Random(SEED)
    return [rng.sample(range(len(task.examples("train"))), PROMPTS) for _ in range(steps + 1)]


def prompt_batches(task, tokenizer, steps: int) -> list[list[list[int]]]:
    """Token ids of `prompt_indices`, as opdbench renders them."""
    from opdbench.chat import encode_prompt

    pool = task.examples("train")
    return [[encode_prompt(tokenizer, pool[i].prompt) for i in batch] for batch in prompt_indices(task, steps)]


def run_opdbench(method: str, overrides: list[str], steps: int) -> dict:
    from opdbench import bench, trainer

    times, tokens = [], []
    train_step = trainer.train_step

    def timed(*args, **kwargs):
        start = time.perf_counter()
        row, timing = train_step(*args, **kwargs)
        times.append(time.perf_counter() - start)
        tokens.append(row["tokens"])
        return row, timing

    trainer.train_step = timed
    try:
        result = bench.seconds_per_step(method, overrides, steps)
    finally:
        trainer.train_step = train_step
    return {"per_step": times[1:], "tokens": tokens[1:],
            "phases": {k: result[k] for k in ("rollout_s", "teacher_s", "update_s")}}


def run_trl(student: Path, teacher: Path, tokenizer, task, steps: int, workdir: Path) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    class Clock(TrainerCallback):
        def __init__(self):
            self.begins, self.ends = [], []

        def on_step_begin(self, args, state, control, **kwargs):
            self.begins.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.perf_counter())

    class CountingGKDTrainer(GKDTrainer):
        """GKDTrainer that also records how many response tokens (up to and including EOS) each
        rollout kept, to check that every contender does the same amount of work."""

        def generate_on_policy_outputs(self, model, inputs, generation_config):
            ids, mask, labels = GKDTrainer.generate_on_policy_outputs(model, inputs, generation_config)
            self.tokens.append(int((labels != -100).sum()))
            return ids, mask, labels

    # Batches: opdbench's warm-up batch, then its warm-up and timed batches, so the timed steps see
    # exactly opdbench's timed prompts. GKD's collator (DataCollatorForChatML) wants a `messages`
    # conversation ending in an assistant turn: it renders messages[:-1] with the generation prompt
    # as the prompt (the same text as opdbench.chat.render_prompt) and, with lmbda=1, replaces
    # the assistant turn by the student's rollout; the reference response fills it.
    pool, chosen = task.examples("train"), prompt_indices(task, steps)
    chosen = [chosen[0]] * (WARMUP - 1) + chosen  # WARMUP steps on opdbench's warm-up batch
    rows = [[{"role": "user", "content": pool[i].prompt}, {"role": "assistant", "content": pool[i].reference}]
            for batch in chosen for i in batch]
    config = GKDConfig(
        output_dir=str(workdir), lmbda=1.0, beta=1.0, temperature=1.0, max_new_tokens=NEW_TOKENS,
        per_device_train_batch_size=PROMPTS, max_steps=len(chosen), learning_rate=LR,
        lr_scheduler_type="constant", train_sampling_strategy="sequential", use_cpu=True, bf16=False,
        fp16=False, report_to=[], save_strategy="no", eval_strategy="no", logging_strategy="no",
        disable_tqdm=True, dataloader_num_workers=0, seed=SEED)
    clock = Clock()
    trl_trainer = CountingGKDTrainer(
        model=AutoModelForCausalLM.from_pretrained(student, dtype=torch.float32),
        teacher_model=AutoModelForCausalLM.from_pretrained(teacher, dtype=torch.float32),
        args=config, train_dataset=Dataset.from_dict({"messages": rows}), processing_class=tokenizer,
        callbacks=[clock])
    trl_trainer.tokens = []
    first = trl_trainer.data_collator([{"messages": m} for m in rows[:PROMPTS]])
    expected = prompt_batches(task, tokenizer, 0)[0]
    got = [ids[mask.bool()].tolist() for ids, mask in zip(first["prompts"], first["prompt_attention_mask"])]
    assert got == expected, "TRL's collator tokenized the prompts differently from opdbench.chat.encode_prompt"
    trl_trainer.train()
    return {"per_step": [e - b for b, e in zip(clock.begins, clock.ends)][WARMUP:],
            "interval": [b - a for a, b in zip(clock.ends, clock.ends[1:])][WARMUP - 1:],
            "tokens": trl_trainer.tokens[WARMUP:]}


def run_hand(student: Path, teacher: Path, tokenizer, batches: list[list[list[int]]]) -> dict:
    """`batches`: opdbench's warm-up batch, then its timed ones; the warm-up one runs WARMUP times."""
    from transformers import AutoModelForCausalLM, GenerationConfig

    model = AutoModelForCausalLM.from_pretrained(student, dtype=torch.float32).train()
    scorer = AutoModelForCausalLM.from_pretrained(teacher, dtype=torch.float32).eval()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    generation = GenerationConfig(do_sample=True, max_new_tokens=NEW_TOKENS, temperature=1.0, top_k=0,
                                  top_p=1.0, eos_token_id=eos, pad_token_id=pad)
    torch.manual_seed(SEED)
    times, tokens = [], []
    for prompts in [batches[0]] * (WARMUP - 1) + batches:
        start = time.perf_counter()
        width = max(map(len, prompts))
        prompt_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
        prompt_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        with torch.no_grad():
            sequences = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, generation_config=generation)
        response = sequences[:, width:]
        ended = (response == eos).long().cumsum(-1)
        response_mask = ((ended == 0) | ((ended == 1) & (response == eos))).float()  # up to and including EOS
        attention = torch.cat([prompt_mask, response_mask.long()], 1)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)

        def response_logp(m):
            logits = m(input_ids=sequences, attention_mask=attention, position_ids=positions).logits
            return logits[:, width - 1:-1].log_softmax(-1).gather(-1, response[..., None]).squeeze(-1)

        with torch.no_grad():
            teacher_logp = response_logp(scorer)
        student_logp = response_logp(model)
        advantage = (teacher_logp - student_logp).detach()  # k1: -log(p_student / p_teacher)
        loss = -(advantage * student_logp * response_mask).sum() / response_mask.sum()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        times.append(time.perf_counter() - start)
        tokens.append(int(response_mask.sum()))
    return {"per_step": times[WARMUP:], "tokens": tokens[WARMUP:]}


def summary(rounds: list[dict]) -> dict:
    per_step = [t for r in rounds for t in r["per_step"]]
    tokens = [n for r in rounds for n in r["tokens"]]
    out = {"median_s_per_step": statistics.median(per_step), "mean_s_per_step": statistics.fmean(per_step),
           "round_means_s": [statistics.fmean(r["per_step"]) for r in rounds],
           "loadavg_1m_at_round_start": [r["loadavg_1m"] for r in rounds],
           "mean_response_tokens_per_step": statistics.fmean(tokens), "per_step_s": per_step}
    if "interval" in rounds[0]:
        out["median_interval_s"] = statistics.median(t for r in rounds for t in r["interval"])
    if "phases" in rounds[0]:
        out["phases_s"] = {k: statistics.fmean(r["phases"][k] for r in rounds) for k in rounds[0]["phases"]}
    return out


def benchmark(threads: int, steps: int, rounds: int, student: Path, teacher: Path, workdir: Path) -> dict:
    from opdbench.conf import load_config
    from opdbench.tasks import make_task
    from transformers import AutoTokenizer

    torch.set_num_threads(threads)
    overrides = opdbench_overrides(str(student), str(teacher), threads)
    task = make_task(load_config(overrides).task)
    tokenizer = AutoTokenizer.from_pretrained(student)
    batches = prompt_batches(task, tokenizer, steps)
    contenders = {
        "trl_gkd": lambda: run_trl(student, teacher, tokenizer, task, steps, workdir),
        "opdbench_k1": lambda: run_opdbench("k1", overrides, steps),
        "opdbench_gkd_rkl": lambda: run_opdbench("gkd_rkl", overrides, steps),
        "hand_k1": lambda: run_hand(student, teacher, tokenizer, batches),
    }
    names, results = list(contenders), {name: [] for name in contenders}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            torch.set_num_threads(threads)
            load = os.getloadavg()[0]  # the machine is shared: record how busy it was
            results[name].append({**contenders[name](), "loadavg_1m": load})
            print(f"threads={threads} round {r + 1}/{rounds} {name}: "
                  f"{statistics.median(results[name][-1]['per_step']) * 1e3:.1f} ms/step", flush=True)
    stats = {name: summary(rs) for name, rs in results.items()}
    med = {name: s["median_s_per_step"] for name, s in stats.items()}
    ratios = {"trl_gkd/opdbench_gkd_rkl": med["trl_gkd"] / med["opdbench_gkd_rkl"],
              "trl_gkd/opdbench_k1": med["trl_gkd"] / med["opdbench_k1"],
              "hand_k1/opdbench_k1": med["hand_k1"] / med["opdbench_k1"],
              "trl_gkd/hand_k1": med["trl_gkd"] / med["hand_k1"]}
    return {"threads": threads, "contenders": stats, "ratios": ratios}


def write_markdown(report: dict, path: Path) -> None:
    m = report["machine"]
    lines = ["# TRL GKD vs opdbench: seconds per training step", "",
             f"{m['cpu']}, {m['cpus']} CPUs; torch {report['versions']['torch']}, transformers "
             f"{report['versions']['transformers']}, trl {report['versions']['trl']}. Student "
             f"{report['models']['student_params']:,} params, teacher {report['models']['teacher_params']:,}; "
             f"{PROMPTS} prompts x 1 sample x up to {NEW_TOKENS} new tokens, fp32. Median over "
             f"{report['rounds']} rounds x {report['steps']} steps (alternating).", ""]
    for result in report["results"]:
        loads = [x for s in result["contenders"].values() for x in s["loadavg_1m_at_round_start"]]
        lines += [f"## {result['threads']} thread(s)", "",
                  "| contender | median ms/step | round means (ms) | response tokens/step | reference claim (ms) |",
                  "|---|---:|---|---:|---:|"]
        for name, s in result["contenders"].items():
            claim = REFERENCE_CLAIM.get(name) if result["threads"] == 2 else None
            lines.append(f"| {name} | {s['median_s_per_step'] * 1e3:.1f} | "
                         f"{', '.join(f'{t * 1e3:.0f}' for t in s['round_means_s'])} | "
                         f"{s['mean_response_tokens_per_step']:.0f} | {f'{claim * 1e3:.0f}' if claim else ''} |")
        lines += ["", "Ratios of medians: " + ", ".join(f"{k} = {v:.2f}" for k, v in result["ratios"].items()),
                  f"TRL end-to-end interval (adds collation): "
                  f"{result['contenders']['trl_gkd']['median_interval_s'] * 1e3:.1f} ms/step.",
                  f"1-min load average at the start of each run: {min(loads):.1f} to {max(loads):.1f} "
                  f"on {m['cpus']} CPUs.", ""]
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[2], help="one benchmark per value")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per contender per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("results/bench/vs_trl.json"))
    args = parser.parse_args()

    import transformers
    from transformers import AutoModelForCausalLM

    import opdbench

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    student = Path(opdbench.__file__).parent / "zoo" / "checkpoints" / "student"
    with tempfile.TemporaryDirectory() as tmp:
        teacher, workdir = Path(tmp) / "teacher", Path(tmp) / "trl"
        make_teacher(student, teacher)
        params = {name: sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(path).parameters())
                  for name, path in (("student_params", student), ("teacher_params", teacher))}
        print(f"student {params['student_params']:,} params, teacher {params['teacher_params']:,} params")
        results = [benchmark(t, args.steps, args.rounds, student, teacher, workdir) for t in args.threads]
    report = {
        "compared": __doc__.split("\n\n")[1].replace("\n", " "),
        "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_after": os.getloadavg()},
        "versions": {p: version(p) for p in ("torch", "transformers", "trl", "accelerate", "opdbench")},
        "models": {**params, "teacher_shape": TEACHER_SHAPE},
        "work": {"prompts": PROMPTS, "samples_per_prompt": 1, "max_new_tokens": NEW_TOKENS, "temperature": 1.0,
                 "dtype": "float32", "task": "math (train split)", "lr": LR},
        "trl_settings": {"lmbda": 1.0, "beta": 1.0, "beta_meaning": "beta=1: KL(student || teacher), reverse KL"},
        "steps": args.steps, "rounds": args.rounds, "warmup_steps": {"trl_gkd": WARMUP, "hand_k1": WARMUP, "opdbench": 1},
        "reference_claim_s_per_step_2_threads": REFERENCE_CLAIM,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report, args.out.with_suffix(".md"))
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
