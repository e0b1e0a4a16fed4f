"""The `opdbench` command.

    opdbench train method=k1 task=math seed=0 [Hydra overrides ...]
    opdbench train -m method=k1,k3_naive seed=0,1,2      (a quick local sweep, one cell after another)
    opdbench sweep suite=core [sweep.ray_address=auto] [sweep.cpus_per_cell=1] [overrides ...]
    opdbench leaderboard [--suite quick] [--root results/runs] [--out results]
    opdbench figures [--suite quick] [--root results/runs] [--out results/figures]
    opdbench eval [--harness opdbench|lm-eval] model=zoo:teacher task=math [eval.num_prompts=...]
    opdbench export lm-eval [TASK ...] [--out DIR] [--tokenizer SPEC]
    opdbench zoo build | zoo check | zoo rescore
    opdbench methods
    opdbench bench [METHOD ...] [--steps N] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import signal
import sys
import time
import warnings
from pathlib import Path

from .errors import OpdbenchError


def _quiet() -> None:
    """Keep the terminal for our progress bar and table: libraries' chatter goes away. Through the
    environment, read when transformers and huggingface_hub are imported (by whichever command
    needs them: importing transformers here would cost the leaderboard 2 s), and inherited by Ray's
    workers; a user's own setting wins."""
    for name, value in (("TOKENIZERS_PARALLELISM", "false"), ("TRANSFORMERS_VERBOSITY", "error"),
                        ("HF_HUB_DISABLE_PROGRESS_BARS", "1")):
        os.environ.setdefault(name, value)
    hf_logging = sys.modules.get("transformers.utils.logging")
    if hf_logging is not None:  # imported before main() (a caller's, a test's): it has read the environment
        hf_logging.set_verbosity(hf_logging.log_levels.get(os.environ["TRANSFORMERS_VERBOSITY"], hf_logging.ERROR))
        if os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1":
            hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore")
    logging.getLogger("torch").setLevel(logging.ERROR)


def _table(rows: list[tuple[str, ...]], numbers: bool = True) -> str:
    """Plain-text table; the first column left-aligned, the rest right-aligned when they hold numbers."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 or not numbers else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows)


def multirun(overrides: list[str]) -> list[list[str]]:
    """Hydra's sweep syntax (`seed=0,1,2`, `method=k1,k3_naive`, `seed=range(3)`), parsed by Hydra's
    own override parser and expanded to the cartesian product, in order."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise OpdbenchError(f"bad override: {str(err).splitlines()[0]}") from err
    choices = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override()
               else [o.input_line] for o in parsed]
    return [list(combo) for combo in itertools.product(*choices)]


def cmd_train(args) -> None:
    from .conf import load_config
    from .trainer import train

    runs = multirun(args.overrides) if args.multirun else [args.overrides]
    configs = [load_config(o) for o in runs]  # every cell's config checked before the first trains
    url = next((c.results_dir for c in configs if "://" in c.results_dir), None)
    if url:
        raise OpdbenchError(f"results_dir={url}: `opdbench train` writes to a local path; `opdbench sweep` "
                            "uploads finished cells to a URL")
    for cfg in configs:
        _report_cell(train(cfg), cfg.eval.k)


def _report_cell(s: dict, k: int) -> None:
    rows = [("", f"mean@{k}", f"best@{k}"),
            ("student, step 0", f"{s[f'step0_mean@{k}']:.3f}", f"{s[f'step0_best@{k}']:.3f}"),
            (f"student, step {s['steps']}", f"{s[f'mean@{k}']:.3f}", f"{s[f'best@{k}']:.3f}")]
    if f"teacher_mean@{k}" in s:
        rows.append(("teacher", f"{s[f'teacher_mean@{k}']:.3f}", f"{s[f'teacher_best@{k}']:.3f}"))
    print(f"\n{s['method']} on {s['task']}, seed {s['seed']}: {s['steps']} steps in {s['wall_s']:.1f} s")
    print(_table(rows))
    print(f"results: {s['path']}")


def _split(overrides: list[str], prefix: str) -> tuple[dict[str, str], list[str]]:
    """`prefix.key=value` overrides as a dict, and the rest."""
    own, rest = {}, []
    for o in overrides:
        key, sep, value = o.partition("=")
        if key.startswith(prefix) and sep:
            own[key[len(prefix):]] = value
        else:
            rest.append(o)
    return own, rest


def _duration(text: str) -> float:
    from .sweep import parse_duration
    return parse_duration(text)


