"""Where and how the models run: devices, bf16 autocast, LoRA adapters, activation checkpointing,
and the memory estimate printed before training. The tiny tier uses none of it (CPU, float32,
full fine-tuning); the real tier (DESIGN.md, "Real tier") turns each on from the config.
"""

from __future__ import annotations

import contextlib
import copy

import torch

from .errors import OpdbenchError

GB = 1024 ** 3


def resolve_device(name: str) -> torch.device:
    """`cpu`, `cuda`, `cuda:N`, or `auto` (a GPU when there is one)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise OpdbenchError(f"bad value: device={name!r} ({err}); use cpu, cuda, cuda:N or auto") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OpdbenchError(f"device={name}: torch sees no CUDA device here; use device=cpu (or device=auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise OpdbenchError(f"device={name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


AUTOCAST = ("none", "bfloat16")  # train.autocast's values


def autocast(precision: str, device: torch.device):
    """The forward passes' precision: `none` (the weights' own) or `bfloat16` under torch.autocast,
    where matmuls run in bf16 while the weights, gradients and optimizer state stay float32."""
    if precision == "none":
        return contextlib.nullcontext()
    if precision not in AUTOCAST:
        raise OpdbenchError(f"bad value: train.autocast={precision!r}; valid: {', '.join(AUTOCAST)}")
    return torch.autocast(device.type, dtype=torch.bfloat16)


def linear_layers(model) -> list[str]:
    """Names (last component) of the model's linear layers, the output head excepted: LoRA's default targets."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear) and module is not head})


def add_lora(model, lora) -> torch.nn.Module:
    """Wrap `model` with rank-`lora.r` adapters (peft): its own weights freeze, the adapters train
    (they start at zero, so the wrapped model computes what it did)."""
    try:
        import peft
    except ImportError as err:
        raise OpdbenchError("student.lora.r > 0 needs peft: pip install -e \".[lora]\"") from err
    config = peft.LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                             target_modules=list(lora.target_modules) or linear_layers(model))
    return peft.get_peft_model(model, config)


def merged_copy(adapted) -> torch.nn.Module:
    """A plain copy of a peft-adapted model with its adapters merged into the weights (`copy_weights`
    refreshes it): the same function without the adapters' extra matmuls, for sampling; in
    opdbench's own Llama where it covers the architecture (the tiny tier's fast path)."""
    from .llama import Llama

    plain = copy.deepcopy(adapted).merge_and_unload()
    return Llama.from_hf(plain) or plain


def copy_weights(copy_of_student, student) -> None:
    """Give a copy of the student (in another dtype, or `merged_copy`) the student's current weights."""
    if not hasattr(student, "peft_config"):
        copy_of_student.load_state_dict(student.state_dict())  # cast to the copy's dtype
        return
    from peft.tuners.lora import LoraLayer

    with torch.no_grad():  # only the adapted layers change: the rest of a LoRA student is frozen
        for name, layer in student.get_base_model().named_modules():
            if isinstance(layer, LoraLayer):
                merged = layer.get_base_layer().weight + sum(layer.get_delta_weight(a) for a in layer.active_adapters)
                copy_of_student.get_submodule(name).weight.copy_(merged)


def enable_checkpointing(model) -> None:
    if not hasattr(model, "gradient_checkpointing_enable"):
        raise OpdbenchError("train.gradient_checkpointing needs a transformers model")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if hasattr(model, "enable_input_require_grads"):  # frozen embeddings (LoRA): checkpoints still get a graph
        model.enable_input_require_grads()


def _bytes(model) -> tuple[int, int]:
    """(bytes of trainable parameters, bytes of frozen ones)."""
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() * p.element_size() for p in model.parameters()) - trainable


def memory_estimate(student, teachers, *, micro_batch: int, max_tokens: int, vocab: int,
                    extra_models=()) -> tuple[float, str]:
    """(GB, one line): weights, gradients and AdamW's two moments of what trains, the frozen
    weights, and the largest single activation, the float32 logits of a micro-batch (each forward
    keeps them, and their log-softmax, alive): usually what runs out first at a real vocabulary."""
    trainable, frozen = _bytes(student)
    optimizer_state = 3 * trainable  # gradient + exp_avg + exp_avg_sq, each the parameter's size (fp32)
    others = sum(sum(_bytes(m)) for m in [*teachers, *extra_models])
    logits = 2 * micro_batch * max_tokens * vocab * 4
    total = trainable + optimizer_state + frozen + others + logits
    line = (f"memory estimate: {_size(total)} = student {_size(trainable + frozen)} "
            f"({trainable / max(trainable + frozen, 1):.0%} trainable) + gradients and AdamW {_size(optimizer_state)}"
            f" + teachers and references {_size(others)} + logits of a micro-batch {_size(logits)} "
            f"({micro_batch} x {max_tokens} tokens x {vocab}; lower train.micro_batch to shrink it)")
    return total / GB, line


def _size(n_bytes: float) -> str:
    return f"{n_bytes / GB:.2f} GB" if n_bytes >= GB / 10 else f"{n_bytes / 1024 ** 2:.1f} MB"
