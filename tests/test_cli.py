import subprocess
import sys

import pytest

from opdbench.cli import main


@pytest.mark.parametrize("args, message", [
    (["method=nope"], "unknown method 'nope'; valid: "),
    (["task=nope"], "unknown task 'nope'; valid: math"),
    (["budget=huge"], "unknown budget 'huge'; valid: default, smoke"),
    (["train.lr=-1"], "train.lr must be > 0"),
    (["train.lr=fast"], "train.lr"),
    (["train.nope=1"], "train.nope"),
    (["rollout.top_p=1.5"], "rollout.top_p"),
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


def test_console_script_runs(tmp_path):
    out = subprocess.run([sys.executable, "-m", "opdbench.cli", "methods"], capture_output=True, text=True)
    assert out.returncode == 0 and "k1" in out.stdout
