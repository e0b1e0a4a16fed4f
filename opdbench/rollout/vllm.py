"""The `vllm` rollout backend (the `[gpu]` extra, vllm==0.32.0): a vLLM engine colocated with the
trainer, sampling with the `hf` backend's semantics.

vLLM is imported only when this backend is built: importing this module, or opdbench.rollout,
costs nothing on a machine without it.

The vLLM APIs relied on (0.32 docs and source):
- `LLM(logprobs_mode="raw_logprobs")` (an EngineArgs/ModelConfig field): log-probs computed from
  the model's logits before temperature, top-p or any other processing (vllm/v1/sample/sampler.py),
  the quantity `hf.sample` records and a learner recomputes.
- `SamplingParams(logprobs=0)`: the sampled token's log-prob alone, in `CompletionOutput.logprobs`.
- `LLM.apply_model(func)`: runs `func` on the model inside each worker (vllm/entrypoints/llm.py);
  the model's `load_weights` takes Hugging Face names, as `named_parameters()` gives them.
- `VLLM_ENABLE_V1_MULTIPROCESSING=0`: the engine runs in this process (docs/usage/reproducibility.md).
"""

from __future__ import annotations

import importlib.util
import os

import torch

from ..errors import OpdbenchError
from ..zoo import resolve
from . import Rollout, left_pad

REQUIREMENTS = "rollout=vllm needs the [gpu] extra (pip install -e '.[gpu]') and a CUDA device"
# SamplingParams raises any temperature in (0, 0.01) to 0.01; at such temperatures the hf backend
# samples the argmax but for near-ties, so below it this backend decodes greedily.
LOWEST_VLLM_TEMPERATURE = 0.01
# Of the GPU's memory, the engine's share (weights, activations, KV cache); the trainer keeps the rest.
GPU_MEMORY_UTILIZATION = 0.4


def missing_requirement() -> str | None:
    """Why this backend cannot run here, or None."""
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed"
    if not torch.cuda.is_available():
        return "no CUDA device"
    return None


def build(options, model_spec: str, dtype: str) -> VLLMSampler:
    """BACKENDS' `vllm` factory: an engine on the checkpoint of `model_spec`, in `dtype`."""
    missing = missing_requirement()
    if missing:
        raise OpdbenchError(f"{REQUIREMENTS}: {missing}")
    return VLLMSampler(resolve(model_spec), dtype,
                       gpu_memory_utilization=options.get("gpu_memory_utilization", GPU_MEMORY_UTILIZATION))


class VLLMSampler:
    """A vLLM engine in the trainer's process, on its GPU. In-process, `sync` hands the engine the
    student's own tensors (no copy through another process), and scheduling is deterministic, so
    per-request seeds reproduce the samples."""

    def __init__(self, checkpoint: str, dtype: str, gpu_memory_utilization: float):
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # read when the engine is built
        from vllm import LLM

        self.llm = LLM(model=checkpoint, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
                       logprobs_mode="raw_logprobs",
                       skip_tokenizer_init=True)  # token ids in and out: no text to (de)tokenize

    def sample(self, model, prompts: list[list[int]], *, max_new_tokens: int, eos_id: int, pad_id: int,
               temperature: float, top_p: float, generator: torch.Generator, group: list[int] | None) -> Rollout:
        """As `hf.sample`, from the engine's weights: `model`'s as of the last `sync` (`model` itself is not read)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        B = len(prompts)
        # A seed per row, from the run's generator: rows repeating a prompt are sampled independently,
        # and the same generator state gives the same samples.
        seeds = torch.randint(2**31 - 1, (B,), generator=generator).tolist()
        params = [SamplingParams(temperature=temperature if temperature >= LOWEST_VLLM_TEMPERATURE else 0.0,
                                 top_p=top_p, max_tokens=max_new_tokens, seed=seed,
                                 # Stop at eos_id alone, as hf does (not at the checkpoint's other EOS
                                 # ids); the stop token stays in token_ids.
                                 ignore_eos=True, stop_token_ids=[eos_id],
                                 logprobs=0, detokenize=False)
                  for seed in seeds]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], params, use_tqdm=False)
        completions = [out.outputs[0] for out in outputs]

        R = max(len(c.token_ids) for c in completions)
        response_B_R = torch.full((B, R), pad_id, dtype=torch.long)
        response_mask_B_R = torch.zeros(B, R)
        rollout_logp_B_R = torch.zeros(B, R)
        for b, c in enumerate(completions):
            n = len(c.token_ids)
            response_B_R[b, :n] = torch.tensor(c.token_ids, dtype=torch.long)
            response_mask_B_R[b, :n] = 1.0
            rollout_logp_B_R[b, :n] = torch.tensor([step[t].logprob for step, t in zip(c.logprobs, c.token_ids)])
        prompt_ids, prompt_mask = left_pad(prompts, pad_id)
        return Rollout(
            input_ids_B_L=torch.cat([prompt_ids, response_B_R], 1),
            attention_mask_B_L=torch.cat([prompt_mask, response_mask_B_R.long()], 1),
            prompt_len=prompt_ids.shape[1],
            response_mask_B_R=response_mask_B_R,
            rollout_logp_B_R=rollout_logp_B_R,
            group_B=torch.tensor(group if group is not None else list(range(B)), dtype=torch.long),
        )

    def sync(self, model) -> None:
        """Copy `model`'s parameters into the engine's model, in place (its `load_weights` fuses
        q/k/v and gate/up and casts to the engine's dtype), then drop the prefix cache: its keys
        and values came from the old weights."""
        weights = [(name, p.detach()) for name, p in model.named_parameters()]
        self.llm.apply_model(lambda engine_model: engine_model.load_weights(weights))
        self.llm.reset_prefix_cache()
