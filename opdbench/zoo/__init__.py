"""The tiny model zoo: shipped Llama-architecture checkpoints, and loading by zoo name, path or hub name.

`zoo:NAME` resolves to `opdbench/zoo/checkpoints/NAME/`, a plain `save_pretrained` folder (config,
safetensors weights, tokenizer), so the same loaders serve real checkpoints. `manifest.json` there
records each file's sha256, each model's size and its eval scores; `opdbench zoo check` verifies it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from ..errors import OpdbenchError

ZOO_DIR = Path(__file__).parent / "checkpoints"
MANIFEST = ZOO_DIR / "manifest.json"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve(spec: str) -> str:
    """A loadable path or hub name for `zoo:NAME`, a local path, or a hub name."""
    if spec.startswith("zoo:"):
        path = ZOO_DIR / spec[4:]
        if not (path / "config.json").exists():
            raise OpdbenchError(f"zoo model {spec!r} not found at {path}; run `opdbench zoo build` "
                                f"or pick one of: {', '.join(list_models()) or '(none built)'}")
        return str(path)
    if spec.startswith((".", "/", "~")) or Path(spec).exists():
        path = Path(spec).expanduser()
        if not (path / "config.json").exists():
            raise OpdbenchError(f"checkpoint {spec!r} not found (no config.json there); "
                                "pass a save_pretrained folder, a hub name, or zoo:NAME")
        return str(path)
    return spec


def list_models() -> list[str]:
    return sorted(p.parent.name for p in ZOO_DIR.glob("*/config.json"))


def _from_pretrained(loader, spec: str, **kwargs):
    path = resolve(spec)
    try:
        return loader(path, **kwargs)
    except OSError as err:  # offline hub miss, unreadable folder
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise OpdbenchError(f"could not load {spec!r}: {first}") from err


def load_model(spec: str, dtype: str = "float32", native: bool = True):
    """The model of a zoo name, path or hub name, in eval mode.

    A local Llama checkpoint loads as opdbench's own `Llama` (same weights and arithmetic, a
    fraction of the per-op cost and no import of transformers' modeling code, ~6 s); anything
    else, or `native=False`, through transformers' `AutoModelForCausalLM`.
    """
    from ..llama import Llama

    path = resolve(spec)
    if native and Path(path).is_dir():
        try:
            model = Llama.from_pretrained(path, DTYPES[dtype])
        except (OSError, ValueError, KeyError, RuntimeError) as err:  # unreadable or inconsistent files
            raise OpdbenchError(f"could not load {spec!r}: {str(err).strip().splitlines()[0]}") from err
        if model is not None:
            return model
    from transformers import AutoModelForCausalLM

    # Zoo models are so small that SDPA's CPU kernel costs more than it saves (measured: a 64-row
    # forward 31 ms eager vs 43 ms SDPA; decoding 20 % faster); real models keep their default.
    attention = {"attn_implementation": "eager"} if spec.startswith("zoo:") else {}
    model = _from_pretrained(AutoModelForCausalLM.from_pretrained, spec, dtype=DTYPES[dtype], **attention)
    return model.eval()


def hidden_size(model) -> int:
    return model.shape.hidden_size if hasattr(model, "shape") else model.config.get_text_config().hidden_size


def load_tokenizer(spec: str):
    """The tokenizer of a zoo name, path or hub name. A folder the zoo saved loads as `ZooTokenizer`
    (no transformers import, ~1 s); another local folder whose tokenizer is the plain `tokenizers`
    backend loads through that class directly: what `AutoTokenizer` would return, without
    importing its registry (which pulls in the modeling code, ~3.5 s)."""
    from .tokenizer import ZooTokenizer

    path = Path(resolve(spec))
    if path.is_dir() and (tokenizer := ZooTokenizer.load(path)) is not None:
        return tokenizer
    config = path / "tokenizer_config.json"
    if config.exists() and json.loads(config.read_text()).get("tokenizer_class") in PLAIN_TOKENIZERS:
        from transformers import PreTrainedTokenizerFast

        return _from_pretrained(PreTrainedTokenizerFast.from_pretrained, spec)
    from transformers import AutoTokenizer

    return _from_pretrained(AutoTokenizer.from_pretrained, spec)


PLAIN_TOKENIZERS = ("TokenizersBackend", "PreTrainedTokenizerFast")  # one class in transformers 5, two names


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def checksums(folder: Path) -> dict[str, str]:
    return {p.name: sha256(p) for p in sorted(folder.iterdir()) if p.is_file()}


def manifest() -> dict:
    return json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}
