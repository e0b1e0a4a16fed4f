"""How fast a default-budget cell could be on this CPU: the matmul floor of every phase.

A step's arithmetic is its matrix products (linear layers, attention, their backward); everything
else (norms, softmax, sampling, the optimizer) is extra. This script records every matmul a k1 step
and an evaluation dispatch (op, shapes and strides, through a `TorchDispatchMode`), then times each
distinct call alone on tensors of the same layout, best of several repeats. Two floors follow:

- `isolated`: the sum of those best times, i.e. the step if it did nothing but its own matmuls,
  each at the speed MKL reaches on that shape alone with warm caches;
- `peak`: its FLOPs at the machine's best matmul rate (a large square `mm`).

It also counts every op each phase dispatches, so that what is not matmul is seen as a number of
calls and a cost per call (at these sizes, per-call overhead rather than arithmetic).

Next to them, the measured seconds of the same phases (`trainer.train_step`'s own timing, over
other steps of the same run: the FLOPs are averaged over the logged steps, and both report response
tokens per step). A cell's floor adds its evaluations (every `eval.every` steps and the last, plus
step 0 and the teacher's, which a sweep memoizes) at the student evaluation's floor.

    python benchmarks/roofline.py [--tasks math code dialogue] [--threads 1] [--steps 3]
                                  [--out results/bench/roofline.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from opdbench import bench, trainer

from machine import cpu_model  # benchmarks/machine.py

aten = torch.ops.aten
MATMULS = {aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default}
PHASES = {"rollout": "rollout", "score_all": "teachers", "update": "update"}  # trainer function -> phase


def layout(t: torch.Tensor) -> tuple:
    return ("T", tuple(t.shape), tuple(t.stride()), str(t.dtype))


def flops(call: tuple) -> int:
    """2·m·k·n per product (a bias or a beta·input adds m·n: not counted)."""
    shapes = [a[1] for a in call[1] if isinstance(a, tuple) and a[:1] == ("T",)]
    a, b = shapes[-2:]  # the two factors are the last tensor arguments of mm/addmm/bmm/baddbmm
    batch = a[0] if len(a) == 3 else 1
    return 2 * batch * a[-2] * a[-1] * b[-1]


class MatmulLog(TorchDispatchMode):
    """Counts each distinct matmul call per phase, {phase: Counter((op, args, kwargs))}, and every
    op the phase dispatches, {phase: count}."""

    def __init__(self):
        super().__init__()
        self.phase, self.calls, self.ops = None, {}, Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.phase is not None:
            self.ops[self.phase] += 1
            if func in MATMULS:
                key = (func, tuple(layout(a) if isinstance(a, torch.Tensor) else a for a in args),
                       tuple(sorted(kwargs.items())))
                self.calls.setdefault(self.phase, Counter())[key] += 1
        return func(*args, **kwargs)


def in_phase(log: MatmulLog, name: str, fn):
    def wrapped(*args, **kwargs):
        outer, log.phase = log.phase, name
        try:
            return fn(*args, **kwargs)
        finally:
            log.phase = outer
    return wrapped


def materialize(arg, generator: torch.Generator):
    """A tensor of the recorded shape, strides and dtype over random storage (strides may overlap)."""
    if not (isinstance(arg, tuple) and arg[:1] == ("T",)):
        return arg
    _, shape, stride, dtype = arg
    size = 1 + sum((n - 1) * s for n, s in zip(shape, stride)) if all(shape) else 0
    base = torch.randn(size, generator=generator, dtype=getattr(torch, dtype.split(".")[-1]))
    return base.as_strided(shape, stride)


def best_time(call: tuple, generator: torch.Generator, budget_s: float = 0.02) -> float:
    func, args, kwargs = call
    args, kwargs = [materialize(a, generator) for a in args], dict(kwargs)
    func(*args, **kwargs)  # warm
    best, spent, repeats = float("inf"), 0.0, 0
    while repeats < 5 or (spent < budget_s and repeats < 200):
        elapsed = _timed(lambda: func(*args, **kwargs))
        best, spent, repeats = min(best, elapsed), spent + elapsed, repeats + 1
    return best


def peak_gflops(n: int = 1536, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def floors(calls: Counter, ops: int, per: int, generator: torch.Generator, cache: dict, peak: float) -> dict:
    for call in calls:
        if call not in cache:
            cache[call] = best_time(call, generator)
    total_flops = sum(flops(c) * n for c, n in calls.items()) / per
    return {"ops": ops / per, "matmul_calls": sum(calls.values()) / per, "gflop": total_flops / 1e9,
            "isolated_s": sum(cache[c] * n for c, n in calls.items()) / per,
            "peak_s": total_flops / (peak * 1e9)}


def one_task(task: str, threads: int, steps: int, peak: float) -> dict:
    cfg, run, train_step = bench.stepper("k1", [f"task={task}", f"threads={threads}", "progress=false"])

    def step(n: int) -> tuple[dict, dict]:
        return train_step(progress=n / cfg.train.steps)

    step(0)  # warm-up: lazy initialization, the allocator
    timed = [step(n) for n in range(1, steps + 1)]
    measured = {phase: sum(t[f"{'teacher' if phase == 'teachers' else phase}_s"] for _, t in timed) / steps
                for phase in PHASES.values()}
    tokens_timed = sum(row["tokens"] for row, _ in timed) / steps
    start = time.perf_counter()
    trainer._eval(run, run.student, False)
    measured["eval"] = time.perf_counter() - start

    log, originals = MatmulLog(), {name: getattr(trainer, name) for name in PHASES}
    try:
        for name, phase in PHASES.items():
            setattr(trainer, name, in_phase(log, phase, originals[name]))
        with log:
            logged = [step(n) for n in range(steps + 1, 2 * steps + 1)]
            log.phase = "eval"
            trainer._eval(run, run.student, False)
            log.phase = None
    finally:
        for name, fn in originals.items():
            setattr(trainer, name, fn)

    cache, rng = {}, torch.Generator().manual_seed(0)
    result = {phase: {"measured_s": measured[phase],
                      **floors(log.calls.get(phase, Counter()), log.ops[phase], 1 if phase == "eval" else steps,
                               rng, cache, peak)}
              for phase in [*PHASES.values(), "eval"]}
    step_phases = list(PHASES.values())
    result["step"] = {key: sum(result[p][key] for p in step_phases)
                      for key in ["measured_s", "ops", "matmul_calls", "gflop", "isolated_s", "peak_s"]}
    n_steps, every = cfg.train.steps, cfg.eval.every
    evals = len({s for s in range(1, n_steps + 1) if s % every == 0 or s == n_steps}) + 2  # + step 0, teacher
    result["cell"] = {"steps": n_steps, "evals": evals,
                      **{key: n_steps * result["step"][key] + evals * result["eval"][key]
                         for key in ["measured_s", "isolated_s", "peak_s"]}}
    result["batch"] = {"prompts": cfg.train.batch_prompts, "samples": cfg.rollout.samples_per_prompt,
                       "response_tokens_timed": tokens_timed,
                       "response_tokens_logged": sum(row["tokens"] for row, _ in logged) / steps}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["math", "code", "dialogue"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("results/bench/roofline.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peak = peak_gflops()
    report = {"machine": f"{cpu_model()}, {os.cpu_count()} CPUs",
              "torch": torch.__version__, "threads": args.threads, "peak_gflops": peak, "tasks": {}}
    lines = [f"# The matmul floor of a default-budget k1 cell ({report['machine']}, torch {torch.__version__}, "
             f"{args.threads} thread(s))", "",
             f"Best square-matmul rate: {peak:.1f} GFLOP/s. Seconds; start-up (results/bench/startup.json) not "
             "included. `isolated`: the phase's matmuls alone, each timed on its own shapes; `at peak`: their "
             "FLOPs at the square-matmul rate; `all ops`: every aten call dispatched; `µs per other op`: "
             "(measured - isolated matmuls) / (all ops - matmul calls), what the rest costs a call.", "",
             "| task | phase | measured | isolated matmuls | at peak | GFLOP | matmul calls | all ops "
             "| µs per other op |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    print("\n".join(lines), flush=True)
    for task in args.tasks:
        first = len(lines)
        report["tasks"][task] = r = one_task(task, args.threads, args.steps, peak)
        for phase in [*PHASES.values(), "step", "eval"]:
            p = r[phase]
            lines.append(f"| {task} | {phase} | {p['measured_s']:.3f} | {p['isolated_s']:.3f} | {p['peak_s']:.3f} "
                         f"| {p['gflop']:.2f} | {p['matmul_calls']:.0f} | {p['ops']:.0f} "
                         f"| {1e6 * (p['measured_s'] - p['isolated_s']) / (p['ops'] - p['matmul_calls']):.1f} |")
        c = r["cell"]
        lines.append(f"| {task} | cell ({c['steps']} steps, {c['evals']} evals) | {c['measured_s']:.1f} "
                     f"| {c['isolated_s']:.1f} | {c['peak_s']:.1f} | | | | |")
        print("\n".join(lines[first:]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
