"""One loader for every real-tier task: a Hugging Face hub dataset, or local JSON-lines files.

Each task names, per opdbench split, the hub dataset(s) that hold it (`Source`); a task config
can replace them with local files (`params.data_files: {eval: path.jsonl}`), which must have the
hub dataset's columns. Both go through `datasets.load_dataset`, so rows come out of one reader
with the same types either way.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path

from ...errors import OpdbenchError
from ..base import SPLITS, Example, Task


@dataclass(frozen=True)
class Source:
    """One split of one hub dataset."""

    path: str  # hub name, e.g. "openai/gsm8k"
    config: str | None  # hub config name, e.g. "main"
    split: str  # the hub's split name, e.g. "test"

    def __str__(self) -> str:
        return f"{self.path}{':' + self.config if self.config else ''} ({self.split!r} split)"


class HubTask(Task):
    """A task whose examples are rows of a dataset. Subclasses set `sources` and `columns` and
    turn a row into an Example; the rows of each split are loaded once, on first use."""

    sources: dict[str, list[Source]]  # opdbench split -> where it lives on the hub
    columns: tuple[str, ...]  # the columns `example` reads (checked, so a bad file fails clearly)

    def __init__(self, data_files: dict | None = None, max_new_tokens: int = 1024):
        unknown = [k for k in (data_files or {}) if k not in SPLITS]
        if unknown:
            raise OpdbenchError(f"bad task.params.data_files keys {unknown}: use opdbench's split names "
                                f"{list(SPLITS)} (e.g. data_files.eval=test.jsonl)")
        self.data_files = {split: _as_list(files) for split, files in (data_files or {}).items()}
        self.max_new_tokens = max_new_tokens
        self._examples: dict[str, list[Example]] = {}

    @abstractmethod
    def example(self, row: dict) -> Example:
        """The Example for one dataset row."""

    def examples(self, split: str) -> list[Example]:
        if split not in self._examples:
            self._examples[split] = [self.example(row) for row in self._rows(split)]
        return self._examples[split]

    def _rows(self, split: str) -> list[dict]:
        if self.data_files:
            if split not in self.data_files:
                raise OpdbenchError(f"task {self.name!r} has no local file for split {split!r}: "
                                    f"task.params.data_files has {_names(self.data_files)}")
            rows = [row for path in self.data_files[split] for row in _load_file(path)]
            origin = ", ".join(self.data_files[split])
        else:
            if split not in self.sources:
                raise OpdbenchError(f"task {self.name!r} has no {split!r} split: its data has "
                                    f"{_names(self.sources)} ({'; '.join(str(s) for v in self.sources.values() for s in v)}); "
                                    f"give one with task.params.data_files.{split}=FILE.jsonl")
            rows = [row for source in self.sources[split] for row in _load_hub(source)]
            origin = ", ".join(str(s) for s in self.sources[split])
        self._check_columns(rows, origin)
        return rows

    def _check_columns(self, rows: list[dict], origin: str) -> None:
        if not rows:
            raise OpdbenchError(f"task {self.name!r}: no rows in {origin}")
        for i, row in enumerate(rows):
            missing = [c for c in self.columns if c not in row]
            if missing:
                raise OpdbenchError(f"task {self.name!r}: row {i} of {origin} lacks column(s) {missing}; "
                                    f"rows need {list(self.columns)}")


def _load_hub(source: Source) -> list[dict]:
    import datasets

    try:
        return datasets.load_dataset(source.path, source.config, split=source.split).to_list()
    except Exception as err:  # datasets raises many types (ConnectionError, DatasetNotFoundError, ...)
        raise OpdbenchError(f"could not load {source} from the Hugging Face hub: {_first_line(err)}; "
                            "without a hub, point task.params.data_files at local JSON-lines files") from err


def _load_file(path: str) -> list[dict]:
    import datasets

    if not Path(path).is_file():
        raise OpdbenchError(f"data file {path!r} not found (from task.params.data_files)")
    try:
        return datasets.load_dataset("json", data_files={"rows": path}, split="rows").to_list()
    except Exception as err:  # malformed JSON lines, inconsistent types
        raise OpdbenchError(f"could not read {path!r} as JSON lines: {_first_line(err)}") from err


def _as_list(files) -> list[str]:
    return [str(files)] if isinstance(files, (str, Path)) else [str(f) for f in files]


def _names(mapping: dict) -> str:
    return ", ".join(repr(k) for k in mapping) or "none"


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
