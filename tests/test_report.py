"""Leaderboard and figures, built from real (smoke-budget) cells of the shipped zoo."""

import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from opdbench import results
from opdbench.conf import baseline_files, load_config
from opdbench.errors import OpdbenchError
from opdbench.report import figures, leaderboard, recheck
from opdbench.trainer import train


@pytest.fixture(scope="module")
def smoke_suite(tmp_path_factory):
    """The smoke suite's cells (k1 and k3_naive on math, seeds 0-1, and the student), trained in-process."""
    root = tmp_path_factory.mktemp("runs")
    for method, seeds in (("k1", (0, 1)), ("k3_naive", (0, 1)), ("student_base", (0,))):
        for seed in seeds:
            train(load_config([f"method={method}", "task=math", f"seed={seed}", "suite=smoke", "budget=smoke",
                               f"results_dir={root}", "progress=false", "threads=1"]))
    return root


def test_leaderboard_rows_intervals_and_commands(smoke_suite):
    frame, text = leaderboard.build(smoke_suite, "smoke")
    assert sorted(frame["method"][:2]) == ["k1", "k3_naive"] and frame["method"][2] == "student_base"
    assert frame["IQM"][0] >= frame["IQM"][1]  # ranked; the reference row last whatever its score
    table = [line.split("`")[1] for line in text.splitlines() if line.startswith("| `")]
    assert table == frame["method"].tolist()
    for _, row in frame.iterrows():
        for col in ("math mean@8", "math best@8", "IQM"):
            assert row[f"{col} lo"] <= row[col] <= row[f"{col} hi"]
        assert row["stale"] == ""  # just ran: nothing changed since
    k1 = frame.set_index("method").loc["k1"]
    summaries = [json.loads(p.read_text()) for p in smoke_suite.glob("smoke/k1/math/seed=*/summary.json")]
    assert k1["math mean@8"] == pytest.approx(np.mean([s["mean@8"] for s in summaries]))
    assert k1["seeds"] == 2 and k1["student tokens"] == sum(s["student_tokens"] for s in summaries) > 0
    assert np.isnan(k1["P(>k1)"]) and 0 <= frame.set_index("method").loc["k3_naive", "P(>k1)"] <= 1
    assert "`opdbench train -m method=k1 task=math seed=0,1 suite=smoke budget=smoke threads=1 results_dir=runs`" in text
    again, _ = leaderboard.build(smoke_suite, "smoke")
    assert again.equals(frame)  # every bootstrap draw is seeded


def test_a_partial_suite_says_how_much_of_it_is_in(smoke_suite, tmp_path):
    import shutil
    shutil.copytree(smoke_suite / "smoke/k1/math/seed=0", tmp_path / "smoke/k1/math/seed=0")
    _, text = leaderboard.build(tmp_path, "smoke")
    assert text.startswith("Suite `smoke`: 1 of its 3 cells so far (`opdbench sweep suite=smoke` runs the rest).")
    _, text = leaderboard.build(smoke_suite, "smoke")
    assert text.startswith("Suite `smoke`: 5 cells.")  # more seeds than the suite lists: no fraction


def test_a_changed_input_marks_the_cell_stale(smoke_suite, tmp_path):
    import shutil
    root = tmp_path / "runs"
    shutil.copytree(smoke_suite, root)
    cell = results.cell_dir(root, "smoke", "k3_naive", "math", 1)
    prov = json.loads((cell / "provenance.json").read_text())
    assert "trainer.py" in prov["code_modules"] and not any(m.startswith(("report/", "sweep")) for m in prov["code_modules"])
    (cell / "provenance.json").write_text(json.dumps({**prov, "code_modules": {**prov["code_modules"], "trainer.py": "0" * 64}}))
    config = (cell / "config.yaml").read_text()
    (cell / "config.yaml").write_text(config.replace("lr: 0.001", "lr: 0.002"))
    # a cell written before later knobs existed (no `student`, `device`, `train.autocast`) is not stale for them
    k1 = results.cell_dir(root, "smoke", "k1", "math", 0) / "config.yaml"
    old = OmegaConf.to_container(OmegaConf.load(k1))
    del old["student"], old["device"], old["train"]["autocast"]
    k1.write_text(OmegaConf.to_yaml(old))
    frame, text = leaderboard.build(root, "smoke")
    assert frame.set_index("method").loc["k3_naive", "stale"] == "code (trainer.py),config"
    assert frame.set_index("method").loc["k1", "stale"] == ""
    assert "stale: code (trainer.py),config" in text


