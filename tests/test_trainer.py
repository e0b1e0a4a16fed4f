import json

import pytest
import torch

from opdbench import results
from opdbench import trainer
from opdbench.conf import load_config
from opdbench.feedback import advantages
from opdbench.trainer import train

from .helpers import make_signals


def smoke_overrides(tmp_path, checkpoint, teacher=None, **extra):
    over = ["budget=smoke", f"results_dir={tmp_path / 'runs'}", f"models.student={checkpoint}",
            f"models.teachers=[{teacher or checkpoint}]", "progress=false", "train.steps=2", "eval.every=1",
            "eval.num_prompts=4", "rollout.samples_per_prompt=2"]
    return over + [f"{k}={v}" for k, v in extra.items()]


def test_k1_advantage_is_minus_log_ratio():
    learner = torch.tensor([[-1.0, -2.0, -0.5]])
    teacher = torch.tensor([[-1.5, -1.0, -3.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    adv = advantages(load_config(["method=k1"]).method, make_signals(learner, teacher, mask))
    assert adv.tolist() == [[-0.5, 1.0, 0.0]]  # A = -(log pi_theta - log pi_T)


def _gradient(run, inputs):
    optimizer = trainer.make_optimizer(run)
    optimizer.lr = 0.0  # the weights stay put
    stats, *_ = trainer.update(run, optimizer, inputs)
    return torch.cat([p.grad.flatten() for p in run.student.parameters()]), stats["loss"]


@pytest.mark.parametrize("method", ["k1", "whiten_batch", "filter_kl_30_70"])
def test_loss_does_not_depend_on_micro_batching(tmp_path, tiny_checkpoint, method):
    """The same gradient for any micro-batch size, through the fused path (k1: feedback from the
    gradient pass itself) and the whole-batch path (batch whitening, a percentile filter)."""
    results_ = []
    for micro in (7, 3, 1):
        cfg = load_config(smoke_overrides(tmp_path, tiny_checkpoint, teacher=None, **{
            "method": method, "train.micro_batch": micro, "train.batch_prompts": 7}))
        run = trainer.prepare(cfg)
        examples = run.task.examples("train")[:7]
        inputs, _ = trainer.collect(run, examples, list(range(7)), torch.Generator().manual_seed(0), 0.0)
        results_.append(_gradient(run, inputs))
    for grad, loss in results_[1:]:
        torch.testing.assert_close(grad, results_[0][0], rtol=1e-5, atol=1e-7)
        assert loss == pytest.approx(results_[0][1], rel=1e-5)


def test_fused_and_whole_batch_feedback_agree(tmp_path, tiny_checkpoint, monkeypatch):
    cfg = load_config(smoke_overrides(tmp_path, tiny_checkpoint, **{"train.micro_batch": 3}))
    run = trainer.prepare(cfg)
    inputs, _ = trainer.collect(run, run.task.examples("train")[:4], list(range(4)),
                                torch.Generator().manual_seed(0), 0.0)
    fused = _gradient(run, inputs)
    monkeypatch.setattr(trainer, "needs_whole_batch", lambda method: True)
    torch.testing.assert_close(_gradient(run, inputs)[0], fused[0], rtol=1e-6, atol=1e-8)


def test_train_writes_a_complete_deterministic_cell(tmp_path, tiny_checkpoint):
    summaries = []
    for name in ("a", "b"):
        cfg = load_config(smoke_overrides(tmp_path / name, tiny_checkpoint, seed=3) + [f"eval.cache_dir={tmp_path}/cache"])
        summaries.append(train(cfg))
    cells = [results.cell_dir(tmp_path / n / "runs", "default", "k1", "math", 3) for n in ("a", "b")]
    for cell in cells:
        assert sorted(p.name for p in cell.iterdir()) == [
            "config.yaml", "metrics.jsonl", "provenance.json", "samples.jsonl.gz", "scores.json", "summary.json",
            "timing.jsonl"]
    assert (cells[0] / "metrics.jsonl").read_bytes() == (cells[1] / "metrics.jsonl").read_bytes()
    rows = [json.loads(line) for line in (cells[0] / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]
    for key in ("kl_k1", "kl_k3", "grad_norm", "entropy", "drift", "tokens", "eval/mean@8", "eval/best@8"):
        assert key in rows[1] and rows[1][key] == rows[1][key]  # present and not NaN
    assert summaries[0]["mean@8"] == summaries[1]["mean@8"]
    assert (cells[0] / "samples.jsonl.gz").read_bytes() == (cells[1] / "samples.jsonl.gz").read_bytes()
    scores = json.loads((cells[0] / "scores.json").read_text())
    samples = results.read_jsonl_gz(cells[0] / "samples.jsonl.gz")
    assert scores["step"] == 2 and len(scores["scores"]) * len(scores["scores"][0]) == len(samples)
    assert sum(map(sum, scores["scores"])) / len(samples) == pytest.approx(summaries[0]["mean@8"])
    assert summaries[0]["max_mean@8"] >= summaries[0]["mean@8"]
    # evaluations of unchanged checkpoints are memoized, with the same bytes: here the teacher and
    # the student are one checkpoint, so even the first run's step 0 is the teacher's evaluation
    assert summaries[0]["cached_evals"] == ["step0"] and summaries[1]["cached_evals"] == ["teacher", "step0"]
    prov = json.loads((cells[0] / "provenance.json").read_text())
    assert len(prov["config_sha256"]) == 64 and prov["packages"]["torch"].startswith("2.13")

    df = results.load(tmp_path / "a" / "runs")
    assert df[["method", "task", "seed"]].values.tolist() == [["k1", "math", 3]]
    curves = results.load_metrics(tmp_path / "a" / "runs")
    assert len(curves) == 3 and "wall_s" in curves.columns
    assert results.load_metrics(tmp_path / "a" / "runs", "default").equals(curves)
    assert results.load_metrics(tmp_path / "a" / "runs", "another").empty


def test_provenance_names_every_checkpoint_the_run_loaded(tmp_path):
    """The teacher base too where the method reads it, so a new one marks those cells stale."""
    models = {}
    for method in ("exopd_base_ref", "exopd"):
        cfg = load_config([f"method={method}", "budget=smoke", "progress=false", f"results_dir={tmp_path}",
                           "eval.teacher_reference=false"])
        train(cfg)
        cell = results.cell_dir(tmp_path, "default", method, cfg.task.name, 0)
        models[method] = json.loads((cell / "provenance.json").read_text())["models"]
    assert list(models["exopd_base_ref"]) == ["zoo:student", "zoo:teacher", "zoo:teacher-base"]
    assert models["exopd_base_ref"]["zoo:teacher-base"]["model.safetensors"]  # its checksums, as the others'
    assert list(models["exopd"]) == ["zoo:student", "zoo:teacher"]  # its reference is the student's start


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


def test_a_second_epoch_reuses_the_rollouts_off_policy():
    """train.epochs=2: two optimizer steps on one batch; the second sees a learner that moved."""
    rows = []
    for epochs in (1, 2):
        run = trainer.prepare(load_config(["budget=smoke", "threads=1", f"train.epochs={epochs}"]))
        optimizer = trainer.make_optimizer(run)
        optimizer.lr = 1e-2
        row, _ = trainer.train_step(run, optimizer, run.task.examples("train")[:4], list(range(4)),
                                    torch.Generator().manual_seed(0), 0.0)
        rows.append(row)
    assert rows[0]["drift"] < 1e-5 < rows[1]["drift"]
