"""mean@k and best@k on a task's held-out prompts (METHODS.md §8)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from math import comb
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .chat import decode_responses, encode_prompt
from .rollout import hf


def mean_at_k(scores: list[float]) -> float:
    """Mean score of the samples (with n samples, the unbiased mean@k for any k <= n)."""
    return sum(scores) / len(scores)


def best_at_k(scores: list[float], k: int) -> float:
    """Expected max score over a uniformly random k-subset of the n samples.

    With the scores sorted ascending, the i-th smallest (1-based) is the max of exactly C(i-1, k-1)
    of the C(n, k) subsets. For binary scores this is the unbiased pass@k, 1 - C(n-c, k)/C(n, k).
    """
    n = len(scores)
    if not 1 <= k <= n:
        raise ValueError(f"best@k needs 1 <= k <= n, got k={k}, n={n}")
    ordered = sorted(scores)
    return sum(s * comb(i, k - 1) for i, s in enumerate(ordered)) / comb(n, k)


@torch.no_grad()
def evaluate(model, tokenizer, task, *, split: str = "eval", num_prompts: int = 200, n: int = 8,
             k: int = 8, temperature: float = 0.7, top_p: float = 0.9, seed: int = 0,
             batch_size: int = 1600, progress: bool = False, context: bool = False) -> tuple[dict, list[dict]]:
    """Sample n responses per prompt and return ({'mean@k', 'best@k'}, per-sample records).

    `context=True` renders each prompt with its reference as privileged context (a `<|context|>`
    turn), to measure how well a model uses it (the OPSD self-teacher's view).

    The same `seed` at every evaluation gives common random numbers across steps and methods,
    which removes sampling noise from the comparisons that matter.
    """
    examples = task.examples(split)[:num_prompts]
    prompt_ids = [encode_prompt(tokenizer, ex.prompt, context=ex.reference if context else None) for ex in examples]
    rows = [(i, j) for i in range(len(examples)) for j in range(n)]
    generator = torch.Generator().manual_seed(seed)
    scores = [[0.0] * n for _ in examples]
    samples = []
    chunks = range(0, len(rows), batch_size)
    for start in tqdm(chunks, desc="eval", leave=False, disable=not progress):
        chunk = rows[start:start + batch_size]
        batch = hf.sample(model, [prompt_ids[i] for i, _ in chunk], max_new_tokens=task.max_new_tokens,
                          eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id,
                          temperature=temperature, top_p=top_p, generator=generator)
        texts = decode_responses(tokenizer, batch.response_ids_B_R, batch.response_mask_B_R)
        chunk_scores = task.score_many([examples[i] for i, _ in chunk], texts)
        for (i, j), text, score in zip(chunk, texts, chunk_scores):
            scores[i][j] = score
            samples.append({"prompt_index": i, "sample": j, "response": text, "score": score})
    metrics = {
        f"mean@{k}": sum(mean_at_k(s) for s in scores) / len(scores),
        f"best@{k}": sum(best_at_k(s, k) for s in scores) / len(scores),
    }
    return metrics, samples


def score_matrix(samples: list[dict]) -> list[list[float]]:
    """The samples' scores as prompts x samples, the unit that statistics resample (stats.cell_ci)."""
    scores: dict[int, dict[int, float]] = {}
    for record in samples:
        scores.setdefault(record["prompt_index"], {})[record["sample"]] = record["score"]
    return [[row[j] for j in sorted(row)] for _, row in sorted(scores.items())]


# Modules that read results but never produce them: editing them changes no cell.
NOT_IN_RESULTS = ("cli.py", "bench.py", "sweep.py", "lm_eval_export.py", "report/")
PACKAGE_DIR = Path(__file__).resolve().parent


def source_hashes(paths: list[Path] | None = None) -> dict[str, str]:
    """sha256 of each opdbench source file that produces results (all of them, or these), keyed by
    its path in the package."""
    hashes = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py") if paths is None else paths):
        name = path.relative_to(PACKAGE_DIR).as_posix()
        if not name.startswith(NOT_IN_RESULTS):
            hashes[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def modules_in_use() -> dict[str, str]:
    """`source_hashes` of the opdbench modules this process has imported: the code a cell ran.
    A cell records them, so that editing a module it never imported (the GPU backend, a real-tier
    task) does not mark it stale. (A reused worker process may list a few more: never fewer.)"""
    files = {Path(m.__file__).resolve() for m in list(sys.modules.values()) if getattr(m, "__file__", None)}
    return source_hashes([f for f in files if f.is_relative_to(PACKAGE_DIR) and f.suffix == ".py"])


def code_fingerprint() -> str:
    """One sha256 over every `source_hashes` entry: any change to how a model trains, samples or a
    task scores invalidates every memoized evaluation."""
    return hashlib.sha256(json.dumps(source_hashes(), sort_keys=True).encode()).hexdigest()


def memoized(cache_dir: str | None, key: dict | None, compute) -> tuple[dict, bool]:
    """`compute()`'s metrics, or the ones it returned before for the same key (and whether they
    were). For evaluations of frozen checkpoints, which are pure functions of what the key names:
    the teacher reference and a student's step 0 come out the same for every method and seed of a
    task, so a sweep pays each once. `key` None (a model without files, e.g. a hub name) or
    `cache_dir` None computes every time."""
    if cache_dir is None or key is None:
        return compute(), False
    digest = hashlib.sha256(json.dumps({**key, "code": code_fingerprint(), "torch": torch.__version__,
                                        "threads": torch.get_num_threads()}, sort_keys=True).encode()).hexdigest()
    path = Path(cache_dir).expanduser() / f"{digest}.json"
    if path.exists():
        return json.loads(path.read_text()), True
    metrics = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(metrics, sort_keys=True))
    os.replace(tmp, path)
    return metrics, False