def test_a_run_whose_responses_collapsed_is_noted_in_its_row(smoke_suite, tmp_path):
    import shutil
    root = tmp_path / "runs"
    shutil.copytree(smoke_suite, root)
    metrics = results.cell_dir(root, "smoke", "k3_naive", "math", 1) / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    first = next(r["response_len"] for r in rows if "response_len" in r)
    rows[-1]["response_len"] = 0.19 * first  # the stop token alone, nearly
    rows[2:2] = [{**rows[2], "response_len": 1e6}] * 100  # a long run: only its ends are read
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    frame, text = leaderboard.build(root, "smoke")
    notes = frame.set_index("method")["note"]
    assert notes["k3_naive"] == f"responses collapsed: math seed 1 ({first:.0f} -> {0.19 * first:.1f} tokens)"
    assert notes["k1"] == "" and "responses collapsed: math seed 1" in text
    assert metrics.stat().st_size > 2 * 16384


def test_a_module_edited_only_in_comments_and_docstrings_stales_no_cell(tmp_path):
    import hashlib
    import subprocess
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       check=True, capture_output=True)
    module = tmp_path / "loop.py"
    ran = 'def step(x):\n    """One step."""\n    return x + 1  # the update\n'
    module.write_text(ran)
    git("init", "-q")
    git("add", "loop.py")
    git("commit", "-qm", "v1")
    digest = hashlib.sha256(ran.encode()).hexdigest()  # what a cell that ran v1 recorded
    module.write_text('"""The loop."""\n\n\ndef step(x):\n    # why: ...\n    return (x +\n            1)\n')
    assert leaderboard.same_statements(module, digest)
    module.write_text('def step(x):\n    return x + 2\n')
    assert not leaderboard.same_statements(module, digest)
    module.write_text(ran)
    assert not leaderboard.same_statements(module, "0" * 64)  # a version git never had (uncommitted code)
    (tmp_path / "copy.py").write_text(ran)  # the same bytes, but no history of its own: stale, as they say
    assert not leaderboard.same_statements(tmp_path / "copy.py", digest)


def test_composed_configs_are_memoized_under_a_fingerprint_of_their_inputs(tmp_path, monkeypatch):
    import shutil

    import opdbench.conf
    overrides = ["method=k1", "task=math", "suite=smoke"]
    first = leaderboard.Composed(tmp_path)
    config = first(overrides)
    assert config["method"]["name"] == "k1" and "seed" not in config and first(["method=nope"]) is None
    first.save()
    monkeypatch.setattr(leaderboard, "load_config", lambda o: pytest.fail("composed again"))
    again = leaderboard.Composed(tmp_path)
    assert again.path == first.path and again(overrides) == config and again(["method=nope"]) is None
    tasks = tmp_path / "tasks"  # an edited task YAML is another fingerprint: nothing memoized applies
    shutil.copytree(opdbench.conf.TASKS_DIR, tasks)
    (tasks / "math" / "task.yaml").write_text((tasks / "math" / "task.yaml").read_text() + "\n# edited\n")
    monkeypatch.setattr(opdbench.conf, "TASKS_DIR", tasks)
    assert leaderboard.Composed(tmp_path).path != first.path


def test_the_leaderboard_is_embedded_between_the_readme_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{leaderboard.START}\nold table\n{leaderboard.END}\n\nafter\n")
    leaderboard.embed(readme, "| new | table |\n")
    assert readme.read_text() == f"# title\n\n{leaderboard.START}\n| new | table |\n{leaderboard.END}\n\nafter\n"
    readme.write_text("no markers\n")
    with pytest.raises(OpdbenchError, match="needs one line"):
        leaderboard.embed(readme, "x")


def test_equivalent_rows_are_found_from_their_configs():
    configs = {m: dict(load_config([f"method={m}"]).method) for m in
               ("k1", "k3_corrected", "whiten_none", "hellinger", "tsallis", "k3_naive")}
    notes = leaderboard.equivalences(configs)
    assert notes["whiten_none"] == "same config as k1"
    assert notes["k3_corrected"].startswith("same expected gradient as k1")
    assert "tsallis" not in notes  # unwhitened, scale 2: neither the same run nor the same gradient
    whitened = {m: {**c, "whiten": "batch"} for m, c in configs.items() if m in ("hellinger", "tsallis")}
    assert leaderboard.equivalences(whitened)["tsallis"].startswith("same run as hellinger")
    assert "k3_naive" not in notes
    # a variant's overrides outside the method group make another run; inside it, the method config says
    variants = {"k1@train.lr=5e-4": ["train.lr=5e-4"], "k1@method.whiten=none": ["method.whiten=none"]}
    notes = leaderboard.equivalences({**configs, **{v: configs["k1"] for v in variants}}, variants)
    assert "k1@train.lr=5e-4" not in notes and notes["k1@method.whiten=none"] == "same config as k1"


