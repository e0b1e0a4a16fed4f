"""`opdbench sweep suite=NAME`: a suite's cells (method × task × seed × overrides) run as Ray tasks.

A suite is `opdbench/conf/suites/NAME.yaml`:

    methods: [k1, k3_naive]     trained on every task, every seed
    references: [student_base]  scored once per task (the first seed): they do not train, every seed is the same
    tasks: [math, code]
    seeds: [0, 1, 2]
    overrides: []               Hydra overrides for every cell of the suite
    variants:                   hyperparameter sweeps: more cells of one method, one per override set
      - {method: k1, tasks: [math], overrides: [[train.lr=5e-4], [train.lr=2e-3]]}

Resuming is free: a cell is complete once its folder holds summary.json (the trainer publishes a
cell atomically), so a sweep run again runs only what is missing, and a cell killed half-way left
nothing behind. `sweep.time_limit=2h` (or `90m`, `5400`) ends a sweep within a time slot (a batch
job's wall limit, a working session): it starts no cell once the time is up, and near the end none
whose expected duration would overrun it (taken from the suite's complete cells: the slowest seed of
the same method, variant and task, else the task's median seconds per sampled token), so cells in flight
finish in time instead of being killed half-way; the rest wait for the next run. A cell another
suite of the same results_dir has run with the same config (but for the suite's name) and today's
code is copied in, not trained again (`identical_runs`; `sweep.reuse=false` turns it off). A failing cell
(an exception, a NaN loss) writes `seed=<s>.failed.json` beside its folder; the others go on, and
the sweep exits non-zero listing the failures.

`results_dir` is a path (shared by every node, e.g. NFS, when the cluster has several) or an
fsspec URL (`s3://bucket/runs`, `gs://...`, even `file:///...`): with a URL each worker trains its
cell in a local scratch folder and uploads the finished cell, summary.json last, so a cell in the
store is complete exactly when it has one, as on a local disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import posixpath
import shutil
import statistics
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from . import results
from .conf import CONF_DIR, load_config
from .errors import OpdbenchError

SUITES_DIR = CONF_DIR / "suites"
CELL_KEYS = ("method", "task", "seed", "suite", "variant")  # what a cell sets: not a sweep-wide override


@dataclass(frozen=True)
class Cell:
    method: str
    task: str
    seed: int
    overrides: tuple[str, ...] = ()  # a variant's own overrides; its label names its results folder

    @property
    def variant(self) -> str:
        return ",".join(self.overrides)

    @classmethod
    def of_variant(cls, method: str, task: str, seed: int, variant: str) -> "Cell":
        """The cell whose `variant` label this is: the label split at its top-level commas (a
        value such as `[zoo:a,zoo:b]` keeps its own)."""
        overrides, depth, start = [], 0, 0
        for i, char in enumerate(variant):
            depth += {"[": 1, "{": 1, "(": 1, "]": -1, "}": -1, ")": -1}.get(char, 0)
            if char == "," and depth == 0:
                overrides.append(variant[start:i])
                start = i + 1
        return cls(method, task, seed, tuple([*overrides, variant[start:]] if variant else ()))

    @property
    def name(self) -> str:
        return f"{results.method_dir(self.method, self.variant)}/{self.task}/seed={self.seed}"

    def hydra_overrides(self, suite: str, common: list[str]) -> list[str]:
        own = [f'variant="{self.variant}"'] if self.overrides else []  # quoted: it holds "=" and brackets
        return [f"method={self.method}", f"task={self.task}", f"seed={self.seed}", f"suite={suite}",
                *common, *own, *self.overrides]


def suite_names() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def expand(suite: str) -> tuple[list[Cell], list[str]]:
    """The suite's cells and its common overrides."""
    path = SUITES_DIR / f"{suite}.yaml"
    if not path.exists():
        raise OpdbenchError(f"unknown suite {suite!r}; valid: {', '.join(suite_names())}")
    spec = OmegaConf.to_container(OmegaConf.load(path))
    unknown = set(spec) - {"methods", "references", "tasks", "seeds", "overrides", "variants"}
    if unknown:
        raise OpdbenchError(f"suite {suite}: unknown keys {sorted(unknown)} in {path}")
    tasks, seeds = spec.get("tasks", []), spec.get("seeds", [0])
    if not seeds:
        raise OpdbenchError(f"suite {suite}: `seeds` is empty in {path}")
    cells = [Cell(m, t, s) for m, t, s in itertools.product(spec.get("methods", []), tasks, seeds)]
    cells += [Cell(m, t, seeds[0]) for m, t in itertools.product(spec.get("references", []), tasks)]
    for v in spec.get("variants", []):
        _check_variant(v, suite, path)
        for overrides, task, seed in itertools.product(v["overrides"], v.get("tasks", tasks), v.get("seeds", seeds)):
            cells.append(Cell(v["method"], task, seed, tuple(overrides)))
    if len(set(cells)) != len(cells):
        raise OpdbenchError(f"suite {suite}: a cell is listed twice in {path}")
    return cells, list(spec.get("overrides", []))


