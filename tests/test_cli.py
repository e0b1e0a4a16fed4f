import subprocess
import sys

import pytest

from opdbench.cli import main


@pytest.mark.parametrize("args, message", [
    (["method=nope"], "unknown method 'nope'; valid: "),
    (["task=nope"], "unknown task 'nope'; valid: aime, "),
    (["budget=huge"], "unknown budget 'huge'; valid: default, smoke"),
    (["train.lr=-1"], "train.lr must be > 0"),
    (["train.lr=fast"], "train.lr"),
    (["train.nope=1"], "train.nope"),
    (["rollout.top_p=1.5"], "rollout.top_p"),
    (["rollout.backend=vllm"], "rollout=vllm needs the [gpu] extra"),
        (["rollout.backend=sglang"], "rollout.backend must be one of hf, vllm"),
    (["eval.k=9"], "eval.k must be between 1 and eval.n"),
    (["models.student=/no/such/checkpoint"], "not found"),
    (["models.student=zoo:no_such_model"], "zoo model 'zoo:no_such_model' not found"),
])
def test_user_errors_are_one_line_and_leave_nothing(tmp_path, capsys, args, message):
    code = main(["train", f"results_dir={tmp_path / 'runs'}", "budget=smoke", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_a_tokenizer_that_cannot_spell_the_task_is_refused(tmp_path, capsys, tiny_checkpoint):
    """A tokenizer built on math only would train on <unk> for dialogue: one line, nothing written."""
    code = main(["train", f"results_dir={tmp_path / 'runs'}", "budget=smoke", "task=dialogue",
                 f"models.student={tiny_checkpoint}", f"models.teachers=[{tiny_checkpoint}]"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"the tokenizer of '{tiny_checkpoint}' cannot encode task 'dialogue'" in err
    assert not (tmp_path / "runs").exists()


def test_console_script_runs(tmp_path):
    out = subprocess.run([sys.executable, "-m", "opdbench.cli", "methods"], capture_output=True, text=True)
    assert out.returncode == 0 and "k1" in out.stdout


def test_train_on_the_shipped_zoo_prints_the_closing_table(tmp_path, capsys):
    code = main(["train", "method=k1", "task=math", "seed=0", "budget=smoke", "progress=false",
                 f"results_dir={tmp_path / 'runs'}"])
    out = capsys.readouterr().out
    assert code == 0
    for line in ("k1 on math, seed 0: 3 steps", "student, step 0", "student, step 3", "teacher", "results: "):
        assert line in out
    assert (tmp_path / "runs" / "default" / "k1" / "math" / "seed=0" / "summary.json").exists()


def test_distilling_the_zoo_student_into_itself_keeps_it_unchanged(tmp_path, capsys):
    from opdbench.results import load, load_metrics

    code = main(["train", "budget=smoke", "progress=false", "models.teachers=[zoo:student]",
                 f"results_dir={tmp_path / 'runs'}"])
    assert code == 0
    steps = load_metrics(tmp_path / "runs").dropna(subset=["kl_k1"])
    assert (steps["kl_k1"] == 0).all() and (steps["grad_norm"] == 0).all()
    row = load(tmp_path / "runs").iloc[0]
    assert row["mean@8"] == row["step0_mean@8"]