def test_figures_are_written(smoke_suite, tmp_path):
    (tmp_path / "smoke").mkdir()
    (tmp_path / "smoke" / "learning_curves.png").write_bytes(b"a figure an older version wrote")
    paths = figures.write(smoke_suite, "smoke", tmp_path)
    assert sorted(tmp_path.glob("smoke/*")) == sorted(paths)  # and nothing else
    names = sorted({p.stem for p in paths})
    # the smoke suite ran k1 and k3_naive: the figures of what it ran, and the two that need no run
    assert names == ["advantage_vs_ratio", "estimator_bias_variance", "learning_curves_estimators", "train_kl"]
    assert all(p.stat().st_size > 5000 for p in paths) and len(paths) == 2 * len(names)  # PNG and PDF
    assert not any(b"CreationDate" in p.read_bytes() for p in paths)  # no date inside: a rerun writes the same bytes


def test_every_training_baseline_is_in_one_figure_family():
    listed = [m for members in figures.FAMILIES.values() for m in members]
    assert len(listed) == len(set(listed))
    trained = {m for m in baseline_files() if load_config([f"method={m}"]).method.kind == "train"}
    assert set(listed) == trained
    # the rest are reference rows, found from their YAML alone (figures draw them as lines, bench skips them)
    assert set(figures.REFERENCES) == set(baseline_files()) - trained == {"student_base", "teacher"}


def test_figures_of_a_full_suite_from_synthetic_cells(tmp_path):
    """divergence bars, filter heatmap, stability and hyperparameters read the leaderboard's table."""
    import pandas as pd
    rows = ["k1", "hellinger", "tv", "k1_bf16", "tis", "gamma_1", "k1@train.lr=5e-4", "k1@models.teachers=[zoo:teacher-xs]",
            *[f"filter_{c}_{b}" for c in figures.FILTER_CRITERIA for b in figures.FILTER_BANDS]]
    rng = np.random.default_rng(0)
    records = []
    for row in rows:
        rec = {"method": row}
        for task in ("math", "code"):
            point = rng.random()
            rec.update({f"{task} mean@8": point, f"{task} mean@8 lo": point - 0.05, f"{task} mean@8 hi": point + 0.05})
        records.append(rec)
    table = pd.DataFrame(records).set_index("method")
    def config(row):  # as a cell of the row records it
        method, _, override = row.partition("@")
        return OmegaConf.to_container(load_config([f"method={method}", "task=math", *([override] if override else [])]), resolve=True)

    configs = {r: config(r) for r in ("k1", "gamma_1", "k1@train.lr=5e-4", "k1@models.teachers=[zoo:teacher-xs]")}
    # a lone zoo teacher sits at its size; an unset gamma is k1's 0; a variant's value is its config's
    assert figures._knob_value("models.teachers", configs["k1@models.teachers=[zoo:teacher-xs]"]) == 70656
    assert figures._knob_value("models.teachers", configs["k1"]) == 272384
    assert figures._knob_value("method.credit_params.gamma", configs["k1"]) == 0.0
    assert figures._knob_value("train.lr", configs["k1@train.lr=5e-4"]) == 5e-4
    # a row's value is its config's on the swept task: math's 2 samples a prompt, not dialogue's 4
    cells = [leaderboard.Cell(Path(), {"method": "k1", "task": task}, {"task": {"samples_per_prompt": n}}, {}, np.zeros(1))
             for task, n in (("math", 2), ("dialogue", 4))]
    assert figures._knob_value("task.samples_per_prompt", figures.row_configs(cells, "math")["k1"]) == 2
    assert figures._knob_value("task.samples_per_prompt", figures.row_configs(cells[::-1], "math")["k1"]) == 2
    written = [*figures.divergence_bars(table, ["math", "code"], "8", tmp_path),
               *figures.filter_heatmap(table, ["math", "code"], "8", tmp_path),
               *figures.hyperparameters(table, configs, "8", tmp_path)]
    assert sorted({p.stem for p in written}) == ["divergence_bars", "filter_heatmap", "hyperparameters"]


def test_the_toy_estimator_is_unbiased_at_gamma_1_and_its_variance_grows():
    from opdbench.report.toys import TabularAR, credit_bias_variance
    rows = credit_bias_variance(TabularAR(T=3, V=3, seed=1), [0.0, 0.5, 1.0])
    assert rows[2]["bias"] < 1e-10 < rows[1]["bias"] < rows[0]["bias"]
    assert 0 < rows[0]["variance"] < rows[1]["variance"] < rows[2]["variance"]


