"""Real-tier tasks, loaded offline from the JSON-lines fixtures (the hub datasets' own columns)."""

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from opdbench.conf import load_config
from opdbench.errors import OpdbenchError
from opdbench.tasks import TASKS, make_task
from opdbench.tasks.real import AIMETask, GSM8KTask, IFEvalTask, Math500Task, ifeval
from opdbench.tasks.real.code import extract_program
from opdbench.tasks.real.math import final_answer, is_equivalent

FIXTURES = Path(__file__).parent / "fixtures" / "real"
DATA_FILES = {
    "gsm8k": {"train": FIXTURES / "gsm8k/train.jsonl", "eval": FIXTURES / "gsm8k/test.jsonl"},
    "math500": {"eval": FIXTURES / "math500/test.jsonl"},
    "aime": {"eval": [FIXTURES / "aime/aime_2024.jsonl", FIXTURES / "aime/aime_2025.jsonl"]},
    "mbpp": {"train": FIXTURES / "mbpp/train.jsonl", "eval": FIXTURES / "mbpp/test.jsonl"},
    "humaneval": {"eval": FIXTURES / "humaneval/test.jsonl"},
    "ifeval": {"eval": FIXTURES / "ifeval/train.jsonl"},
}
EXTRA = {"mbpp": {"timeout_s": 1.0}, "humaneval": {"timeout_s": 1.0}, "ifeval": {"punkt_fallback": True}}


@pytest.fixture(scope="module")
def tasks():
    """One instance of each real task on its fixtures (IFEval imports lm-eval once: ~2 s)."""
    return {name: TASKS.get(name)(data_files=files, **EXTRA.get(name, {})) for name, files in DATA_FILES.items()}


def _rows(files) -> int:
    files = files if isinstance(files, list) else [files]
    return sum(len(f.read_text().splitlines()) for f in files)


@pytest.mark.parametrize("name", sorted(DATA_FILES))
def test_every_split_loads_and_references_score_one(tasks, name):
    task = tasks[name]
    for split, files in DATA_FILES[name].items():
        examples = task.examples(split)
        assert len(examples) == _rows(files) > 0
        assert all(ex.prompt.strip() for ex in examples)
        if name != "ifeval":  # IFEval has no reference responses
            assert [task.score(ex, ex.reference) for ex in examples] == [1.0] * len(examples)
            assert [task.score(ex, "I do not know.") for ex in examples] == [0.0] * len(examples)


@pytest.mark.parametrize("name", sorted(DATA_FILES))
def test_task_config_composes_and_loads_local_files(name):
    files = {split: (f"[{','.join(map(str, f))}]" if isinstance(f, list) else str(f)) for split, f in DATA_FILES[name].items()}
    overrides = [f"task={name}", "task.params.data_files={" + ",".join(f"{k}:{v}" for k, v in files.items()) + "}"]
    overrides += [f"task.params.{k}={str(v).lower()}" for k, v in EXTRA.get(name, {}).items()]
    task = make_task(load_config(overrides).task)
    assert task.name == name and len(task.examples("eval")) > 0


def test_gsm8k_target_and_reference_follow_the_hash_convention(tasks):
    ex = tasks["gsm8k"].examples("eval")[2]
    assert ex.target == "70000"  # "#### 70000"; commas would be dropped too
    assert "<<" not in ex.reference and ex.reference.endswith("\\boxed{70000}.")


def test_aime_years_pick_hub_sources_and_bad_years_fail():
    assert [s.path for s in AIMETask(years=[2025]).sources["eval"]] == ["math-ai/aime25"]
    with pytest.raises(OpdbenchError, match=r"task.params.years=\[2023\]; valid years: \[2024, 2025\]"):
        AIMETask(years=[2023])


def test_a_split_the_dataset_lacks_names_what_exists():
    with pytest.raises(OpdbenchError, match=r"task 'math500' has no 'train' split: its data has 'eval'.*MATH-500"):
        Math500Task().examples("train")  # no network: the split check comes first
    with pytest.raises(OpdbenchError, match=r"no local file for split 'train': task.params.data_files has 'eval'"):
        Math500Task(data_files=DATA_FILES["math500"]).examples("train")
    with pytest.raises(OpdbenchError, match="has no 'sft' split"):
        GSM8KTask().examples("sft")


