import os
import tempfile
import warnings

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from opdbench.llama import Llama
from opdbench.tasks.math import MathTask
from opdbench.zoo.tokenizer import build_tokenizer

warnings.filterwarnings("ignore")
# Memoized evaluations (opdbench.evaluate.memoized) go to a fresh folder: tests never read a
# user's cache, nor one left by an earlier test session.
os.environ["OPDBENCH_EVAL_CACHE"] = tempfile.mkdtemp(prefix="opdbench-eval-cache-")
os.environ["OPDBENCH_CONFIG_CACHE"] = tempfile.mkdtemp(prefix="opdbench-config-cache-")  # the leaderboard's
os.environ["OPDBENCH_TASK_CACHE"] = tempfile.mkdtemp(prefix="opdbench-task-cache-")  # generated splits


@pytest.fixture(scope="session")
def math_task():
    return MathTask(sizes={"sft": 200, "train": 200, "eval": 50})


@pytest.fixture(scope="session")
def tokenizer(math_task):
    texts = [t for s in ("sft", "train", "eval") for ex in math_task.examples(s) for t in (ex.prompt, ex.reference)]
    return build_tokenizer(texts)


def make_llama(tokenizer, seed=0, hidden=32, layers=2):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2,
                      max_position_embeddings=128, tie_word_embeddings=True,
                      pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                      eos_token_id=tokenizer.eos_token_id)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(params=["transformers", "opdbench"])
def tiny_model(request, tokenizer):
    """A random tiny Llama, as transformers' LlamaForCausalLM and as opdbench's own Llama (the
    same weights): every sampler and scorer contract must hold for both."""
    model = make_llama(tokenizer)
    return model if request.param == "transformers" else Llama.from_hf(model)


@pytest.fixture
def tiny_checkpoint(tmp_path, tokenizer):
    """A random tiny Llama saved as a real checkpoint folder (config, safetensors, tokenizer)."""
    path = tmp_path / "tiny"
    make_llama(tokenizer).save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path