def _check_variant(variant, suite: str, path: Path) -> None:
    """A variant is {method, overrides: a list of override lists, and optionally tasks, seeds}."""
    example = "e.g. {method: k1, tasks: [math], overrides: [[train.lr=5e-4], [train.lr=2e-3]]}"
    if not isinstance(variant, dict) or "method" not in variant or "overrides" not in variant:
        raise OpdbenchError(f"suite {suite}: a variant needs `method` and `overrides` ({example}) in {path}")
    unknown = set(variant) - {"method", "overrides", "tasks", "seeds"}
    if unknown:
        raise OpdbenchError(f"suite {suite}: unknown variant keys {sorted(unknown)} (valid: method, overrides, "
                            f"tasks, seeds) in {path}")
    if not all(isinstance(o, list) for o in variant["overrides"]):
        raise OpdbenchError(f"suite {suite}: a variant's `overrides` is a list of override lists, one per cell "
                            f"({example}) in {path}")
    if variant.get("seeds") == []:
        raise OpdbenchError(f"suite {suite}: a variant of {variant['method']} has no seeds in {path}")


def schedule(cells: list[Cell], costs: dict[Cell, float]) -> list[Cell]:
    """Seed by seed, longest first within a seed: a sweep that spans sessions has every method's
    seed 0 (a whole, if narrower, leaderboard) before any seed 1, and the makespan stays close to
    the ideal (at most about one cell of idle time at each seed's end)."""
    return sorted(cells, key=lambda c: (c.seed, -costs[c]))


def _cost(cfg) -> float:
    """Tokens a cell may sample in training (a composed config, or a cell's resolved config.yaml)."""
    steps = cfg["train"]["steps"] if cfg["method"]["kind"] == "train" else 0
    return ((1 + steps) * cfg["train"]["batch_prompts"] * cfg["rollout"]["samples_per_prompt"]
            * cfg["task"]["params"].get("max_new_tokens", 1))


def _costs(cells: list[Cell], suite: str, common: list[str]) -> dict[Cell, float]:
    """Each cell's `_cost`, for ordering and time estimates. Composing every config first also
    stops a typo in a suite before anything runs. Seeds share a config: one composition each."""
    costs, by_config = {}, {}
    for cell in cells:
        key = (cell.method, cell.task, cell.overrides)
        if key not in by_config:
            by_config[key] = _cost(load_config(cell.hydra_overrides(suite, common)))
        costs[cell] = by_config[key]
    return costs


class Durations:
    """Expected seconds of a cell, from the complete cells of its suite (their summary's wall_s):
    the slowest seed of the same method, variant and task; else the task's median seconds per
    sampled token times the cell's tokens; else None (nothing known yet)."""

    def __init__(self, costs: dict[Cell, float]):
        self.costs = costs
        self.walls: dict[tuple, list[float]] = {}  # (method, variant, task) -> wall_s of its complete seeds
        self.rates: dict[str, list[float]] = {}  # task -> seconds per token of its complete cells

    def add(self, cell: Cell, wall_s: float, cost: float) -> None:
        self.walls.setdefault((cell.method, cell.overrides, cell.task), []).append(wall_s)
        self.rates.setdefault(cell.task, []).append(wall_s / max(cost, 1))

    def add_folder(self, cell: Cell, folder: str) -> None:
        """A complete cell on disk or in a store (its summary.json and resolved config.yaml)."""
        import fsspec

        fs, path = fsspec.core.url_to_fs(folder)
        summary = json.loads(fs.cat_file(f"{path}/summary.json"))
        config = yaml_load(fs.cat_file(f"{path}/config.yaml"))
        self.add(cell, summary["wall_s"], _cost(config))

    def __call__(self, cell: Cell) -> float | None:
        seeds = self.walls.get((cell.method, cell.overrides, cell.task))
        if seeds:
            return max(seeds)
        rates = self.rates.get(cell.task)
        return statistics.median(rates) * self.costs[cell] if rates else None


