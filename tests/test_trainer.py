import json

import pytest
import torch

from opdbench import results
from opdbench.chat import encode_prompt
from opdbench.conf import load_config
from opdbench.feedback import Signals, advantages
from opdbench.rollout.hf import sample
from opdbench.trainer import train, update


def smoke_overrides(tmp_path, checkpoint, teacher=None, **extra):
    over = ["budget=smoke", f"results_dir={tmp_path / 'runs'}", f"models.student={checkpoint}",
            f"models.teachers=[{teacher or checkpoint}]", "progress=false", "train.steps=2", "eval.every=1",
            "eval.num_prompts=4", "rollout.samples_per_prompt=2"]
    return over + [f"{k}={v}" for k, v in extra.items()]


def test_k1_advantage_is_minus_log_ratio():
    learner = torch.tensor([[-1.0, -2.0, -0.5]])
    teacher = torch.tensor([[-1.5, -1.0, -3.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    signals = Signals(learner, learner, teacher, mask, torch.zeros(1, dtype=torch.long))
    adv = advantages(load_config(["method=k1"]).method, signals)
    assert adv.tolist() == [[-0.5, 1.0, 0.0]]  # A = -(log pi_theta - log pi_T)


def test_loss_does_not_depend_on_micro_batching(tiny_model, tokenizer, math_task):
    prompts = [encode_prompt(tokenizer, ex.prompt) for ex in math_task.examples("train")[:7]]
    batch = sample(tiny_model, prompts, max_new_tokens=10, eos_id=tokenizer.eos_token_id,
                   pad_id=tokenizer.pad_token_id, generator=torch.Generator().manual_seed(0))
    adv = torch.randn(batch.response_mask_B_R.shape, generator=torch.Generator().manual_seed(1))
    grads, losses = [], []
    for micro in (7, 3, 1):
        opt = torch.optim.SGD(tiny_model.parameters(), lr=0.0)  # lr 0: the weights stay put
        stats, _, _ = update(tiny_model, opt, batch, lambda rows, logp: adv[rows, :logp.shape[1]],
                             micro_batch=micro, grad_clip=1e9)
        grads.append(torch.cat([p.grad.flatten() for p in tiny_model.parameters()]))
        losses.append(stats["loss"])
    for g, loss in zip(grads[1:], losses[1:]):
        torch.testing.assert_close(g, grads[0], rtol=1e-5, atol=1e-7)
        assert loss == pytest.approx(losses[0], rel=1e-5)


def test_train_writes_a_complete_deterministic_cell(tmp_path, tiny_checkpoint):
    summaries = []
    for name in ("a", "b"):
        cfg = load_config(smoke_overrides(tmp_path / name, tiny_checkpoint, seed=3))
        summaries.append(train(cfg))
    cells = [results.cell_dir(tmp_path / n / "runs", "default", "k1", "math", 3) for n in ("a", "b")]
    for cell in cells:
        assert sorted(p.name for p in cell.iterdir()) == [
            "config.yaml", "metrics.jsonl", "provenance.json", "samples.jsonl", "summary.json", "timing.jsonl"]
    assert (cells[0] / "metrics.jsonl").read_bytes() == (cells[1] / "metrics.jsonl").read_bytes()
    rows = [json.loads(line) for line in (cells[0] / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]
    for key in ("kl_k1", "kl_k3", "grad_norm", "entropy", "drift", "tokens", "eval/mean@8", "eval/best@8"):
        assert key in rows[1] and rows[1][key] == rows[1][key]  # present and not NaN
    assert summaries[0]["mean@8"] == summaries[1]["mean@8"]
    prov = json.loads((cells[0] / "provenance.json").read_text())
    assert len(prov["config_sha256"]) == 64 and prov["packages"]["torch"].startswith("2.13")

    df = results.load(tmp_path / "a" / "runs")
    assert df[["method", "task", "seed"]].values.tolist() == [["k1", "math", 3]]
    curves = results.load_metrics(tmp_path / "a" / "runs")
    assert len(curves) == 3 and "wall_s" in curves.columns


def test_distilling_a_model_into_itself_changes_nothing(tmp_path, tiny_checkpoint):
    cfg = load_config(smoke_overrides(tmp_path, tiny_checkpoint))
    summary = train(cfg)
    cell = results.cell_dir(tmp_path / "runs", "default", "k1", "math", 0)
    rows = [json.loads(line) for line in (cell / "metrics.jsonl").read_text().splitlines()][1:]
    assert all(r["kl_k1"] == 0.0 and r["adv_mean"] == 0.0 and r["grad_norm"] == 0.0 for r in rows)
    assert summary["mean@8"] == summary["step0_mean@8"]  # zero advantage → zero update


def test_a_failure_leaves_no_partial_cell(tmp_path, tiny_checkpoint, monkeypatch):
    import opdbench.trainer as trainer

    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(trainer, "update", boom)
    with pytest.raises(RuntimeError):
        train(load_config(smoke_overrides(tmp_path, tiny_checkpoint)))
    task_dir = tmp_path / "runs" / "default" / "k1" / "math"
    assert list(task_dir.iterdir()) == []
    assert results.load(tmp_path / "runs").empty


def test_rerun_replaces_a_cell_atomically(tmp_path, tiny_checkpoint):
    cfg = load_config(smoke_overrides(tmp_path, tiny_checkpoint, **{"train.steps": 1}))
    train(cfg)
    train(cfg)
    task_dir = tmp_path / "runs" / "default" / "k1" / "math"
    assert [p.name for p in task_dir.iterdir()] == ["seed=0"]
