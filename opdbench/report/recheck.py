"""`opdbench recheck`: rerun committed cells with today's code and compare what they wrote.

A cell is stale once a module it ran changes (`leaderboard.Today`), because most edits to those
modules change what cells compute. Some are meant to change nothing: a clearer error, a cheaper
import, a refactor. Rerunning every cell for those (the paper suite: ~11.5 h on 2 cores) would
freeze the code; instead, rerun a few cells chosen to run the edited code. When each one writes
what it wrote before (its config, metrics, scores and samples; the summary but for wall-clock
fields), `--record` appends one line per edited module to `EQUIVALENT_CODE`: the digest the cells
ran, today's digest, the cells rerun, the commit. The stale check then takes a cell whose module
reaches today's version through those lines as having run today's code.

What this cannot know is whether the chosen cells ran the edited lines: a change on a path that
none of them takes (one method's loss, one task's scorer) passes unseen. Each line names its
cells so that a reviewer can judge; choose at least one cell per method and task the edit can reach.
(tests/test_report.py checks each committed line against git's history and the cells it names.)
"""

from __future__ import annotations

import contextlib
import datetime
import gzip
import json
import multiprocessing
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from .. import results
from ..conf import load_config
from ..errors import OpdbenchError
from ..evaluate import PACKAGE_DIR
from ..sweep import yaml_load
from .leaderboard import EQUIVALENT_CODE, Cell, Today, _strip, _with_new_defaults, command, load_cell, suite_commands

# Summary fields that say how long a run took and where it was written (or copied from), not what it computed.
NOT_COMPUTED = ("wall_s", "path", "cached_evals", "reused_from")


def rerun(cell: Cell, scratch: Path) -> Path:
    """Train the cell again, as its suite's command would now, into `scratch` with an empty
    evaluation cache (so that every evaluation is computed by today's code), on the cell's thread
    count (1 and 2 threads differ in the last bits)."""
    from ..trainer import train

    suite = cell.summary["suite"]
    cfg = load_config([*command(cell, suite, suite_commands(suite)), f"results_dir={scratch}", f"eval.cache_dir={scratch / 'eval_cache'}",
                       f"threads={cell.config['threads']}", "progress=false"])
    train(cfg)
    return results.cell_dir(scratch, suite, cell.row, cell.summary["task"], cell.summary["seed"])


def differences(before: Path, after: Path, defaults: dict | None = None) -> list[str]:
    """What differs between two folders of one cell, file by file (empty: the same run). A config
    key added to the schema since `before` ran, at its default in `after`, is no difference (the
    schema's `defaults`, as the stale check takes them)."""
    def text(folder: Path, name: str) -> bytes:
        data = (folder / name).read_bytes()
        return gzip.decompress(data) if name.endswith(".gz") else data  # gzip's header holds a time

    found = []
    for name in ("metrics.jsonl", "scores.json", "samples.jsonl.gz"):
        if text(before, name) != text(after, name):
            lines = zip(text(before, name).splitlines(), text(after, name).splitlines())
            line = next((i for i, (a, b) in enumerate(lines, 1) if a != b), None)
            found.append(f"{name}" + (f" (line {line})" if line else " (length)"))
    summaries = [json.loads((folder / "summary.json").read_text()) for folder in (before, after)]
    found += [f"summary.json ({key})" for key in sorted(set(summaries[0]) | set(summaries[1]))
              if key not in NOT_COMPUTED and summaries[0].get(key) != summaries[1].get(key)]
    then, now = (_strip(yaml_load((folder / "config.yaml").read_text())) for folder in (before, after))
    if _with_new_defaults(then, now, defaults or {}) != now:
        found.append("config.yaml")
    return found


def changed_modules(cell: Cell, today: Today) -> dict[str, str]:
    """The modules the cell ran that differ from today's in code (name: the digest it ran)."""
    return {name: digest for name, digest in cell.provenance.get("code_modules", {}).items()
            if not today.ran_today(name, digest)}


