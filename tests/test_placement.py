"""The real tier's training path, on CPU with the zoo: presets, devices, LoRA, activation
checkpointing, bf16 autocast, frozen teachers, the memory estimate. (What needs a GPU is in
tests/test_rollout_backends.py, skipped without one.)"""

import copy

import pytest
import torch

from opdbench import placement, trainer
from opdbench.conf import CONF_DIR, load_config
from opdbench.errors import OpdbenchError

SMOKE = ["budget=smoke", "progress=false", "threads=1"]


def _step(run):
    """One training step on 4 prompts; returns its metrics row."""
    optimizer = trainer.make_optimizer(run)
    optimizer.lr = 1e-2
    examples = run.task.examples("train")[:4]
    row, _ = trainer.train_step(run, optimizer, examples, list(range(4)), torch.Generator().manual_seed(0), 0.0)
    return row


def test_every_model_preset_composes_and_the_zoo_is_the_default():
    presets = sorted(p.stem for p in (CONF_DIR / "models").glob("*.yaml"))
    assert {"zoo", "qwen3_4b_base__qwen3_4b", "qwen3_0p6b_base__qwen3_1p7b"} <= set(presets)
    for name in presets:
        load_config([f"models={name}"])
    assert load_config([]).models.student == "zoo:student"
    cfg = load_config(["models=qwen3_4b_base__qwen3_4b"])
    assert (cfg.models.student, list(cfg.models.teachers)) == ("Qwen/Qwen3-4B-Base", ["Qwen/Qwen3-4B"])
    assert load_config(["models=qwen3_4b_base__qwen3_4b", "models.student=/data/ckpt"]).models.student == "/data/ckpt"
    with pytest.raises(OpdbenchError, match="unknown models 'nope'; valid: .*zoo"):
        load_config(["models=nope"])


def test_devices_resolve_or_fail_clearly():
    assert placement.resolve_device("cpu") == torch.device("cpu")
    assert placement.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(OpdbenchError, match="device='gpu0'"):
        placement.resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(OpdbenchError, match="no CUDA device"):
            placement.resolve_device("cuda")


def test_teachers_are_frozen_and_can_load_in_bf16():
    run = trainer.prepare(load_config([*SMOKE, "models.teacher_dtype=bfloat16"]))
    params = [p for t in run.teachers for p in t.parameters()]
    assert params and not any(p.requires_grad for p in params)
    assert {p.dtype for p in params} == {torch.bfloat16}
    assert all(p.requires_grad and p.dtype == torch.float32 for p in run.student.parameters())


def test_lora_trains_the_adapters_alone():
    run = trainer.prepare(load_config([*SMOKE, "student.lora.r=4"]))
    named = dict(run.student.named_parameters())
    trainable = {n for n, p in named.items() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert sum(named[n].numel() for n in trainable) < 0.2 * sum(p.numel() for p in named.values())
    before = {n: p.detach().clone() for n, p in named.items()}
    row = _step(run)
    assert torch.isfinite(torch.tensor(row["loss"]))
    changed = {n for n, p in named.items() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable  # the base weights did not move
    # lora_B starts at zero: before the step the adapted model computes what the base model does
    assert row["drift"] < 1e-4


def test_a_lora_cell_runs_end_to_end(tmp_path):
    summary = trainer.train(load_config([*SMOKE, "student.lora.r=2", f"results_dir={tmp_path}"]))
    assert summary["steps"] == 3 and 0 <= summary["mean@8"] <= 1


def test_gradient_checkpointing_gives_the_same_step():
    plain = trainer.prepare(load_config([*SMOKE, "student.lora.r=4"]))
    checkpointed = trainer.prepare(load_config([*SMOKE, "student.lora.r=4", "train.gradient_checkpointing=true"]))
    assert checkpointed.student.is_gradient_checkpointing
    a, b = _step(plain), _step(checkpointed)
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-5) and a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)


def test_bf16_autocast_runs_the_learner_in_bf16_and_keeps_fp32_weights():
    fp32 = _step(trainer.prepare(load_config(SMOKE)))
    run = trainer.prepare(load_config([*SMOKE, "train.autocast=bfloat16"]))
    bf16 = _step(run)
    assert fp32["drift"] < 1e-5 < bf16["drift"]  # the learner's log-probs now carry bf16 rounding
    assert all(p.dtype == torch.float32 for p in run.student.parameters())
    with pytest.raises(OpdbenchError, match="train.autocast='fp8'"):
        placement.autocast("fp8", torch.device("cpu"))
    with pytest.raises(OpdbenchError, match="train.autocast must be one of none, bfloat16"):
        trainer.validate(load_config([*SMOKE, "train.autocast=fp8"]))  # before any model loads


def test_memory_estimate_counts_weights_optimizer_and_logits():
    model = torch.nn.Linear(10, 10)  # 110 fp32 parameters: 440 bytes
    frozen = copy.deepcopy(model).requires_grad_(False)
    total, line = placement.memory_estimate(model, [frozen], micro_batch=2, max_tokens=3, vocab=5)
    assert total * placement.GB == pytest.approx(440 + 3 * 440 + 440 + 2 * 2 * 3 * 5 * 4)
    assert "(2 x 3 tokens x 5" in line and "100% trainable" in line
    run = trainer.prepare(load_config([*SMOKE, "student.lora.r=4"]))
    assert "memory estimate" in trainer.memory_line(run) and "% trainable" in trainer.memory_line(run)


def test_a_lora_student_samples_from_a_merged_copy_that_follows_its_adapters():
    from opdbench.chat import encode_prompt
    from opdbench.policy import response_logits

    run = trainer.prepare(load_config([*SMOKE, "student.lora.r=4"]))
    assert run.rollout_model is not run.student and not hasattr(run.rollout_model, "peft_config")
    _step(run)  # the adapters move off zero
    assert any(p.abs().sum() > 0 for n, p in run.student.named_parameters() if "lora_B" in n)
    prompts = [encode_prompt(run.tokenizer, ex.prompt) for ex in run.task.examples("train")[:4]]
    batch = trainer.rollout(run, run.rollout_model, prompts, [0, 1, 2, 3], torch.Generator().manual_seed(0))
    real = batch.response_mask_B_R.bool()  # (past a row's end, each implementation pads in its own way)
    with torch.no_grad():  # the rollout refreshed the copy first: it computes what the adapted student does
        torch.testing.assert_close(response_logits(run.rollout_model, batch)[real],
                                   response_logits(run.student, batch)[real], rtol=1e-4, atol=1e-4)
    unmerged = trainer.prepare(load_config([*SMOKE, "student.lora.r=4", "student.lora.merged_rollout=false"]))
    assert unmerged.rollout_model is unmerged.student