def next_cell(queue: list[Cell], seconds_left: float | None, durations) -> Cell | None:
    """The first cell in schedule order that fits in the time left (None: no limit), or None.
    A cell of unknown duration fits while any time is left."""
    if seconds_left is not None and seconds_left <= 0:
        return None
    for cell in queue:
        expected = None if seconds_left is None else durations(cell)
        if expected is None or expected <= seconds_left:
            return cell
    return None


def expected_left(durations, queue: list[Cell], running: list[tuple[Cell, float]] = (), n_slots: int = 1) -> float | None:
    """Seconds until the `queue` and the `running` cells (each with the seconds it has run) are done,
    `n_slots` at a time: their expected work over the slots, and never less than the longest one
    still to run. A cell whose duration is not known yet counts as the median of those that are;
    None while none is."""
    remaining = [durations(c) for c in queue] + [None if (d := durations(c)) is None else max(0.0, d - ran)
                                                 for c, ran in running]
    known = [d for d in remaining if d is not None]
    if not known:
        return 0.0 if not remaining else None
    typical = statistics.median(known)
    remaining = [typical if d is None else d for d in remaining]
    return max(sum(remaining) / n_slots, max(remaining))


def readable_duration(seconds: float) -> str:
    """A duration in the unit it reads best in: `45 s`, `12 min`, `5.1 h`."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def slots(cpus: float, gpus: float, cpus_per_cell: float, gpus_per_cell: float) -> int:
    """How many cells run at once on this many CPUs and GPUs (0.5 GPU a cell: two a GPU)."""
    n = max(1, int(cpus // max(cpus_per_cell, 1e-9)))
    return max(1, min(n, int(gpus // gpus_per_cell))) if gpus_per_cell > 0 else n


def parse_duration(text: str) -> float:
    """Seconds of `5400`, `90m`, `1.5h` or `45s`."""
    units = {"s": 1, "m": 60, "h": 3600}
    text = str(text).strip().lower()
    try:
        return float(text[:-1]) * units[text[-1]] if text[-1:] in units else float(text)
    except ValueError:
        raise ValueError(f"time_limit={text!r}: give seconds, or a number with s, m or h (e.g. 90m)") from None


@contextlib.contextmanager
def exclusive(path: Path, wait: bool = True):
    """Hold an exclusive lock on the file `path` for the block (which gets True; with `wait=False`,
    False at once if another process holds it); the file is created for it and removed after. The
    kernel releases the lock of a process that dies, so a killed holder never leaves a cell locked."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            yield False
            return
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder before us removed the file we waited on: lock the one there now
    try:
        yield True
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def identical_runs(root: Path, suite: str, cells: list[Cell], common: list[str], copy: bool = True) -> list[Cell]:
    """The `cells` whose run is already complete in another suite of `root`: the same method,
    variant, task and seed, a config that differs from this one's only in its suite's name (and where
    and how fast it ran: leaderboard.RUN_KEYS), and code and checkpoints unchanged since (what the
    leaderboard's stale mark checks). The suite is a label only (the trainer names the folder and
    the summary with it), so training it again would give the same bytes. With `copy`, each is
    copied in as a cell of this suite: the config it would have run with, its provenance with
    `reused_from` and the config's hash, its summary relabelled; its metrics, samples, scores and
    timing as they are."""
    from .report.leaderboard import Composed, Today

    others = sorted(p for p in root.iterdir() if p.is_dir() and p.name != suite) if root.is_dir() else []
    today, composed, found = Today(), Composed(), []
    for cell in cells:
        for other in others:
            source = other / cell.name
            if not (source / "summary.json").exists():
                continue
            config = yaml_load((source / "config.yaml").read_text())
            provenance = json.loads((source / "provenance.json").read_text())
            if today.changed_under(config, provenance, cell.hydra_overrides(other.name, common), composed):
                continue
            if copy and not _copy_cell(source, root, suite, cell, cell.hydra_overrides(suite, common)):
                break  # another process holds the cell (or has completed it)
            found.append(cell)
            break
    composed.save()
    return found


