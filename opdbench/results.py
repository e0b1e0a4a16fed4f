"""The results format: the contract between training, statistics and reports (DESIGN.md).

    results/runs/<suite>/<method>/<task>/seed=<s>/
        config.yaml      fully resolved config
        metrics.jsonl    one row per logged step; deterministic (same config and seed → same bytes)
        timing.jsonl     wall-clock seconds per step and phase (kept apart so metrics stay deterministic)
        samples.jsonl.gz the final eval's generations with their scores (gzip: ~10x smaller in git)
        scores.json      the final eval's scores, prompts x samples (what statistics resample)
        provenance.json  git commit, config hash, package versions, zoo checksums
        summary.json     written last: a cell is complete only when it exists

A cell is built in `seed=<s>.partial/` and renamed into place when it is complete; on any failure
the partial folder is removed, so a folder named `seed=<s>` is always a complete cell.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd



def method_dir(method: str, variant: str = "") -> str:
    """A method's folder; a variant (a hyperparameter sweep's overrides) gets its own: `k1@train.lr=5e-4`."""
    return f"{method}@{variant}" if variant else method


def cell_dir(root: str | Path, suite: str, method: str, task: str, seed: int) -> Path:
    return Path(root) / suite / method / task / f"seed={seed}"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_jsonl_gz(path: Path, rows: list[dict]) -> None:
    text = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
    tmp = path.with_name(f".{path.name}.tmp")
    with gzip.GzipFile(tmp, "wb", mtime=0) as f:  # mtime 0: the same rows give the same bytes
        f.write(text.encode())
    os.replace(tmp, path)


def read_jsonl_gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f]


class CellWriter:
    """Context manager that stages a cell and publishes it only if the block succeeds."""

    def __init__(self, final: Path):
        self.final = final
        self.staging = final.with_name(final.name + ".partial")

    def __enter__(self) -> "CellWriter":
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        return self

    def path(self, name: str) -> Path:
        return self.staging / name

    def append(self, name: str, row: dict) -> None:
        with open(self.staging / name, "a") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")

    def finish(self, summary: dict) -> None:
        write_json(self.staging / "summary.json", summary)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or not (self.staging / "summary.json").exists():
            shutil.rmtree(self.staging, ignore_errors=True)
            return
        # Replace an older copy of the cell: move it aside, move the new one in, then delete.
        old = self.final.with_name(self.final.name + f".old-{os.getpid()}")
        if self.final.exists():
            os.replace(self.final, old)
        os.replace(self.staging, self.final)
        shutil.rmtree(old, ignore_errors=True)


def _cells(root: str | Path, suite: str | None = None):
    for summary in sorted(Path(root).glob(f"{suite or '*'}/*/*/seed=*/summary.json")):
        yield summary.parent, json.loads(summary.read_text())


def load(root: str | Path = "results/runs") -> "pd.DataFrame":
    """One row per complete cell: suite, method, task, seed and every scalar of summary.json."""
    import pandas as pd  # imported here: ~0.5 s of start-up that a training run does not need
    rows = []
    for _, summary in _cells(root):
        rows.append({k: v for k, v in summary.items() if not isinstance(v, (dict, list))})
    return pd.DataFrame(rows)


def load_metrics(root: str | Path = "results/runs", suite: str | None = None) -> "pd.DataFrame":
    """One row per logged step of every complete cell (of one suite, or all), with the cell's keys
    and wall time joined."""
    import pandas as pd
    frames = []
    for path, summary in _cells(root, suite):
        metrics = pd.read_json(path / "metrics.jsonl", lines=True)
        timing_path = path / "timing.jsonl"
        if timing_path.exists():
            metrics = metrics.merge(pd.read_json(timing_path, lines=True), on="step", how="left")
        for key in ("suite", "method", "variant", "task", "seed"):
            metrics.insert(0, key, summary.get(key, ""))
        frames.append(metrics)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
