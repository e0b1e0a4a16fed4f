"""`opdbench leaderboard`: results/leaderboard.md and .csv, rebuilt from results/runs/ without training.

One row per method (a sweep's variant is its own row), ranked by IQM, the reference rows last.
Per task: mean@k and best@k over seeds with 95 % bootstrap intervals that resample seeds and,
within each seed, eval prompts (stats.cell_ci); across tasks: the IQM of every run's final mean@k
(stratified bootstrap); against k1: the probability of improvement. A cell whose inputs changed since it ran (its config, a checkpoint,
the code that produces results) is marked stale in its row, never mixed in silently.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from .. import results, stats
from ..conf import baseline_files, load_config
from ..conf.schema import Config
from ..errors import OpdbenchError
from ..evaluate import PACKAGE_DIR, best_at_k, code_fingerprint, source_hashes
from ..feedback.shaping import AFFINE
from ..sweep import yaml_load
from ..zoo import manifest

BASELINE = "k1"
# Keys of a resolved config that say where and how fast a cell ran, not what it computed.
RUN_KEYS = ("results_dir", "threads", "progress", "eval.cache_dir", "seed")
TASK_ORDER = ("math", "code", "dialogue")
# Module versions shown to reproduce committed cells (`opdbench recheck --record`; see report/recheck.py).
EQUIVALENT_CODE = Path(__file__).with_name("equivalent_code.jsonl")
COLLAPSED_BELOW = 0.2  # of the first step's response length: a run that ends below it stopped answering


def is_reference(method: dict) -> bool:
    """A reference row (the student base, the teacher) evaluates a model without training: a bound
    to read the entries against, not an entry."""
    return method.get("kind", "train").startswith("evaluate_")


def reference_methods() -> list[str]:
    """The registered baselines that are reference rows, from their YAML (no Hydra composition)."""
    return [name for name, path in baseline_files().items() if is_reference(yaml_load(path.read_bytes()))]


@dataclass
class Cell:
    path: Path
    summary: dict
    config: dict
    provenance: dict
    scores_P_N: np.ndarray
    stale: list[str] = field(default_factory=list)  # what changed since the cell ran
    response_len: tuple[float, float] | None = None  # a response's mean tokens at the first and last step (None: no training)

    @property
    def row(self) -> str:
        return results.method_dir(self.summary["method"], self.summary.get("variant", ""))


def _with_new_defaults(then: dict, now: dict, default: dict) -> dict:
    """`then` (a cell's config) plus each key added to the schema since, where its value now is
    still the schema's default: a knob added later, and left at its default, changes no earlier
    cell. (A changed default is a changed config: the key then differs.)"""
    out = dict(then)
    for key, value in now.items():
        fallback = default.get(key) if isinstance(default, dict) else None
        if key not in then:
            if fallback == value:
                out[key] = value
        elif isinstance(value, dict) and isinstance(then[key], dict):
            out[key] = _with_new_defaults(then[key], value, fallback if isinstance(fallback, dict) else {})
    return out


def _strip(config: dict) -> dict:
    config = json.loads(json.dumps(config))
    for key in RUN_KEYS:
        *parents, leaf = key.split(".")
        node = config
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    return config


def load_cells(root: Path, suite: str) -> list[Cell]:
    return [load_cell(summary.parent) for summary in sorted(Path(root, suite).glob("*/*/seed=*/summary.json"))]


def load_cell(folder: Path) -> Cell:
    """A complete cell's folder (it has summary.json)."""
    if not (folder / "summary.json").exists():
        raise OpdbenchError(f"{folder} is not a complete cell (no summary.json)")
    scores_path = folder / "scores.json"
    if not scores_path.exists():
        raise OpdbenchError(f"{folder} has no scores.json (an older opdbench wrote it): rerun the cell, "
                            f"e.g. with `opdbench sweep suite={folder.parent.parent.parent.name}`")
    return Cell(folder, json.loads((folder / "summary.json").read_text()),
                yaml_load((folder / "config.yaml").read_text()),
                json.loads((folder / "provenance.json").read_text()),
                np.asarray(json.loads(scores_path.read_text())["scores"], dtype=float),
                response_len=_first_and_last(folder / "metrics.jsonl", "response_len"))


def _first_and_last(metrics: Path, key: str, span: int = 16384) -> tuple[float, float] | None:
    """`key` in the first and in the last row of metrics.jsonl that have it (None: no row near
    either end has it), reading only `span` bytes at each end."""
    if not metrics.exists():
        return None
    with open(metrics, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(0)
        head = f.read(span).splitlines()[:-1 if size > span else None]  # a line cut at either end is dropped
        f.seek(max(0, size - span))
        tail = f.read().splitlines()[1 if size > span else 0:]
    found = [next((row[key] for row in map(json.loads, lines) if key in row), None) for lines in (head, tail[::-1])]
    return None if None in found else (found[0], found[1])


def suite_commands(suite: str) -> dict[str, list[str]] | None:
    """Each cell the suite's YAML lists, by name, with its overrides (None: no YAML defines the suite)."""
    from ..sweep import SUITES_DIR, expand

    if not (SUITES_DIR / f"{suite}.yaml").exists():
        return None
    planned, common = expand(suite)
    return {c.name: c.hydra_overrides(suite, common) for c in planned}


class Composed:
    """Configs as `load_config` composes them now (stripped of RUN_KEYS; None: the overrides no
    longer compose, e.g. a removed baseline), memoized on disk under a fingerprint of everything
    composition reads: Hydra composes ~0.1 s a config, and a full suite's leaderboard needs one per
    row and task (~160). Any edit to the config package, a baseline or a task's YAML, or another
    Hydra or OmegaConf, is another fingerprint, so the memo is never stale."""

    def __init__(self, folder: str | Path | None = None):
        import hydra
        import omegaconf

        from .. import conf
        digest = hashlib.sha256(f"hydra {hydra.__version__} omegaconf {omegaconf.__version__}".encode())
        for root, pattern in ((conf.CONF_DIR, "**/*.py"), (conf.CONF_DIR, "**/*.yaml"),
                              (conf.BASELINES_DIR, "*.yaml"), (conf.TASKS_DIR, "*/task.yaml")):
            for path in sorted(root.glob(pattern)):
                digest.update(f"{root.name}/{path.relative_to(root)}\0".encode() + path.read_bytes() + b"\0")
        folder = Path(folder or os.environ.get("OPDBENCH_CONFIG_CACHE") or "~/.cache/opdbench/configs").expanduser()
        self.path = folder / f"{digest.hexdigest()[:32]}.json"
        self.memo = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.added = False

    def __call__(self, overrides: list[str]) -> dict | None:
        key = json.dumps(overrides)
        if key not in self.memo:
            try:
                self.memo[key] = _strip(OmegaConf.to_container(load_config(overrides), resolve=True))
            except OpdbenchError:
                self.memo[key] = None
            self.added = True
        return self.memo[key]

    def save(self) -> None:
        if self.added:
            with contextlib.suppress(OSError):  # a read-only home only costs the next run the time
                self.path.parent.mkdir(parents=True, exist_ok=True)
                results.write_atomic(self.path, json.dumps(self.memo, sort_keys=True))


class Today:
    """What a cell would be computed from if it ran now: the source of each opdbench module, the
    zoo's checksums, the schema's defaults; and the module versions shown to compute the same
    (`equivalent`: `opdbench recheck` lines, by module)."""

    def __init__(self, equivalent: Path | None = None):
        self.code, self.sources, self.zoo = code_fingerprint(), source_hashes(), manifest().get("models", {})
        self.defaults = OmegaConf.to_container(OmegaConf.structured(Config))  # interpolations stay strings: never equal
        self.equivalent: dict[str, list[dict]] = {}
        equivalent = Path(equivalent or EQUIVALENT_CODE)
        if equivalent.exists():
            for line in equivalent.read_text().splitlines():
                if line.strip():
                    entry = json.loads(line)
                    self.equivalent.setdefault(entry["module"], []).append(entry)
        self._versions: dict[str, dict[str, bytes]] = {}  # module -> its versions in git, and today's
        self._codes: dict[tuple[str, str], str] = {}
        self._ran_today: dict[tuple[str, str], bool] = {}

    def changed_under(self, config: dict, provenance: dict, overrides: list[str], composed: "Composed") -> list[str]:
        """`changed`, against today's config for these Hydra overrides (seeds share a config: RUN_KEYS)."""
        return self.changed(config, provenance, composed([o for o in overrides if not o.startswith("seed=")]))

    def ran_today(self, module: str, digest: str) -> bool:
        """Whether the module's version a cell ran (`digest`, a sha256 of its bytes) computes what
        today's does: the same code but for comments, docstrings and layout (`versions`), or code
        that `opdbench recheck` found to reproduce cells that ran it, itself the same as today's or,
        in turn, so reproduced (a chain of lines in `equivalent`)."""
        if (module, digest) not in self._ran_today:
            self._ran_today[module, digest] = module in self.sources and self._reaches_today(module, digest)
        return self._ran_today[module, digest]

    def _reaches_today(self, module: str, digest: str) -> bool:
        if self.sources[module] == digest:
            return True
        if module not in self._versions:  # and today's file, which may be uncommitted (not in git's history)
            self._versions[module] = {**versions(PACKAGE_DIR / module),
                                      self.sources[module]: (PACKAGE_DIR / module).read_bytes()}
        today = self._code(module, self.sources[module])
        seen, frontier = set(), [self._code(module, digest)]
        while frontier:
            version = frontier.pop()
            if version == today:
                return True
            if version not in seen:
                seen.add(version)
                frontier += [self._code(module, line["today"]) for line in self.equivalent.get(module, ())
                             if self._code(module, line["ran"]) == version]
        return False

    def _code(self, module: str, digest: str) -> str:
        """The sha256 of the `statements` of the module's version with this digest (its bytes'
        sha256); the digest itself where git has no such version, or it does not parse."""
        if (module, digest) not in self._codes:
            source = self._versions[module].get(digest)
            self._codes[module, digest] = (source is not None and _code_digest(source.decode(errors="replace"))) or digest
        return self._codes[module, digest]

    def changed(self, config: dict, provenance: dict, now: dict | None) -> list[str]:
        """What differs between a cell's inputs (its config.yaml and provenance.json) and today's,
        `now` being today's config for the same command (`Composed`; None: it no longer composes)."""
        reasons = []
        if now is None or now != _with_new_defaults(_strip(config), now, self.defaults):
            reasons.append("config")
        for spec, files in provenance.get("models", {}).items():
            if files is not None and spec.startswith("zoo:") and self.zoo.get(spec[4:], {}).get("files") != files:
                reasons.append("zoo")
                break
        recorded = provenance.get("code_modules")
        if recorded is not None:  # the modules the cell ran, each against its source now
            modules = sorted(name for name, digest in recorded.items() if not self.ran_today(name, digest))
            if modules:
                reasons.append(f"code ({' '.join(modules)})")
        elif provenance.get("code_sha256") != self.code:  # cells from before session 9: the whole package
            reasons.append("code")
        return reasons


def statements(source: str) -> str:
    """The module's code without its docstrings, comments and layout (ast.dump of its parse)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def _code_digest(source: str) -> str | None:
    """sha256 of `statements` (None: it does not parse)."""
    try:
        return hashlib.sha256(statements(source).encode()).hexdigest()
    except SyntaxError:
        return None


def versions(path: Path) -> dict[str, bytes]:
    """Each version of `path` in its git history, by the sha256 of its bytes. Empty where there is
    no history (an install without git)."""
    path = Path(path)
    def git(*args: str, stdin: str | None = None) -> bytes:
        return subprocess.run(["git", "-C", str(path.parent), *args], input=None if stdin is None else stdin.encode(),
                              capture_output=True, check=True).stdout
    try:
        log = git("log", "--all", "--format=", "--raw", "--no-abbrev", "--", path.name).decode().split()
        blobs = sorted({word for word in log if len(word) == 40 and word.strip("0")})  # each version's blob id
        batch = git("cat-file", "--batch", stdin="".join(f"{b}\n" for b in blobs))
    except (OSError, subprocess.CalledProcessError):
        return {}
    found = {}
    for _ in blobs:  # "<id> blob <size>\n<content>\n", one per version
        header, _, batch = batch.partition(b"\n")
        size = int(header.split()[2])
        content, batch = batch[:size], batch[size + 1:]
        found[hashlib.sha256(content).hexdigest()] = content
    return found


def same_statements(path: Path, digest: str) -> bool:
    """Whether a version of `path` in its git history has this sha256 and the same `statements` as
    the file now. False where there is no such version (a cell run from uncommitted code, an
    install without its git history): the cell is then stale, as its bytes say."""
    try:
        now = _code_digest(Path(path).read_text())
    except OSError:
        return False
    then = versions(path).get(digest)
    return now is not None and then is not None and _code_digest(then.decode(errors="replace")) == now


def mark_stale(cells: list[Cell], suite: str, suite_cells: dict[str, list[str]] | None) -> None:
    """Compare each cell's inputs with what the same command would use now (`suite_cells`: the
    suite's `suite_commands`)."""
    today, composed = Today(), Composed()
    for cell in cells:
        cell.stale += today.changed_under(cell.config, cell.provenance, command(cell, suite, suite_cells), composed)
    composed.save()


def command(cell: Cell, suite: str, suite_cells: dict[str, list[str]] | None) -> list[str]:
    """The Hydra overrides that would train this cell now: its suite's (`suite_commands`), or for a
    cell its suite no longer lists, its own command on its budget."""
    planned = _planned(cell)
    return (suite_cells or {}).get(planned.name) or planned.hydra_overrides(suite, [f"budget={cell.summary['budget']}"])


def _planned(cell: Cell):
    """The sweep's Cell of a loaded one (its variant's overrides recovered from the label)."""
    from ..sweep import Cell as Planned
    s = cell.summary
    return Planned.of_variant(s["method"], s["task"], s["seed"], s.get("variant", ""))


def equivalences(method_configs: dict[str, dict], variants: dict[str, list[str]] | None = None) -> dict[str, str]:
    """Rows that are the same run (or the same expected gradient) as another by construction: by
    their method config and their variant's overrides of anything else (`variants`, by row), so a
    k1 variant with another learning rate is not k1 (a method.* override is in its method config)."""
    def core(row: str) -> dict:
        other = [o for o in (variants or {}).get(row, []) if not o.startswith("method.")]
        return {**{k: v for k, v in method_configs[row].items() if k not in ("name", "source")},
                "variant overrides": sorted(other)}

    notes = {}
    rows = sorted(method_configs)
    cores = {row: core(row) for row in rows}
    for a in rows:
        ca = cores[a]
        affine = AFFINE.get(ca.get("shaping"))  # (its params, the other shaping, scale, shift)
        if affine and not all(ca.get("shaping_params", {}).get(p) == v for p, v in affine[0].items()):
            affine = None
        for b in rows:
            cb = cores[b]
            if a == b or a in notes:
                continue
            if ca == cb and a > b:
                notes[a] = f"same config as {b}"
            if affine:
                _, other, scale, shift = affine
                mapped = {**ca, "shaping": other, "shaping_params": cb.get("shaping_params", {})}
                if mapped == cb:
                    if ca.get("whiten", "none") != "none":
                        notes[a] = f"same run as {b} (A = {scale:g}·A' {shift:+g}; whitening removes it)"
                    elif scale == 1:
                        notes[a] = f"same expected gradient as {b} (A = A' {shift:+g}: a baseline)"
    return notes


def _collapsed(group: list[Cell]) -> str:
    """Which of a row's runs ended with responses under COLLAPSED_BELOW of their first step's length
    (a score of 0 that is the method's doing: its signal favoured stopping early)."""
    runs = [c for c in group if c.response_len is not None and c.response_len[1] < COLLAPSED_BELOW * c.response_len[0]]
    if not runs:
        return ""
    order = ordered_tasks(c.summary["task"] for c in runs)
    runs.sort(key=lambda c: (order.index(c.summary["task"]), c.summary["seed"]))
    return "responses collapsed: " + ", ".join(
        f"{c.summary['task']} seed {c.summary['seed']} ({c.response_len[0]:.0f} -> {c.response_len[1]:.1f} tokens)" for c in runs)


def ordered_tasks(names) -> list[str]:
    """These task names once each: the tiny tier's in TASK_ORDER, then any other by name."""
    names = set(names)
    return [t for t in TASK_ORDER if t in names] + sorted(names - set(TASK_ORDER))


def _fmt(point: float, lo: float, hi: float) -> str:
    return f"{point:.3f} [{lo:.3f}, {hi:.3f}]"


def build(root: str | Path = "results/runs", suite: str = "default", seed: int = 0, cells: list[Cell] | None = None):
    """(DataFrame of rows, markdown text). `seed` fixes every bootstrap draw; `cells`, the suite's
    `load_cells` where the caller has them already."""
    import pandas as pd

    root = Path(root)
    cells = load_cells(root, suite) if cells is None else cells
    if not cells:
        raise OpdbenchError(f"no complete cells under {root / suite}: run `opdbench sweep suite={suite}` first")
    planned = suite_commands(suite)
    mark_stale(cells, suite, planned)
    k = cells[0].config["eval"]["k"]
    tasks = ordered_tasks(c.summary["task"] for c in cells)
    by_row: dict[str, dict[str, list[Cell]]] = {}
    for cell in cells:
        by_row.setdefault(cell.row, {}).setdefault(cell.summary["task"], []).append(cell)

    def per_prompt(cell: Cell, metric: str) -> np.ndarray:
        if metric == "mean":
            return cell.scores_P_N.mean(axis=1)
        return np.array([best_at_k(list(row), k) for row in cell.scores_P_N])

    def runs_by_task(row: str) -> np.ndarray | None:
        """runs x tasks of final mean@k (None unless every task has the same number of seeds)."""
        columns = [[c.summary[f"mean@{k}"] for c in sorted(by_row[row].get(t, []), key=lambda c: c.summary["seed"])]
                   for t in tasks]
        if not all(columns) or len({len(c) for c in columns}) != 1:
            return None
        return np.array(columns).T

    baseline = runs_by_task(BASELINE) if BASELINE in by_row else None
    first = {row: next(iter(v.values()))[0] for row, v in by_row.items()}
    notes = equivalences({row: c.config["method"] for row, c in first.items()},
                         {row: _planned(c).overrides for row, c in first.items()})
    records = []
    for row in sorted(by_row):
        rng = np.random.default_rng(seed)
        rec = {"method": row}
        for t in tasks:
            group = sorted(by_row[row].get(t, []), key=lambda c: c.summary["seed"])
            for metric in ("mean", "best"):
                if group:
                    point, lo, hi = stats.cell_ci(np.stack([per_prompt(c, metric) for c in group]), rng)
                else:
                    point = lo = hi = np.nan
                rec.update({f"{t} {metric}@{k}": point, f"{t} {metric}@{k} lo": lo, f"{t} {metric}@{k} hi": hi})
        runs = runs_by_task(row)
        iqm = stats.stratified_ci(stats.iqm, runs, rng=rng) if runs is not None else (np.nan,) * 3
        rec.update({"IQM": iqm[0], "IQM lo": iqm[1], "IQM hi": iqm[2]})
        poi = (stats.stratified_ci(stats.probability_of_improvement, runs, baseline, rng=rng)
               if runs is not None and baseline is not None and row != BASELINE else (np.nan,) * 3)
        rec.update({f"P(>{BASELINE})": poi[0], f"P(>{BASELINE}) lo": poi[1], f"P(>{BASELINE}) hi": poi[2]})
        group = [c for cs in by_row[row].values() for c in cs]
        rec["seeds"] = len({c.summary["seed"] for c in group})
        rec["student tokens"] = sum(c.summary.get("student_tokens", 0) for c in group)
        rec["teacher tokens"] = sum(c.summary.get("teacher_tokens", 0) for c in group)
        rec["wall s"] = round(sum(c.summary["wall_s"] for c in group), 1)
        stale = sorted({reason for c in group for reason in c.stale})
        rec["stale"] = ",".join(stale)
        rec["note"] = "; ".join(n for n in (notes.get(row, ""), _collapsed(group)) if n)
        rec["reproduce"] = _command(group, suite)
        records.append(rec)
    frame = _ranked(pd.DataFrame(records), by_row)
    return frame, _markdown(frame, tasks, k, suite, len(cells), None if planned is None else len(planned))


def _ranked(frame, by_row: dict[str, dict[str, list[Cell]]]):
    """The OPD rows by IQM, best first (rows without one, not yet run on every task, after them by
    name), then the reference rows (the student, the teacher: bounds, not entries)."""
    def reference(row: str) -> bool:
        return is_reference(next(iter(by_row[row].values()))[0].config["method"])

    order = sorted(range(len(frame)), key=lambda i: (reference(frame["method"][i]), np.isnan(frame["IQM"][i]),
                                                     -np.nan_to_num(frame["IQM"][i]), frame["method"][i]))
    return frame.iloc[order].reset_index(drop=True)


def _command(group: list[Cell], suite: str) -> str:
    """`opdbench train -m` over the row's tasks and seeds (a variant's overrides from its label),
    on the cells' thread count (1 and 2 threads differ in the last bits) and into runs/, beside
    the committed cells rather than over them."""
    s = group[0].summary
    tasks = ",".join(ordered_tasks(c.summary["task"] for c in group))
    seeds = ",".join(str(x) for x in sorted({c.summary["seed"] for c in group}))
    extra = "".join(f" '{o}'" for o in _planned(group[0]).overrides)
    budget = f" budget={s['budget']}" if s.get("budget", "default") != "default" else ""
    threads = f" threads={group[0].config['threads']}" if group[0].config.get("threads") else ""
    return (f"opdbench train -m method={s['method']} task={tasks} seed={seeds} suite={suite}{budget}{threads}"
            f" results_dir=runs{extra}")


def _markdown(frame, tasks: list[str], k: int, suite: str, n_cells: int, planned: int | None) -> str:
    head = ["method", *[f"{t} mean@{k}" for t in tasks], *[f"{t} best@{k}" for t in tasks],
            "IQM mean@" + str(k), f"P(>{BASELINE})", "seeds", "tokens (student / teacher)", "wall", "notes"]
    count = f"{n_cells} cells" if planned is None or n_cells >= planned else (
        f"{n_cells} of its {planned} cells so far (`opdbench sweep suite={suite}` runs the rest)")
    lines = [f"Suite `{suite}`: {count}. 95 % bootstrap intervals over seeds and eval prompts; "
             f"IQM over every run of every task; P(>{BASELINE}) = probability of improvement over {BASELINE}. "
             "Rows by IQM, best first; the reference rows last.",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    commands = []
    for _, r in frame.iterrows():
        def ci(col: str) -> str:
            return "—" if np.isnan(r[col]) else _fmt(r[col], r[f"{col} lo"], r[f"{col} hi"])
        notes = [n for n in (r["note"], f"stale: {r['stale']}" if r["stale"] else "") if n]
        cells = [f"`{r['method']}`", *[ci(f"{t} mean@{k}") for t in tasks], *[ci(f"{t} best@{k}") for t in tasks],
                 ci("IQM"), ci(f"P(>{BASELINE})"), str(r["seeds"]),
                 f"{r['student tokens'] / 1e6:.1f}M / {r['teacher tokens'] / 1e6:.1f}M", f"{r['wall s'] / 60:.1f} min",
                 "; ".join(notes)]
        lines.append("| " + " | ".join(cells) + " |")
        commands.append(f"- `{r['method']}`: `{r['reproduce']}`")
    lines += ["", "Reproduce a row (every task and seed of it, one after another):", "", *commands]
    return "\n".join(lines) + "\n"


def write(root: str | Path = "results/runs", suite: str = "default", out: str | Path = "results") -> tuple[Path, Path]:
    frame, text = build(root, suite)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md, csv = out / "leaderboard.md", out / "leaderboard.csv"
    results.write_atomic(md, text)
    results.write_atomic(csv, frame.to_csv(index=False))
    return md, csv


START, END = "<!-- leaderboard: begin (opdbench leaderboard --readme) -->", "<!-- leaderboard: end -->"


def readme_parts(readme: str | Path) -> tuple[str, str]:
    """What README holds before its START marker and after its END marker (an error, before any
    work, where it has no such pair)."""
    readme = Path(readme)
    if not readme.is_file():
        raise OpdbenchError(f"{readme} does not exist: --readme names the file to embed the leaderboard in")
    doc = readme.read_text()
    if doc.count(START) != 1 or doc.count(END) != 1 or doc.index(START) > doc.index(END):
        raise OpdbenchError(f"{readme} needs one line {START!r} and, after it, one line {END!r}")
    head, rest = doc.split(START)
    return head, rest.split(END, 1)[1]


def embed(readme: str | Path, text: str) -> None:
    """Replace what README holds between the START and END markers with `text`."""
    head, tail = readme_parts(readme)
    results.write_atomic(Path(readme), f"{head}{START}\n{text.strip()}\n{END}{tail}")
