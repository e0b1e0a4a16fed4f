"""Every registered baseline trains, the registry explains itself, and the step plumbing is right."""

import json
import math

import pytest
import torch

from opdbench import conf, trainer
from opdbench.cli import main
from opdbench.conf import baseline_files, load_config
from opdbench.errors import OpdbenchError
from opdbench.rollout.hf import sample
from opdbench.chat import encode_prompt
from opdbench.teachers import score

from .helpers import sequence_logits


@pytest.mark.parametrize("method", sorted(baseline_files()))
def test_every_method_trains_the_smoke_budget(tmp_path, method):
    summary = trainer.train(load_config([f"method={method}", "task=math", "budget=smoke", "progress=false",
                                         f"results_dir={tmp_path}", "threads=1"]))
    rows = [json.loads(line) for line in (tmp_path / "default" / method / "math" / "seed=0" / "metrics.jsonl").open()]
    numbers = [v for r in rows for v in r.values() if isinstance(v, float)]
    assert numbers and all(math.isfinite(v) for v in numbers)
    training = method not in ("student_base", "teacher")
    assert summary["steps"] == (3 if training else 0) and len(rows) == summary["steps"] + 1
    if training:
        assert all(r["tokens"] > 0 and r["grad_norm"] >= 0 for r in rows[1:])


@pytest.mark.parametrize("task", ["code", "dialogue"])
def test_k1_trains_on_every_tiny_task(tmp_path, task, monkeypatch):
    from opdbench.tasks import TASKS

    scored = []
    cls = TASKS.get(task)
    real = cls.score_many
    monkeypatch.setattr(cls, "score_many", lambda self, exs, rs: scored.append(len(rs)) or real(self, exs, rs))
    summary = trainer.train(load_config(["method=k1", f"task={task}", "budget=smoke", "progress=false",
                                         f"results_dir={tmp_path}", "threads=1", "train.batch_prompts=16"]))
    assert summary["steps"] == 3 and 0.0 <= summary["mean@8"] <= 1.0
    # every eval scores all 8 x 8 samples; each step scores 64 responses, or the task's sample of them
    limit = trainer.make_task(load_config([f"task={task}"]).task).train_score_max or 64
    assert scored.count(64) >= 3 and scored.count(min(limit, 64)) >= 3


def test_every_baseline_names_its_source():
    for name, path in baseline_files().items():
        text = path.read_text()
        assert text.startswith("# Source:") or text.startswith("# Reference row"), f"{name}.yaml needs its source comment"
        cfg = load_config([f"method={name}"])
        assert cfg.method.name == name and cfg.method.source


def test_the_default_budget_trains_each_task_for_its_own_steps():
    """Every method gets the same steps on a task; a budget or an override may fix them for all."""
    for name in ("math", "dialogue"):
        cfg = load_config([f"task={name}"])
        assert cfg.train.steps == cfg.task.steps
    assert load_config(["task=dialogue"]).train.steps != load_config(["task=math"]).train.steps
    assert load_config(["task=dialogue", "budget=smoke"]).train.steps == 3
    assert load_config(["task=dialogue", "train.steps=9"]).train.steps == 9