def test_unreachable_hub_is_one_clear_error(monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(OpdbenchError, match=r"could not load openai/gsm8k:main \('test' split\).*data_files"):
        GSM8KTask().examples("eval")


def test_bad_local_files_are_clear_errors(tmp_path):
    with pytest.raises(OpdbenchError, match=r"bad task.params.data_files keys \['test'\]"):
        GSM8KTask(data_files={"test": DATA_FILES["gsm8k"]["eval"]})
    with pytest.raises(OpdbenchError, match="not found"):
        GSM8KTask(data_files={"eval": tmp_path / "missing.jsonl"}).examples("eval")
    with pytest.raises(OpdbenchError, match=r"lacks column\(s\) \['question'\]"):
        GSM8KTask(data_files={"eval": DATA_FILES["math500"]["eval"]}).examples("eval")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "q", "answer": "#### 1"}\n{not json\n')
    with pytest.raises(OpdbenchError, match="could not read .* as JSON lines"):
        GSM8KTask(data_files={"eval": broken}).examples("eval")


# ---- math ----

@pytest.mark.parametrize("response, answer", [
    ("so x = 3, and \\boxed{\\frac{14}{3}}", "\\frac{14}{3}"),
    ("first \\boxed{1} then \\boxed{2}", "2"),  # the last box is the answer
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("work\nThe final answer is $18$.", "18"),
    ("**Answer:** 42", "42"),
    ("12+7=19. 19-5=14. answer: 14", "14"),  # the tiny tier's convention
    ("unclosed \\boxed{3\nanswer: 3", "3"),  # a broken box falls back to the answer line
    ("no commitment, just 18", None),
    ("", None),
])
def test_final_answer(response, answer):
    assert final_answer(response) == answer


@pytest.mark.parametrize("gold, answer, same", [
    ("\\frac{1}{2}", "0.5", True), ("70000", "70,000", True), ("14/3", "\\dfrac{14}{3}", True),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\pi/2)", True), ("025", "25", True),
    ("2\\sqrt{2}", "\\sqrt{8}", True), ("\\text{Evelyn}", "Evelyn", True),
    ("18", "19", False), ("\\frac{14}{3}", "4.67", False), ("9", "x" * 400, False),
])
def test_math_equivalence(gold, answer, same):
    assert is_equivalent(gold, answer) is same


def test_math_scores_outside_the_main_thread(tasks):
    """math-verify's time limit needs the main thread; elsewhere it would fail every answer."""
    task = tasks["math500"]
    ex = task.examples("eval")[1]
    scores = []
    worker = threading.Thread(target=lambda: scores.append(task.score(ex, "so \\boxed{14/3}")))
    worker.start(), worker.join()
    assert scores == [1.0]


# ---- code ----

def test_extract_program():
    assert extract_program("Here:\n```text\nout\n```\n```python\ndef f():\n    return 1\n```\nDone") == "def f():\n    return 1\n"
    assert extract_program("```\nx = 1\n```") == "x = 1\n"
    assert extract_program("```python\ndef f():\n    return 2") == "def f():\n    return 2"  # cut off mid-block
    assert extract_program("    return x\n") == "    return x\n"  # raw code keeps its indentation


def test_mbpp_scores_the_fraction_of_tests_passed(tasks):
    task = tasks["mbpp"]
    ex = task.examples("eval")[2]  # find_Volume(l, b, h): 240, 6, 1
    assert task.score(ex, "```python\ndef find_Volume(l, b, h):\n    return l * b * h // 2\n```") == 1.0
    assert task.score(ex, "```python\ndef find_Volume(l, b, h):\n    return 6 if l == 3 else 0\n```") == pytest.approx(1 / 3)
    with_setup = task.examples("train")[1]  # its tests call isclose, which only test_setup_code imports
    assert with_setup.target["setup"] == "from math import isclose"
    assert task.score(with_setup, "def circle_area(r):\n    return 3.141592653589793 * r * r\n") == 1.0


def test_humaneval_accepts_a_whole_function_or_a_body(tasks):
    task = tasks["humaneval"]
    truncate, decode = task.examples("eval")[1], task.examples("eval")[2]
    assert task.score(truncate, "    return number % 1.0\n") == 1.0  # continues the stub
    assert task.score(truncate, "```python\ndef truncate_number(number):\n    return number - int(number)\n```") == 1.0
    assert task.score(truncate, "```python\ndef truncate_number(number):\n    return number\n```") == 0.0
    # the stub's helper (encode_cyclic) stays available to a whole-function answer
    assert task.score(decode, "```python\ndef decode_cyclic(s):\n    return encode_cyclic(encode_cyclic(s))\n```") == 1.0