def uncommitted_sources() -> list[str]:
    """opdbench modules that differ from git's HEAD (a recorded digest must name a committed version,
    so that a later edit of its comments alone still finds it: `leaderboard.versions`)."""
    try:
        out = subprocess.run(["git", "-C", str(PACKAGE_DIR), "status", "--porcelain", "--", "."],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return ["(no git checkout)"]
    return [line[3:] for line in out.splitlines() if line.endswith(".py")]


def record(cells: list[Cell], today: Today, path: Path | None = None) -> list[dict]:
    """Append a line per (module, digest that cells ran) to `path`: today's version of the module
    reproduced these cells. Returns the lines written."""
    commit = subprocess.run(["git", "-C", str(PACKAGE_DIR), "rev-parse", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or None
    by_version: dict[tuple[str, str], list[str]] = {}
    for cell in cells:
        for name, digest in changed_modules(cell, today).items():
            by_version.setdefault((name, digest), []).append(_label(cell))
    lines = [{"module": name, "ran": digest, "today": today.sources[name], "cells": sorted(labels),
              "commit": commit, "date": datetime.date.today().isoformat()}
             for (name, digest), labels in sorted(by_version.items()) if name in today.sources]
    if lines:
        with open(path or EQUIVALENT_CODE, "a") as f:
            f.writelines(json.dumps(line, sort_keys=True) + "\n" for line in lines)
    return lines


def _label(cell: Cell) -> str:
    return f"{cell.summary['suite']}/{cell.row}/{cell.summary['task']}/seed={cell.summary['seed']}"


def _rerun_and_compare(folder: Path, scratch: Path, defaults: dict) -> tuple[list[str], float]:
    """One cell's differences and the seconds its rerun took (run in a worker process with --jobs)."""
    start = time.perf_counter()
    cell = load_cell(folder)
    return differences(folder, rerun(cell, scratch), defaults), time.perf_counter() - start


def recheck(folders: list[Path], write: bool = False, registry: Path | None = None,
            scratch: Path | None = None, jobs: int = 1) -> tuple[dict[str, list[str]], list[dict]]:
    """Rerun each cell folder (`jobs` at a time, each in its own process and on its own thread
    count) and compare; with `write` and every cell the same, `record` into `registry`. Returns
    the differences by cell and the lines recorded."""
    if write and (dirty := uncommitted_sources()):
        raise OpdbenchError(f"commit first: a recorded version must be in git ({', '.join(dirty[:3])} differ from HEAD)")
    cells = [load_cell(Path(folder)) for folder in folders]
    today = Today(registry)
    if not any(changed_modules(cell, today) for cell in cells):
        print("recheck: these cells ran today's code already (so this checks only that reruns repeat)", flush=True)
    found = {}
    # Workers are spawned, not forked: a forked torch (its thread pools) can hang.
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) if jobs > 1 else None
    with tempfile.TemporaryDirectory(prefix="opdbench-recheck-", dir=scratch) as tmp, pool or contextlib.nullcontext():
        work = [(cell.path, Path(tmp) / str(i), today.defaults) for i, cell in enumerate(cells)]
        if pool:
            futures = {pool.submit(_rerun_and_compare, *args): cell for cell, args in zip(cells, work)}
            done = ((futures[future], future.result()) for future in as_completed(futures))
        else:  # a generator: each cell reruns as the loop below reaches it, so progress shows as it goes
            done = ((cell, _rerun_and_compare(*args)) for cell, args in zip(cells, work))
        for cell, (differs, seconds) in done:
            found[_label(cell)] = differs
            print(f"recheck {_label(cell)}: {', '.join(differs) or 'identical'} ({seconds:.0f} s)", flush=True)
    same = not any(found.values())
    lines = record(cells, today, registry) if write and same else []
    return found, lines