def yaml_load(text: str | bytes) -> dict:
    """A cell's config.yaml (plain YAML: OmegaConf wrote it), with PyYAML's C loader where it has
    one: 20x faster than OmegaConf.load, to the same dict."""
    import yaml
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _copy_cell(source: Path, root: Path, suite: str, cell: Cell, overrides: list[str]) -> bool:
    """Publish `source`'s run as `cell` of `suite` (atomically, under the cell's lock); False when
    another process holds the cell or has completed it."""
    import hashlib

    target = root / suite / cell.name
    with exclusive(target.with_name(f".{target.name}.lock"), wait=False) as ours:
        if not ours or (target / "summary.json").exists():
            return False
        config_yaml = OmegaConf.to_yaml(load_config(overrides), resolve=True)  # as the trainer writes it
        reused_from = source.relative_to(root).as_posix()
        with results.CellWriter(target) as staged:
            for name in ("metrics.jsonl", "timing.jsonl", "samples.jsonl.gz", "scores.json"):
                shutil.copyfile(source / name, staged.path(name))
            results.write_atomic(staged.path("config.yaml"), config_yaml)
            provenance = json.loads((source / "provenance.json").read_text())
            results.write_json(staged.path("provenance.json"), {
                **provenance, "config_sha256": hashlib.sha256(config_yaml.encode()).hexdigest(),
                "reused_from": reused_from, "reused_config_sha256": provenance["config_sha256"]})
            summary = json.loads((source / "summary.json").read_text())
            staged.finish({**summary, "suite": suite, "path": str(target), "reused_from": reused_from})
    return True


def run_cell(overrides: list[str], target: str) -> dict:
    """Train one cell (in a Ray worker) into `target`, its folder (a path or a URL). Errors come
    back as values, with their traceback, so one failing cell is recorded and the sweep goes on.

    On a path, the cell is locked while it trains and skipped if it is complete once the lock is
    ours: two sweeps sharing a results_dir, or a resumed sweep and the workers of a killed one that
    are still finishing their cells, never train the same cell twice. (A URL has no lock: there,
    two sweeps at once may both train a cell, and the later upload wins.)"""
    import ray

    try:
        trained = _train_to_url(overrides, target) if _is_url(target) else _train_to_path(overrides, Path(target))
        return {"node": ray.get_runtime_context().get_node_id()} if trained else {"skipped": True}
    except BaseException as err:  # noqa: BLE001 - KeyboardInterrupt and SystemExit are failures of the cell too
        return {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}


def _train_to_path(overrides: list[str], folder: Path) -> bool:
    from .trainer import train
    with exclusive(folder.with_name(f".{folder.name}.lock")):
        if (folder / "summary.json").exists():
            return False
        train(load_config(overrides))
        return True


def _train_to_url(overrides: list[str], target: str) -> bool:
    import fsspec

    from .trainer import train
    fs, remote = fsspec.core.url_to_fs(target)
    if fs.exists(f"{remote}/summary.json"):
        return False
    with tempfile.TemporaryDirectory(prefix="opdbench-cell-") as scratch:
        cfg = load_config([*overrides, f"results_dir={scratch}"])
        train(cfg)
        local = results.cell_dir(scratch, cfg.suite, results.method_dir(cfg.method.name, cfg.variant),
                                 cfg.task.name, cfg.seed)
        if fs.exists(remote):  # an upload cut short: start the folder afresh
            fs.rm(remote, recursive=True)
        fs.makedirs(remote, exist_ok=True)
        for path in sorted(local.iterdir(), key=lambda p: p.name == "summary.json"):  # summary.json last
            fs.put_file(str(path), f"{remote}/{path.name}")  # a cell's folder holds files only
    return True


def _is_url(target: str | Path) -> bool:
    return "://" in str(target)