# ---- IFEval ----

def test_ifeval_gives_partial_credit_per_instruction(tasks):
    task = tasks["ifeval"]
    summary, _, _, lowercase, german = task.examples("eval")
    short = "*Early life* Raymond was born in Tripoli. *Rule* He ruled well. *Legacy* He is remembered."
    assert task.score(summary, short) == pytest.approx(2 / 3)  # no commas, 3 highlights, but not 300 words
    assert task.score(summary, short.replace("born", "born, raised")) == pytest.approx(1 / 3)
    assert task.score(lowercase, "the cat sat. the cat slept. the end.") == 1.0
    assert task.score(lowercase, "the cat sat. the cat slept. the cat woke. the cat ate. the end.") == 0.5
    assert task.score(lowercase, "The cat sat.") == 0.5
    assert task.score(german, "Der Hund ist GROSS und SEHR SCHNELL. Er rennt jeden Tag im Park und bellt laut.") == 1.0
    assert task.score(german, "The dog is big and very fast. He runs in the park every day.") == 0.0


def test_ifeval_without_punkt_data_is_an_error_unless_the_fallback_is_chosen(monkeypatch, capsys):
    monkeypatch.setattr(ifeval, "punkt_available", lambda: False)
    with pytest.raises(OpdbenchError, match=r"needs nltk's punkt_tab data.*task.params.punkt_fallback=true"):
        IFEvalTask(data_files=DATA_FILES["ifeval"])
    IFEvalTask(data_files=DATA_FILES["ifeval"], punkt_fallback=True)
    assert "warning: ifeval: nltk punkt_tab data not found" in capsys.readouterr().err


# ---- no response breaks a scorer ----

HOSTILE = ["", "   \n", None, 123, b"bytes", "garbage", "\x00\udcff\ufffd", "🙂 ünïcödé " * 200,
           "\\boxed{" * 5000, "}" * 5000 + "\\boxed{", "answer: " + " " * 100_000 + "x",
           "```python\n" * 2000, "9" * 1_000_000, "answer: " + "(" * 400,
           "```python\nimport os\nos._exit(0)\n```", "```python\nwhile True: pass\n```",
           "```python\nraise SystemExit\n```", "\\boxed{\\frac{1}{0}}", "\\boxed{10^{10^{10^{10}}}}"]


@pytest.mark.parametrize("name", sorted(DATA_FILES))
def test_scorers_survive_hostile_responses(tasks, name):
    task = tasks[name]
    example = task.examples("eval")[0]
    for response in HOSTILE:
        score = task.score(example, response)
        assert isinstance(score, float) and 0.0 <= score <= 1.0, (response if not isinstance(response, str) else response[:40])
    assert task.score_many([example] * 2, ["", None]) == [0.0, 0.0]


def test_fixtures_have_the_hub_columns():
    """The fixtures mirror each hub dataset's schema (column names), so the hub path reads the same keys."""
    expected = {"gsm8k": {"question", "answer"},
                "math500": {"problem", "solution", "answer", "subject", "level", "unique_id"},
                "aime/aime_2024": {"id", "problem", "solution", "answer", "url", "year"},
                "aime/aime_2025": {"problem", "answer", "id"},
                "mbpp": {"task_id", "text", "code", "test_list", "test_setup_code", "challenge_test_list"},
                "humaneval": {"task_id", "prompt", "canonical_solution", "test", "entry_point"},
                "ifeval": {"key", "prompt", "instruction_id_list", "kwargs"}}
    for prefix, columns in expected.items():
        files = sorted(FIXTURES.glob(f"{prefix}*.jsonl" if "/" in prefix else f"{prefix}/*.jsonl"))
        assert files, prefix
        for f in files:
            assert all(set(json.loads(line)) == columns for line in f.read_text().splitlines()), f


def test_real_tasks_are_registered_lazily_and_resolve_to_their_classes():
    script = ("import sys\nfrom opdbench.tasks import TASKS\n"
              "assert not [m for m in sys.modules if m.startswith('opdbench.tasks.real')]\n"
              "print(TASKS.get('gsm8k').__name__, TASKS.get('ifeval').__module__)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["GSM8KTask", "opdbench.tasks.real.ifeval"], out.stderr
    assert TASKS.get("aime") is AIMETask and TASKS.get("math500") is Math500Task
    with pytest.raises(ValueError, match="registered twice"):
        TASKS.register_lazy("gsm8k", "opdbench.tasks.real.math:GSM8KTask")