def _bool(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise ValueError(f"{text!r} is not true or false")
    return text.lower() == "true"


def _at_least(kind, low: float, strictly: bool = False):
    """A parser of numbers of `kind` that refuses values below `low` (or equal to it, `strictly`)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number ({kind.__name__})") from None
        if value < low or (strictly and value == low):
            raise argparse.ArgumentTypeError(f"{text!r} is not {'above' if strictly else 'at least'} {low:g}")
        return value
    return parse


SWEEP_OPTIONS = {"ray_address": str, "num_cpus": _at_least(int, 1), "cpus_per_cell": _at_least(float, 0, strictly=True),
                 "gpus_per_cell": _at_least(float, 0), "time_limit": _duration, "plan": _bool, "reuse": _bool}


def cmd_sweep(args) -> None:
    from .sweep import suite_names, sweep

    options, rest = _split(args.overrides, "sweep.")
    suites = [o.partition("=")[2] for o in rest if o.startswith("suite=")]
    rest = [o for o in rest if not o.startswith("suite=")]
    suite = suites[-1] if suites else None
    if not suite:
        raise OpdbenchError(f"name a suite: opdbench sweep suite=NAME (one of {', '.join(suite_names())})")
    unknown = set(options) - set(SWEEP_OPTIONS)
    if unknown:
        raise OpdbenchError(f"unknown sweep option {sorted(unknown)[0]!r}; valid: {', '.join(SWEEP_OPTIONS)}")
    kwargs = {}
    for key, value in options.items():
        try:
            kwargs[key] = SWEEP_OPTIONS[key](value)
        except (ValueError, argparse.ArgumentTypeError) as err:
            raise OpdbenchError(f"bad sweep.{key}={value}: {err}") from err
    start = time.perf_counter()
    report = sweep(suite, rest, **kwargs)
    if "plan" in report:
        print(_plan_text(suite, report))
        return
    reused = f"{report['reused']} reused from another suite's identical run, " if report["reused"] else ""
    print(f"sweep {suite}: {report['cells']} cells, {report['skipped']} already complete, {reused}"
          f"{report['ran']} ran, {len(report['failed'])} failed, on {len(report['nodes'])} node(s), "
          f"in {time.perf_counter() - start:.0f} s")
    if report["left"]:
        print(f"sweep {suite}: {report['left']} cell(s) not started within sweep.time_limit; "
              "run the same command again to continue")
    if report["failed"]:
        for name, error in report["failed"]:
            print(f"  failed: {name}: {error}", file=sys.stderr)
        raise OpdbenchError(f"{len(report['failed'])} cell(s) failed; their errors are in "
                            f"<results_dir>/{suite}/**/seed=*.failed.json; run the sweep again to retry them")


def _plan_text(suite: str, report: dict) -> str:
    """What `sweep.plan=true` prints: the missing cells per task with their expected time."""
    slots = report["slots"]
    rows = [("task", "cells to run", "expected cell-hours", "of unknown duration")]
    by_task: dict[str, list] = {}
    for cell, seconds in report["plan"]:
        by_task.setdefault(cell.task, []).append(seconds)
    for task, expected in by_task.items():
        known = [s for s in expected if s is not None]
        rows.append((task, str(len(expected)), f"{sum(known) / 3600:.1f}", str(len(expected) - len(known))))
    total = sum(s for _, s in report["plan"] if s is not None)
    unknown = sum(s is None for _, s in report["plan"])
    reused = f", {report['reused']} to copy from another suite's identical run" if report["reused"] else ""
    lines = [f"sweep {suite}: {report['skipped']} of {report['cells']} cells complete{reused}, "
             f"{len(report['plan'])} to run (seed by seed, longest first)", _table(rows) if len(rows) > 1 else "",
             f"about {total / 3600 / slots:.1f} h at {slots} cell(s) at a time"
             + (f", not counting the {unknown} cell(s) of unknown duration (no complete cell of their task yet)"
                if unknown else "")
             + " (a cell's expected time: its method's slowest complete seed, else its task's median rate)"]
    if report["plan"]:
        lines.append(f"first: {', '.join(c.name for c, _ in report['plan'][:3])}")
    return "\n".join(line for line in lines if line)


def cmd_leaderboard(args) -> None:
    from .report.leaderboard import embed, readme_parts, write

    start = time.perf_counter()
    if args.readme:
        readme_parts(args.readme)  # a README without markers fails before the work, not after
    md, csv = write(args.root, args.suite, args.out)
    print(md.read_text())
    print(f"wrote {md} and {csv} in {time.perf_counter() - start:.1f} s")
    if args.readme:
        embed(args.readme, md.read_text())
        print(f"embedded it in {args.readme}")


def cmd_figures(args) -> None:
    from .report.figures import write

    for path in write(args.root, args.suite, args.out):
        print(f"wrote {path}")


def cmd_recheck(args) -> None:
    from .report.recheck import recheck

    found, lines = recheck(args.cells, write=args.record, jobs=args.jobs)
    if any(found.values()):
        raise OpdbenchError(f"{sum(map(bool, found.values()))} of {len(found)} cells came out differently: "
                            "today's code computes something else, so their suites need rerunning")
    for line in lines:
        print(f"recorded: {line['module']} {line['ran'][:12]} -> {line['today'][:12]} ({len(line['cells'])} cells)")
    if args.record and not lines:
        print("recorded nothing: no module these cells ran has changed in code")


def cmd_bench(args) -> None:
    from .bench import seconds_per_step
    from .conf import baseline_files
    from .report.leaderboard import reference_methods

    skipped = reference_methods()  # nothing to time: they train no step
    methods = args.methods or [m for m in baseline_files() if m not in skipped]
    methods = ["k1"] + [m for m in methods if m != "k1"]  # the yardstick first
    rows, k1 = [("method", "s/step", "x k1", "rollout", "teachers", "update")], None
    for method in methods:
        r = seconds_per_step(method, args.overrides, args.steps)
        k1 = k1 or r["s_per_step"]
        rows.append((method, f"{r['s_per_step']:.2f}", f"{r['s_per_step'] / k1:.2f}",
                     *(f"{r[k]:.2f}" for k in ("rollout_s", "teacher_s", "update_s"))))
        print(f"  {method}: {r['s_per_step']:.2f} s/step", file=sys.stderr, flush=True)
    print(_table(rows))


def cmd_eval(args) -> None:
    from .conf import load_config
    from .evaluate import evaluate
    from .tasks import make_task
    from .trainer import check_encodable
    from .zoo import load_model, load_tokenizer

    model_spec, overrides = "zoo:teacher", []
    for o in args.overrides:
        if o.startswith("model="):
            model_spec = o.split("=", 1)[1]
        else:
            overrides.append(o)
    cfg = load_config(overrides)
    e = cfg.eval
    task = make_task(cfg.task)
    tokenizer = load_tokenizer(model_spec)
    check_encodable(tokenizer, task, model_spec)
    started = time.perf_counter()
    if args.harness == "lm-eval":
        import datasets

        from .lm_eval_export import run_lm_eval

        datasets.disable_progress_bars()  # keep lm-eval's own progress bar only
        logging.getLogger("lm_eval").setLevel(logging.ERROR)
        scores, _ = run_lm_eval(cfg, model_spec)
    else:
        scores, _ = evaluate(load_model(model_spec), tokenizer, task, num_prompts=e.num_prompts,
                             n=e.n, k=e.k, temperature=e.temperature, top_p=e.top_p, seed=e.seed,
                             batch_size=e.batch_size, progress=True)
    print(f"{model_spec} on {task.name} via {args.harness} ({e.num_prompts} prompts × {e.n} samples, "
          f"{time.perf_counter() - started:.1f} s): " + "  ".join(f"{m} {v:.3f}" for m, v in scores.items()))


def cmd_export(args) -> None:
    from .conf import REPO_DIR, load_config, task_files
    from .lm_eval_export import DEFAULT_TOKENIZER, export_task
    from .tasks import REAL_TASKS

    out = args.out or REPO_DIR / "lm_eval_tasks"
    tiny = [name for name in task_files() if name not in REAL_TASKS]  # real tasks need their data: name them
    configs = [load_config([f"task={name}"]) for name in args.tasks or tiny]  # every name checked first
    for cfg in configs:
        print(f"{cfg.task.name}: {export_task(cfg, out, tokenizer_spec=args.tokenizer or DEFAULT_TOKENIZER)}")


def cmd_zoo(args) -> None:
    from . import zoo

    if args.action == "rescore":
        from .zoo.build import rescore

        rescore()
        print(f"scores rewritten in {zoo.MANIFEST}")
        return
    if args.action == "build":
        from .zoo.build import build

        started = time.perf_counter()
        build(jobs=args.jobs)
        print(f"zoo built in {zoo.ZOO_DIR} ({time.perf_counter() - started:.0f} s)")
        return
    manifest = zoo.manifest()
    if not manifest:
        raise OpdbenchError(f"no zoo manifest at {zoo.MANIFEST}; run `opdbench zoo build`")
    from .evaluate import evaluate
    from .zoo.build import load_tasks

    tasks = load_tasks()
    # Models trained to use privileged context (the OPSD student) are also scored with each
    # prompt's reference shown as context.
    ctx = [t for t in tasks if any(t.name in e.get("eval_with_context", {}) for e in manifest["models"].values())]
    rows = [("model", "params", "checksums", *(f"{t.name} {m}" for t in tasks for m in ("mean@8", "best@8")),
             *(f"{t.name}+context mean@8" for t in ctx))]
    bad = []
    for name, entry in manifest["models"].items():
        actual = zoo.checksums(zoo.ZOO_DIR / name) if (zoo.ZOO_DIR / name).is_dir() else {}
        ok = actual == entry["files"]
        if not ok:
            bad.append(name)
            rows.append((name, f"{entry['params']:,}", "MISMATCH", *("-" for _ in range(2 * len(tasks) + len(ctx)))))
            continue
        model, tokenizer = zoo.load_model(f"zoo:{name}"), zoo.load_tokenizer(f"zoo:{name}")
        cells = []
        for task in tasks:
            scores, _ = evaluate(model, tokenizer, task)
            cells += [f"{scores['mean@8']:.3f}", f"{scores['best@8']:.3f}"]
        for task in ctx:
            if task.name in entry.get("eval_with_context", {}):
                scores, _ = evaluate(model, tokenizer, task, context=True)
                cells.append(f"{scores['mean@8']:.3f}")
            else:
                cells.append("-")
        rows.append((name, f"{sum(p.numel() for p in model.parameters()):,}", "ok", *cells))
    print(_table(rows))
    if bad:
        raise OpdbenchError(f"checksum mismatch for {', '.join(bad)}; rebuild with `opdbench zoo build` "
                            "or restore the files with `git checkout opdbench/zoo/checkpoints`")


def cmd_methods(args) -> None:
    """Every baseline with its source and the knobs it sets, then every knob's registered values."""
    from omegaconf import OmegaConf

    from .conf import baseline_files
    from .conf.schema import MethodConfig
    from .feedback import KNOBS
    from .teachers import ENSEMBLES

    defaults = OmegaConf.structured(MethodConfig(name="?"))
    rows = [("method", "knobs (non-default)", "source")]
    for name, path in baseline_files().items():
        cfg = OmegaConf.merge(defaults, OmegaConf.load(path))
        knobs = {k: v for k, v in cfg.items() if k not in ("name", "source") and v != defaults.get(k)}
        rows.append((name, " ".join(f"{k}={_compact(v)}" for k, v in knobs.items()) or "(defaults: k1)", cfg.source))
    print(_table(rows, numbers=False))
    print("\nknob values (defaults first):")
    for knob, registry in {**KNOBS, "ensemble": ENSEMBLES}.items():
        default = defaults[knob]
        print(f"  {knob}: {', '.join([default] + sorted(v for v in registry if v != default))}")


def _compact(value) -> str:
    from omegaconf import OmegaConf

    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    return str(value).replace(" ", "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="opdbench", description="On-policy distillation benchmark")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train one cell: opdbench train method=k1 task=math seed=0 [overrides]")
    p.add_argument("-m", "--multirun", action="store_true",
                   help="Hydra multirun: expand comma-separated values (seed=0,1,2) and train every combination")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. train.lr=5e-4 budget=smoke")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("sweep", help="run a suite's cells as Ray tasks, skipping complete ones: opdbench sweep suite=core",
                       description="Suites: opdbench/conf/suites/*.yaml. Options: sweep.ray_address=auto (an existing "
                                   "cluster; default: a local one), sweep.num_cpus=N (local cluster size), "
                                   "sweep.cpus_per_cell=1, sweep.gpus_per_cell=0, sweep.time_limit=2h (start no cell "
                                   "that would overrun it), sweep.plan=true (run nothing: what is left, and its "
                                   "expected time), sweep.reuse=false (train cells another suite already ran "
                                   "identically). Other overrides apply to every cell.")
    p.add_argument("overrides", nargs="*", help="suite=NAME, sweep.* options and Hydra overrides for every cell")
    p.set_defaults(func=cmd_sweep)
    p = sub.add_parser("eval", help="score a model: opdbench eval model=zoo:teacher task=math")
    p.add_argument("--harness", choices=["opdbench", "lm-eval"], default="opdbench",
                   help="opdbench's own sampler (default), or lm-eval's `hf` model on the exported task (offline)")
    p.add_argument("overrides", nargs="*", help="model=<zoo:NAME|path|hub name> and Hydra overrides")
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser(
        "export", help="write tasks as lm-eval task folders: opdbench export lm-eval [TASK ...]",
        description="Write each task's eval split as an lm-eval task folder <out>/opdbench_<task>/ "
                    "(YAML, eval.jsonl with prompts rendered by the tokenizer's chat template, utils.py scoring "
                    "with the opdbench scorer). With no TASK, every tiny-tier task; the default --out "
                    "regenerates the shipped lm_eval_tasks/. Run them with: lm_eval --model hf --model_args "
                    "pretrained=PATH,add_bos_token=False --include_path lm_eval_tasks --tasks opdbench_math")
    p.add_argument("format", choices=["lm-eval"])
    p.add_argument("tasks", nargs="*", metavar="TASK", help="task names (default: the tiny-tier tasks)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: lm_eval_tasks/ in the repo)")
    p.add_argument("--tokenizer", default=None,
                   help="whose chat template renders the prompts (default: the zoo's, which every zoo model shares)")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("zoo", help="build or check the tiny model zoo")
    p.add_argument("action", choices=["build", "check", "rescore"],
                   help="build: train from scratch; check: verify checksums and print scores; "
                        "rescore: recompute the manifest's scores after a task's eval settings change")
    p.add_argument("--jobs", type=int, default=2, help="build: models trained at once, one thread each (default 2)")
    p.set_defaults(func=cmd_zoo)
    p = sub.add_parser("methods", help="list the registered baselines")
    p.set_defaults(func=cmd_methods)
    p = sub.add_parser("leaderboard", help="rebuild results/leaderboard.md and .csv from results/runs/ (no training)")
    p.add_argument("--suite", default="quick", help="which suite's cells (default: quick, README's main job)")
    p.add_argument("--root", default="results/runs", help="the results_dir the cells are in (default: results/runs)")
    p.add_argument("--out", default="results", help="where leaderboard.md and .csv go (default: results)")
    p.add_argument("--readme", help="also put it in this file between its leaderboard markers (README.md)")
    p.set_defaults(func=cmd_leaderboard)
    p = sub.add_parser("figures", help="paper figures (PNG, PDF) in results/figures/<suite>/ from results/runs/")
    p.add_argument("--suite", default="quick", help="which suite's cells (default: quick)")
    p.add_argument("--root", default="results/runs", help="the results_dir the cells are in (default: results/runs)")
    p.add_argument("--out", default="results/figures", help="output folder (default: results/figures)")
    p.set_defaults(func=cmd_figures)
    p = sub.add_parser("recheck", help="rerun committed cells with today's code; are their outputs the same?",
                       description="Rerun each cell as its suite's command would now (its thread count, a fresh "
                                   "evaluation cache) and compare config, metrics, scores, samples and summary with "
                                   "what it wrote. With --record, when all are the same, the leaderboard's stale "
                                   "check accepts every cell that ran those module versions (see report/recheck.py: "
                                   "choose cells that run the code you edited).")
    p.add_argument("cells", nargs="+", type=Path, help="cell folders, e.g. results/runs/core/k1/math/seed=0")
    p.add_argument("--record", action="store_true",
                   help="append today's module versions to opdbench/report/equivalent_code.jsonl (needs committed code)")
    p.add_argument("--jobs", type=_at_least(int, 1), default=1,
                   help="cells rerun at once, each in its own process (default 1; a cell's threads are its own)")
    p.set_defaults(func=cmd_recheck)
    p = sub.add_parser("bench", help="seconds per training step of each method, relative to k1")
    p.add_argument("methods", nargs="*", help="baselines to time (default: every training method)")
    p.add_argument("--steps", type=_at_least(int, 1), default=5, help="timed steps per method, after one warm-up step")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a Hydra override for every method, e.g. --set budget=smoke")
    p.set_defaults(func=cmd_bench)
    args = parser.parse_args(argv)
    _quiet()
    # A terminated run (kill, a scheduler's time limit) unwinds like Ctrl-C, so no staged cell survives.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        args.func(args)
    except OpdbenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no partial cell was kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