def test_a_module_version_that_recheck_found_to_reproduce_cells_stales_none_of_them(smoke_suite, tmp_path):
    import shutil
    root, registry = tmp_path / "runs", tmp_path / "equivalent_code.jsonl"
    shutil.copytree(smoke_suite, root)
    cell = results.cell_dir(root, "smoke", "k3_naive", "math", 1)
    prov = json.loads((cell / "provenance.json").read_text())
    (cell / "provenance.json").write_text(json.dumps({**prov, "code_modules": {**prov["code_modules"], "trainer.py": "a" * 64}}))
    today = leaderboard.Today(registry)
    stale = leaderboard.load_cell(cell)
    assert recheck.changed_modules(stale, today) == {"trainer.py": "a" * 64}
    assert today.changed(stale.config, stale.provenance, None) == ["config", "code (trainer.py)"]
    # a chain: version a reproduced by b (itself a cell's code once), b by today's
    registry.write_text(json.dumps({"module": "trainer.py", "ran": "a" * 64, "today": "b" * 64}) + "\n")
    assert not leaderboard.Today(registry).ran_today("trainer.py", "a" * 64)
    with open(registry, "a") as f:
        f.write(json.dumps({"module": "trainer.py", "ran": "b" * 64, "today": today.sources["trainer.py"]}) + "\n")
    assert leaderboard.Today(registry).ran_today("trainer.py", "a" * 64)
    assert not leaderboard.Today(registry).ran_today("trainer.py", "c" * 64)
    assert not leaderboard.Today(registry).ran_today("llama.py", "a" * 64)  # a line is about its module only
    # `record` writes such a line: today's version of each module that differs from what the cells ran
    registry.unlink()
    lines = recheck.record([stale], today, registry)
    assert [(line["module"], line["ran"], line["today"], line["cells"]) for line in lines] == [
        ("trainer.py", "a" * 64, today.sources["trainer.py"], ["smoke/k3_naive/math/seed=1"])]
    assert not recheck.changed_modules(stale, leaderboard.Today(registry))


def test_recheck_reruns_a_cell_and_names_what_came_out_differently(smoke_suite, tmp_path):
    import shutil
    root = tmp_path / "runs"
    shutil.copytree(smoke_suite / "smoke/k1", root / "smoke/k1")
    cell = results.cell_dir(root, "smoke", "k1", "math", 0)
    older = OmegaConf.to_container(OmegaConf.load(cell / "config.yaml"))
    del older["student"]["lora"]["merged_rollout"]  # as a cell run before the knob existed (at its default now)
    (cell / "config.yaml").write_text(OmegaConf.to_yaml(older))
    found, lines = recheck.recheck([cell], scratch=tmp_path)
    assert found == {"smoke/k1/math/seed=0": []} and lines == []  # the same code: the same bytes
    metrics = (cell / "metrics.jsonl").read_text().splitlines()
    metrics[1] = metrics[1].replace('"step": 1', '"step": 1, "extra": 0')
    (cell / "metrics.jsonl").write_text("\n".join(metrics) + "\n")
    summary = json.loads((cell / "summary.json").read_text())
    (cell / "summary.json").write_text(json.dumps({**summary, "mean@8": summary["mean@8"] + 0.01, "wall_s": 1.0,
                                                   "reused_from": "other/k1/math/seed=0"}))  # copied in: no difference
    (cell / "config.yaml").write_text((cell / "config.yaml").read_text().replace("lr: 0.001", "lr: 0.002"))
    untouched = results.cell_dir(root, "smoke", "k1", "math", 1)
    found, _ = recheck.recheck([cell, untouched], scratch=tmp_path, jobs=2)  # each in its own process
    assert found == {"smoke/k1/math/seed=0": ["metrics.jsonl (line 2)", "summary.json (mean@8)", "config.yaml"],
                     "smoke/k1/math/seed=1": []}


def test_recheck_records_only_committed_code(monkeypatch, tmp_path):
    monkeypatch.setattr(recheck, "uncommitted_sources", lambda: ["trainer.py"])
    with pytest.raises(OpdbenchError, match=r"commit first: .*trainer.py"):
        recheck.recheck([tmp_path], write=True)  # before any rerun


def test_every_recorded_equivalence_names_committed_code_and_cells_that_ran_it():
    """The committed lines of `opdbench recheck --record` are evidence: each names a version git has,
    and cells under results/runs that ran the version the line says (no line written by hand)."""
    runs = Path(__file__).resolve().parent.parent / "results" / "runs"
    lines = [json.loads(line) for line in leaderboard.EQUIVALENT_CODE.read_text().splitlines() if line.strip()]
    assert lines, "the committed recheck lines are missing"
    for line in lines:
        history = leaderboard.versions(leaderboard.PACKAGE_DIR / line["module"])
        assert line["today"] in history, f"{line['module']} {line['today'][:12]} is not a committed version"
        assert line["cells"] and len(line["commit"]) == 40
        for name in line["cells"]:
            provenance = json.loads((runs / name / "provenance.json").read_text())
            assert provenance["code_modules"][line["module"]] == line["ran"], (name, line["module"])