def _exists(target: str) -> bool:
    import fsspec
    fs, path = fsspec.core.url_to_fs(target)  # a plain path is fsspec's local filesystem
    return fs.exists(path)


def _cell_dir(root: str, suite: str, cell: Cell) -> str:
    return f"{root}/{suite}/{cell.name}"


def _write_failure(root: str, suite: str, cell: Cell, record: dict | None) -> None:
    """Write (or, with None, remove) the record of a cell's failure beside its folder (a path or a URL)."""
    import fsspec
    fs, path = fsspec.core.url_to_fs(f"{_cell_dir(root, suite, cell)}.failed.json")
    if record is None:
        if fs.exists(path):
            fs.rm(path)
    else:
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        fs.pipe_file(path, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())


def _setup(suite: str, overrides: list[str], cpus_per_cell: float, gpus_per_cell: float,
           progress: bool) -> tuple[list[Cell], list[str], str, bool]:
    """The suite's cells, the overrides every cell gets (the suite's, the user's, and where and how
    a worker runs it), the absolute results root, and whether to show progress."""
    cells, common = expand(suite)
    owned = [o for o in overrides if o.partition("=")[0].lstrip("+~") in CELL_KEYS]
    if owned:
        raise OpdbenchError(f"{owned[0]!r}: each cell sets {', '.join(CELL_KEYS)} itself; "
                            f"change them in {SUITES_DIR / suite}.yaml")
    common = [*common, *overrides]
    probe = load_config([f"suite={suite}", *common])
    # Workers may run elsewhere (another node, another working directory): give them an absolute root.
    root = probe.results_dir if _is_url(probe.results_dir) else str(Path(probe.results_dir).expanduser().resolve())
    common = [*common, f"results_dir={root}", f"threads={max(1, int(cpus_per_cell))}", "progress=false"]
    if gpus_per_cell > 0 and not any(o.startswith("device=") for o in overrides):
        common.append("device=cuda")  # Ray gives each cell its GPU(s) through CUDA_VISIBLE_DEVICES
    return cells, common, root, progress and probe.progress  # `progress=false` quiets the sweep's line too


def _pending(root: str, suite: str, cells: list[Cell], common: list[str], *, reuse: bool,
             copy: bool) -> tuple[set[Cell], list[Cell], list[Cell], Durations]:
    """(complete cells, those of them another suite's identical run gives (copied in with `copy`),
    the cells to run in schedule order, the Durations learnt from the complete ones on disk)."""
    complete = {c for c in cells if _exists(f"{_cell_dir(root, suite, c)}/summary.json")}
    todo = [c for c in cells if c not in complete]
    reused = identical_runs(Path(root), suite, todo, common, copy=copy) if reuse and not _is_url(root) else []
    complete |= set(reused)
    todo = [c for c in todo if c not in complete]
    costs = _costs(todo, suite, common)
    durations = Durations(costs)  # for the time limit, the plan and the ETA
    for cell in complete if copy else complete - set(reused):  # uncopied cells are not on disk
        durations.add_folder(cell, _cell_dir(root, suite, cell))
    return complete, reused, schedule(todo, costs), durations


