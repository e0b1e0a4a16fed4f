"""Start-up of a tiny-tier cell: seconds from process start to its first training step.

Each run is a fresh `python` process that runs `opdbench train` as the CLI would, with
`trainer.train_step` wrapped to note the time at the start and the end of step 1 and then exit
(nothing is written but a `.partial` folder in a temporary directory). Times are read from the
kernel's record of the process's start (/proc/self/stat), so the interpreter's own start counts.
One run first warms the evaluation and task caches that the timed runs share, as a sweep's cells
would (the teacher's and step 0's evaluations, and the task's generated splits, are memoized after
the first cell of a task).
Also reports whether transformers and torch._dynamo were imported by then.

    python benchmarks/startup.py [--runs 3] [--tasks math code dialogue] [--out results/bench/startup.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import cpu_model  # benchmarks/machine.py

CHILD = r"""
import os, sys, json

def since_start():
    ticks = os.sysconf("SC_CLK_TCK")
    start = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19]) / ticks
    return float(open("/proc/uptime").read().split()[0]) - start

import opdbench.trainer as trainer

step = trainer.train_step

def first_step(*args, **kwargs):
    began = since_start()
    step(*args, **kwargs)
    print("STARTUP " + json.dumps({"to_first_step_s": round(began, 2), "first_step_done_s": round(since_start(), 2),
                                   "transformers": "transformers" in sys.modules,
                                   "torch._dynamo": "torch._dynamo" in sys.modules}), flush=True)
    os._exit(0)

trainer.train_step = first_step
from opdbench.cli import main
sys.argv = ["opdbench", "train", "method=k1", f"task={sys.argv[1]}", "threads=1", "progress=false",
            f"results_dir={sys.argv[2]}"]
main()
"""


def one_run(task: str, scratch: Path, cache: Path) -> dict:
    env = {**os.environ, "OPDBENCH_EVAL_CACHE": str(cache / "evals"), "OPDBENCH_TASK_CACHE": str(cache / "tasks")}
    out = subprocess.run([sys.executable, "-c", CHILD, task, str(scratch)], capture_output=True, text=True,
                         env=env, timeout=600)
    line = next((l for l in out.stdout.splitlines() if l.startswith("STARTUP ")), None)
    if line is None:
        raise SystemExit(f"the run did not reach its first step:\n{out.stderr[-2000:]}")
    return json.loads(line[len("STARTUP "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs, after one that warms the eval cache")
    parser.add_argument("--tasks", nargs="+", default=["math", "code", "dialogue"])
    parser.add_argument("--out", type=Path, default=Path("results/bench/startup.json"))
    args = parser.parse_args()
    report = {"threads": 1, "tasks": {},
              "machine": {"cpu": cpu_model(), "cpus": os.cpu_count()}}
    for task in args.tasks:
        with tempfile.TemporaryDirectory(prefix="opdbench-startup-") as tmp:
            cache = Path(tmp) / "cache"
            one_run(task, Path(tmp) / "warm", cache)
            runs = [one_run(task, Path(tmp) / f"run{i}", cache) for i in range(args.runs)]
        report["tasks"][task] = {"runs": runs, "median_to_first_step_s": statistics.median(r["to_first_step_s"] for r in runs)}
        for r in runs:
            print(f"{task}: to the first step {r['to_first_step_s']:.2f} s, through it {r['first_step_done_s']:.2f} s "
                  f"(transformers imported: {r['transformers']}, torch._dynamo: {r['torch._dynamo']})", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(", ".join(f"{t} {v['median_to_first_step_s']:.2f} s" for t, v in report["tasks"].items()), f"(medians) -> {args.out}")

if __name__ == "__main__":
    main()
