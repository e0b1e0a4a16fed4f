"""What produced a result: code version, config hash, package versions, checkpoint checksums."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch

from .zoo import ZOO_DIR, manifest

PACKAGES = ("opdbench", "torch", "transformers", "tokenizers", "hydra-core", "ray", "lm-eval", "numpy", "pandas")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def collect(*, config_hash: str, code_hash: str, code_modules: dict[str, str], models: list[str]) -> dict:
    zoo = manifest().get("models", {})
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "config_sha256": config_hash,
        "code_sha256": code_hash,  # evaluate.code_fingerprint: the source that produces results
        "code_modules": code_modules,  # evaluate.modules_in_use: the part of it this cell ran
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "packages": {p: _version(p) for p in PACKAGES},
        "models": {spec: zoo.get(spec[4:], {}).get("files") if spec.startswith("zoo:") else None
                   for spec in models},
        "zoo_dir": str(ZOO_DIR),
    }