def sweep(suite: str, overrides: list[str] = (), *, ray_address: str | None = None, num_cpus: int | None = None,
          cpus_per_cell: float = 1, gpus_per_cell: float = 0, time_limit: float | None = None,
          plan: bool = False, reuse: bool = True, progress: bool = True) -> dict:
    """Run every missing cell of `suite` (within `time_limit` seconds, if given); returns {"cells",
    "skipped", "reused": cells copied from another suite's identical run (`identical_runs`;
    `reuse=False`: none), "ran", "failed": [(name, error)], "left": cells not started for lack of
    time, "nodes": the Ray nodes that ran them}. With `plan`, run nothing: "plan" holds the missing
    cells in schedule order with their expected seconds (None: unknown), "reused" those it would copy."""
    started = time.monotonic()
    cells, common, root, progress = _setup(suite, overrides, cpus_per_cell, gpus_per_cell, progress)
    complete, reused, todo, durations = _pending(root, suite, cells, common, reuse=reuse, copy=not plan)
    report = {"cells": len(cells), "skipped": len(complete) - len(reused), "reused": len(reused), "ran": 0,
              "failed": [], "left": 0, "nodes": set()}
    if plan:  # at the slots of the local machine (or num_cpus): a cluster's are not known without Ray
        return {**report, "plan": [(cell, durations(cell)) for cell in todo],
                "slots": slots(num_cpus or os.cpu_count(), 0, cpus_per_cell, 0)}
    if not todo:
        return report
    import ray
    from tqdm.auto import tqdm

    # "local": a new cluster of our own, even when another is running on this machine.
    ray.init(address=ray_address or "local", num_cpus=None if ray_address else (num_cpus or os.cpu_count()),
             include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        resources = ray.cluster_resources()
        if gpus_per_cell > resources.get("GPU", 0):  # Ray would wait forever for a GPU that never comes
            raise OpdbenchError(f"sweep.gpus_per_cell={gpus_per_cell:g} but the Ray cluster has "
                                f"{resources.get('GPU', 0):g} GPU(s)")
        task = ray.remote(num_cpus=cpus_per_cell, num_gpus=gpus_per_cell, max_retries=0)(run_cell)
        queue, pending = list(todo), {}  # cells not yet started, in schedule order; Ray refs -> cells
        since: dict[Cell, float] = {}  # when each running cell started

        def cluster_slots() -> int:  # re-read each time: nodes may join the cluster while it runs
            resources = ray.cluster_resources()
            return slots(resources.get("CPU", 1), resources.get("GPU", 0), cpus_per_cell, gpus_per_cell)

        def start_cells() -> None:
            """Keep every slot of the cluster busy (nodes that join later get cells too), in schedule
            order: Ray's own queue does not promise to start tasks in the order they came."""
            n_slots = cluster_slots()
            while len(pending) < n_slots:
                left = None if time_limit is None else time_limit - (time.monotonic() - started)
                cell = next_cell(queue, left, durations)
                if cell is None:
                    return
                queue.remove(cell)
                pending[task.remote(cell.hydra_overrides(suite, common), _cell_dir(root, suite, cell))] = cell
                since[cell] = time.monotonic()

        def status() -> str:
            """Cells running and failed, and the time left: the expected durations of what is left
            (up to the time limit), which tqdm's average over cells of every length is not."""
            running = [(c, time.monotonic() - since[c]) for c in pending.values()]
            left = expected_left(durations, queue, running, cluster_slots())
            if left is not None and time_limit is not None:
                left = min(left, max(0.0, time_limit - (time.monotonic() - started)))
            eta = "" if not pending else f", expected {'?' if left is None else readable_duration(left)} left"
            return f"running {len(pending)}, failed {len(report['failed'])}{eta}"

        bar = tqdm(total=len(cells), initial=len(complete), desc=f"sweep {suite}", unit="cell",
                   disable=not progress, dynamic_ncols=True,
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
        start_cells()
        bar.set_postfix_str(status())
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(ref)
            try:
                outcome = ray.get(ref)
            except ray.exceptions.RayError as err:  # the worker itself died (out of memory, a signal)
                outcome = {"error": f"{type(err).__name__}: {str(err).splitlines()[0]}", "traceback": str(err)}
            if "error" in outcome:
                _write_failure(root, suite, cell, {"cell": cell.name, "overrides": cell.hydra_overrides(suite, common),
                                                   "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **outcome})
                report["failed"].append((cell.name, outcome["error"]))
            elif outcome.get("skipped"):  # completed meanwhile, by another sweep
                report["skipped"] += 1
            else:
                _write_failure(root, suite, cell, None)
                report["ran"] += 1
                report["nodes"].add(outcome["node"])
                durations.add_folder(cell, _cell_dir(root, suite, cell))
            since.pop(cell)
            start_cells()
            bar.set_postfix_str(status(), refresh=False)
            bar.update(1)
        bar.close()
        report["left"] = len(queue)
    finally:
        ray.shutdown()
    return report


def read_failures(root: str | Path, suite: str) -> list[dict]:
    import fsspec
    fs, base = fsspec.core.url_to_fs(str(root))
    return [json.loads(fs.cat_file(p)) for p in sorted(fs.glob(f"{base}/{suite}/*/*/seed=*.failed.json"))]