def test_methods_command_lists_every_baseline_and_knob_value(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in baseline_files():
        assert f"\n{name} " in out
    assert "shaping: k1, alpha, forward_kl" in out and "ensemble: single," in out


def test_an_unknown_knob_value_in_a_yaml_names_the_valid_ones(tmp_path, monkeypatch):
    (tmp_path / "broken.yaml").write_text("# Source: a test\nname: broken\nshaping: k4\n")
    monkeypatch.setattr(conf, "BASELINES_DIR", tmp_path)
    with pytest.raises(OpdbenchError, match=r"unknown shaping 'k4'; valid: alpha, forward_kl, .*k1"):
        trainer.validate(load_config(["method=broken"]))


@pytest.mark.parametrize("override, message", [
    ("method.credit=gae2", "unknown credit 'gae2'; valid: gae, gamma, none"),
    ("+method.shaping_params.gamma=1", "shaping 'k1' has no parameter gamma; valid: (none)"),
    ("+method.credit_params.gama=1", "credit 'none' has no parameter gama"),
    ("method.ensemble=geo_mean", "ensemble=geo_mean with 1 teachers"),
    ("method.on_policy_fraction=0.5", "needs loss=gkd or loss=nll"),
    ("method.filter_band=[70,30]", "method.filter_band must be [min, max]"),
])
def test_bad_knob_settings_are_one_clear_error(override, message):
    with pytest.raises(OpdbenchError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        trainer.validate(load_config(["method=k1", override]))


def test_mask_tokens_must_exist(tmp_path, tiny_checkpoint):
    cfg = load_config(["budget=smoke", f"models.student={tiny_checkpoint}", f"models.teachers=[{tiny_checkpoint}]",
                       "method.mask_tokens=[nonsense]"])
    with pytest.raises(OpdbenchError, match="not tokens of"):
        trainer.prepare(cfg)


def test_first_occurrences_masks_only_the_first_of_each_token():
    ids = torch.tensor([[5, 7, 5, 9], [7, 7, 1, 1]])
    mask = torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 0]])
    assert trainer.first_occurrences(ids, mask, [5, 7]).tolist() == [[1, 1, 0, 0], [1, 0, 0, 0]]


def test_a_teacher_with_other_prompts_scores_the_same_responses(tiny_model, tokenizer, math_task):
    """OPSD's teacher sees the reference as context: `with_prompts` swaps the prompt block only, and the
    teacher's scores equal those of the same text encoded from scratch."""
    examples = math_task.examples("train")[:3]
    batch = sample(tiny_model, [encode_prompt(tokenizer, ex.prompt) for ex in examples], max_new_tokens=6,
                   eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id,
                   generator=torch.Generator().manual_seed(0))
    with_context = [encode_prompt(tokenizer, ex.prompt, context=ex.reference) for ex in examples]
    teacher_view = batch.with_prompts(with_context, tokenizer.pad_token_id)
    assert torch.equal(teacher_view.response_ids_B_R, batch.response_ids_B_R)
    assert teacher_view.prompt_len == max(len(p) for p in with_context)
    scores = score(tiny_model, teacher_view, top_k=2, micro_batch=2)
    for b, prompt in enumerate(with_context):  # one row at a time, no padding at all
        n = int(batch.response_mask_B_R[b].sum())
        ids = torch.tensor([prompt + batch.response_ids_B_R[b, :n].tolist()])
        logp = sequence_logits(tiny_model, ids)[0, len(prompt) - 1:-1].log_softmax(-1)
        expected = logp.gather(-1, ids[0, len(prompt):, None]).squeeze(-1)
        torch.testing.assert_close(scores.logp_B_R[b, :n], expected, rtol=1e-4, atol=1e-5)


def test_control_tokens_reach_the_student_but_not_the_teachers(tmp_path, tiny_checkpoint):
    cfg = load_config(["budget=smoke", f"results_dir={tmp_path}", f"models.student={tiny_checkpoint}",
                       f"models.teachers=[{tiny_checkpoint},{tiny_checkpoint}]", "method.ensemble=control_token"])
    run = trainer.prepare(cfg)
    seen = {}
    original = trainer.score_all

    def spy(teachers, batch, **kwargs):
        seen["teacher_prompts"] = batch.input_ids_B_L[:, :batch.prompt_len]
        return original(teachers, batch, **kwargs)

    trainer.score_all = spy
    try:
        inputs, _ = trainer.collect(run, run.task.examples("train")[:4], [0, 1, 2, 3], torch.Generator(), 0.0)
    finally:
        trainer.score_all = original
    control = set(run.tokenizer.convert_tokens_to_ids(["<|teacher-0|>", "<|teacher-1|>"]))
    student_prompts = inputs.batch.input_ids_B_L[:, :inputs.batch.prompt_len]
    assert all(control & set(row.tolist()) for row in student_prompts)
    assert not control & set(seen["teacher_prompts"].flatten().tolist())


def test_bench_times_methods_against_k1(capsys):
    assert main(["bench", "k3_naive", "--steps", "1", "--set", "budget=smoke", "--set", "threads=1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["method", "s/step", "x", "k1", "rollout", "teachers", "update"]
    assert [line.split()[0] for line in out[1:]] == ["k1", "k3_naive"] and out[1].split()[2] == "1.00"
