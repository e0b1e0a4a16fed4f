"""The lm-eval export: the shipped folder, the prompt ids lm-eval feeds, scoring, and runs end to end."""

import importlib.util
import json
import re
import shutil
from dataclasses import asdict

import pytest
from omegaconf import OmegaConf

from opdbench.chat import encode_prompt, render_prompt
from opdbench.cli import main
from opdbench.conf import REPO_DIR
from opdbench.conf.schema import EvalConfig
from opdbench.evaluate import best_at_k, mean_at_k
from opdbench.lm_eval_export import example_from_row, example_to_row, hf_model_args, run_lm_eval
from opdbench.tasks import TASKS, Example, Task
from opdbench.tasks.math import MathTask
from opdbench.zoo import ZOO_DIR, load_tokenizer

SHIPPED = REPO_DIR / "lm_eval_tasks" / "opdbench_math"


def read_rows(folder):
    return [json.loads(line) for line in (folder / "eval.jsonl").read_text().splitlines()]


def load_utils(folder):
    spec = importlib.util.spec_from_file_location(f"utils_{folder.name}", folder / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("task", ["math", "code", "dialogue"])
def test_shipped_folder_equals_a_fresh_export(task, tmp_path, capsys):
    assert main(["export", "lm-eval", task, "--out", str(tmp_path)]) == 0
    shipped, fresh = REPO_DIR / "lm_eval_tasks" / f"opdbench_{task}", tmp_path / f"opdbench_{task}"
    names = sorted(p.name for p in shipped.iterdir() if p.is_file())
    assert names == sorted(p.name for p in fresh.iterdir()) == ["eval.jsonl", f"opdbench_{task}.yaml", "utils.py"]
    for name in names:
        assert (shipped / name).read_bytes() == (fresh / name).read_bytes(), \
            f"{name} drifted: regenerate with `opdbench export lm-eval {task}`"


def test_shipped_yaml_samples_8_with_the_eval_settings():
    text = (SHIPPED / "opdbench_math.yaml").read_text()
    for line in ("task: opdbench_math", "output_type: generate_until", "repeats: 8", "temperature: 0.7",
                 "top_p: 0.9", "max_gen_toks: 48", 'until: ["<eos>"]', "metric: mean@8", "metric: best@8"):
        assert line in text
    rows = read_rows(SHIPPED)
    assert len(rows) == 200


def test_rows_rebuild_the_examples_exactly():
    tokenizer = load_tokenizer("zoo:teacher")
    originals = MathTask().examples("eval")[:200]
    assert [example_from_row(r) for r in read_rows(SHIPPED)] == originals
    multi_turn = Example(prompt=({"role": "user", "content": "ann has 3 pens."}, {"role": "assistant", "content": "ok"},
                                 {"role": "user", "content": "how many pens now?"}),
                         reference="answer: 3", target={"tests": ["a", "b"], "n": 3}, meta={"id": 7})
    row = json.loads(json.dumps(example_to_row(tokenizer, multi_turn)))  # as written to and read from eval.jsonl
    back = example_from_row(row)
    assert back == multi_turn and back.meta == multi_turn.meta and isinstance(back.prompt, tuple)
    assert row["prompt_text"] == render_prompt(tokenizer, multi_turn.prompt)


@pytest.mark.parametrize("template_bos", [True, False])
def test_lm_eval_feeds_exactly_the_ids_of_encode_prompt(tmp_path, template_bos):
    """With a tokenizer that adds a bos by default (as Llama 3's does), lm-eval as opdbench configures
    it feeds the template's ids unchanged: no second bos when the template has one, none when it has not."""
    from lm_eval.models.huggingface import HFLM
    from tokenizers.processors import TemplateProcessing

    checkpoint = tmp_path / "bos-adding"
    shutil.copytree(ZOO_DIR / "teacher-xs", checkpoint)
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(checkpoint)  # (a cell's ZooTokenizer does not save)
    tokenizer._tokenizer.post_processor = TemplateProcessing(
        single=f"{tokenizer.bos_token} $A", special_tokens=[(tokenizer.bos_token, tokenizer.bos_token_id)])
    if not template_bos:
        tokenizer.chat_template = tokenizer.chat_template.replace("{{ bos_token }}", "")
    tokenizer.save_pretrained(checkpoint)
    tokenizer = load_tokenizer(str(checkpoint))
    examples = MathTask().examples("eval")[:16]
    texts = [example_to_row(tokenizer, ex)["prompt_text"] for ex in examples]
    assert tokenizer(texts[0])["input_ids"][:2] != tokenizer(texts[0], add_special_tokens=False)["input_ids"][:2]

    lm = HFLM(**hf_model_args(str(checkpoint)), device="cpu", batch_size=16)
    ids, mask = lm.tok_batch_encode(texts)
    expected = [encode_prompt(tokenizer, ex.prompt) for ex in examples]
    assert [row[m.bool()].tolist() for row, m in zip(ids, mask)] == expected
    assert [e.count(tokenizer.bos_token_id) for e in expected] == [int(template_bos)] * 16


def test_process_results_equals_mean_at_k_and_best_at_k():
    utils = load_utils(SHIPPED)
    task = MathTask()
    for row, example in list(zip(read_rows(SHIPPED), task.examples("eval")))[:5]:
        right, wrong = example.reference, f"answer: {example.target + 1}"
        for n_right in (0, 3, 8):
            generations = [right] * n_right + [wrong] * (8 - n_right)
            scores = [task.score(example, g) for g in generations]
            assert utils.process_results(row, [generations]) == {
                "mean@8": mean_at_k(scores), "best@8": best_at_k(scores, 8)}
    assert utils.process_results(row, [[right] * 3 + ["garbage"] * 5]) == {"mean@8": 3 / 8, "best@8": 1.0}


def test_eval_with_lm_eval_harness_runs_end_to_end(capsys):
    code = main(["eval", "--harness", "lm-eval", "model=zoo:teacher-xs", "task=math", "eval.num_prompts=4"])
    out = capsys.readouterr().out
    assert code == 0
    found = re.search(r"zoo:teacher-xs on math via lm-eval \(4 prompts × 8 samples, .*\): mean@8 ([\d.]+)  best@8 ([\d.]+)", out)
    assert found, out
    mean, best = float(found[1]), float(found[2])
    assert 0 <= mean <= best <= 1


class ConversationTask(Task):
    """Multi-turn prompts, dict targets: its scorer gives 1 only if it receives the very Example it made."""

    name = "conversation"
    max_new_tokens = 4

    def examples(self, split):
        return [Example(prompt=({"role": "user", "content": f"ann has {i} pens."}, {"role": "assistant", "content": "ok."},
                                {"role": "user", "content": "how many pens now?"}),
                        reference=f"answer: {i}", target={"count": i, "tests": [str(i)]}, meta={"i": i})
                for i in range(3)]

    def score(self, example, response):
        return float(example in self.examples("eval") and example.meta == {"i": example.target["count"]})


@pytest.fixture
def conversation_task():
    TASKS.register("conversation")(ConversationTask)
    yield
    del TASKS["conversation"]


def test_a_multi_turn_task_with_dict_targets_goes_through_lm_eval(conversation_task):
    cfg = OmegaConf.create({"task": {"name": "conversation", "params": {}},
                            "eval": asdict(EvalConfig(num_prompts=3, batch_size=24))})
    metrics, samples = run_lm_eval(cfg, "zoo:teacher-xs")
    assert metrics == {"mean@8": 1.0, "best@8": 1.0}
    tokenizer = load_tokenizer("zoo:teacher-xs")
    contexts = [s["arguments"][0][0] for s in sorted(samples, key=lambda s: s["doc_id"])]
    assert contexts == [render_prompt(tokenizer, ex.prompt) for ex in ConversationTask().examples("eval")]
    assert all(len(s["filtered_resps"][0]) == 8 for s in samples)


@pytest.mark.parametrize("args, message", [
    (["model=zoo:teacher-xs", "task=nope"], "unknown task 'nope'; valid: aime, code, dialogue, "),
    (["model=/no/such/checkpoint", "task=math"], "checkpoint '/no/such/checkpoint' not found"),
    (["model=zoo:no_such_model", "task=math"], "zoo model 'zoo:no_such_model' not found"),
])
def test_lm_eval_harness_user_errors_are_one_line(capsys, args, message):
    code = main(["eval", "--harness", "lm-eval", *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1


def test_export_of_an_unknown_task_is_one_line(tmp_path, capsys):
    assert main(["export", "lm-eval", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown task 'nope'; valid: aime, code, dialogue, ") and err.count("\n") == 1
    assert not any(tmp_path.iterdir())
