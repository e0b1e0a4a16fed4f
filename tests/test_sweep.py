"""Sweeps: suites expand to cells, Ray runs them, a killed sweep resumes to the same results."""

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from opdbench import results, sweep
from opdbench.conf import baseline_files, load_config
from opdbench.errors import OpdbenchError

REPO = Path(__file__).parents[1]


def json_load(path: Path):
    return json.loads(path.read_text())


def test_every_suite_expands_to_valid_cells():
    for name in sweep.suite_names():
        cells, common = sweep.expand(name)
        assert cells and len(set(cells)) == len(cells)
        for cell in {(c.method, c.task, c.overrides): c for c in cells}.values():
            load_config(cell.hydra_overrides(name, common))  # raises on a typo


def test_the_paper_suite_holds_every_training_baseline():
    cells, _ = sweep.expand("paper")
    trained = {c.method for c in cells if not c.overrides}
    assert trained == set(baseline_files())  # references included: student_base, teacher
    variants = [c for c in cells if c.overrides]
    assert {c.method for c in variants} == {"k1"} and len({c.overrides for c in variants}) >= 8


def test_cells_run_seed_by_seed_longest_first():
    cells, common = sweep.expand("core")
    order = sweep.schedule(cells, sweep._costs(cells, "core", common))
    seeds = [c.seed for c in order]
    assert seeds == sorted(seeds)
    first = [c for c in order if c.seed == 0]
    assert first[0].task == "dialogue" and first[-1].method in ("student_base", "teacher")  # references train 0 steps


def test_a_time_limit_starts_the_first_cell_that_fits_and_none_once_time_is_up():
    a, b, c = (sweep.Cell(m, "math", 0) for m in ("a", "b", "c"))
    durations = {a: 100.0, b: None, c: 10.0}.get
    assert sweep.next_cell([a, b, c], None, durations) is a  # no limit: schedule order
    assert sweep.next_cell([a, b, c], 150, durations) is a
    assert sweep.next_cell([a, b, c], 50, durations) is b  # unknown duration: fits while time is left
    assert sweep.next_cell([a, c], 50, durations) is c  # a would overrun; the shorter c fits
    assert sweep.next_cell([a], 50, durations) is None
    assert sweep.next_cell([b, c], 0, durations) is None  # time is up: nothing starts


def test_expected_durations_come_from_the_same_method_else_the_task_rate():
    k1_s0, k1_s1, k3_s0, code = (sweep.Cell("k1", "math", 0), sweep.Cell("k1", "math", 1),
                                 sweep.Cell("k3_naive", "math", 0), sweep.Cell("k1", "code", 0))
    lr = sweep.Cell("k1", "math", 1, ("train.lr=5e-4",))
    durations = sweep.Durations({k1_s0: 1000, k1_s1: 1000, k3_s0: 3000, code: 500, lr: 1000})
    assert durations(k1_s1) is None  # nothing complete yet
    durations.add(k1_s0, wall_s=40.0, cost=1000)
    durations.add(sweep.Cell("k1", "math", 2), wall_s=60.0, cost=1000)
    assert durations(k1_s1) == 60.0  # the slowest complete seed of the same method and task
    assert durations(lr) == pytest.approx(0.05 * 1000)  # a variant is its own config: the task's median rate
    assert durations(k3_s0) == pytest.approx(0.05 * 3000)  # the median of 0.04 and 0.06 s/token
    assert durations(code) is None  # no complete cell of the task


def test_the_time_left_is_the_expected_work_over_the_slots():
    a, b, c, d, e = (sweep.Cell(m, "math", 0) for m in ("a", "b", "c", "d", "e"))
    known = {a: 100.0, b: 300.0, c: None, d: 40.0, e: 100.0}
    assert sweep.expected_left(known.get, [c], []) is None  # nothing known yet
    assert sweep.expected_left(known.get, [a, b], [], n_slots=2) == 300  # never less than the longest cell
    # b has run 250 of its 300 s: 50 s of it are left
    assert sweep.expected_left(known.get, [a, d, e], [(b, 250.0)], n_slots=2) == pytest.approx((100 + 40 + 100 + 50) / 2)
    assert sweep.expected_left(known.get, [a, b, c, d], [], n_slots=1) == 100 + 300 + 100 + 40  # c: the median
    assert sweep.expected_left(known.get, [], [(a, 500.0)]) == 0  # overran its estimate: nothing more expected
    assert sweep.expected_left(known.get, [], []) == 0  # nothing left
    assert [sweep.readable_duration(s) for s in (45, 600, 5400)] == ["45 s", "10 min", "1.5 h"]


def test_a_time_limit_reads_as_seconds_minutes_or_hours():
    assert [sweep.parse_duration(t) for t in ("5400", "90m", "1.5h", "45s", " 2H ")] == [5400, 5400, 5400, 45, 7200]
    with pytest.raises(ValueError, match="time_limit='soon'"):
        sweep.parse_duration("soon")


def test_a_sweep_out_of_time_starts_nothing_and_says_how_to_continue(tmp_path):
    out = subprocess.run([sys.executable, "-m", "opdbench.cli", "sweep", "suite=smoke", "progress=false",
                          "sweep.num_cpus=1", "sweep.time_limit=0.5s", f"results_dir={tmp_path}"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "3 cells, 0 already complete, 0 ran, 0 failed" in out.stdout
    assert "3 cell(s) not started within sweep.time_limit; run the same command again" in out.stdout
    assert not list(tmp_path.rglob("summary.json"))
    bad = subprocess.run([sys.executable, "-m", "opdbench.cli", "sweep", "suite=smoke", "sweep.time_limit=soon"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "give seconds, or a number with s, m or h" in bad.stderr


def test_a_sweep_plan_lists_what_is_left_and_runs_nothing(tmp_path):
    shutil.copytree(REPO / "results/runs/quick/k1/math/seed=0", tmp_path / "quick/k1/math/seed=0")
    out = subprocess.run([sys.executable, "-m", "opdbench.cli", "sweep", "suite=quick", "sweep.plan=true",
                          "sweep.num_cpus=2", f"results_dir={tmp_path}"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "sweep quick: 1 of 8 cells complete, 7 to run" in out.stdout
    wall = json_load(tmp_path / "quick/k1/math/seed=0/summary.json")["wall_s"]
    # Every cell left is on math, whose one complete cell gives the rate: none is of unknown duration.
    assert re.search(r"math\s+7\s+[\d.]+\s+0", out.stdout), out.stdout
    assert "first: k3_naive/math/seed=0, k3_corrected/math/seed=0" in out.stdout  # seed 0 first, longest first
    assert len(list(tmp_path.rglob("summary.json"))) == 1 and wall > 0


def test_a_cell_another_suite_ran_identically_is_copied_not_trained(tmp_path):
    from omegaconf import OmegaConf

    from opdbench.report import leaderboard
    from opdbench.trainer import train
    run = [f"results_dir={tmp_path}", "progress=false", "threads=1", "budget=smoke"]
    train(load_config(["method=k1", "task=math", "seed=0", "suite=smoke", *run]))
    cells = [sweep.Cell("k1", "math", 0), sweep.Cell("k3_naive", "math", 0)]  # k3_naive: run nowhere
    assert sweep.identical_runs(tmp_path, "other", cells, [*run, "train.lr=5e-4"]) == []  # another config
    assert sweep.identical_runs(tmp_path, "other", cells, run, copy=False) == cells[:1]
    assert not (tmp_path / "other").exists()  # copy=False (sweep.plan) writes nothing
    assert sweep.identical_runs(tmp_path, "other", cells, run) == cells[:1]
    source, copied = tmp_path / "smoke/k1/math/seed=0", tmp_path / "other/k1/math/seed=0"
    for name in ("metrics.jsonl", "timing.jsonl", "scores.json", "samples.jsonl.gz"):
        assert (copied / name).read_bytes() == (source / name).read_bytes()
    # the config the trainer would have written for this suite's cell, and the copy says where it came from
    expected = OmegaConf.to_yaml(load_config(["method=k1", "task=math", "seed=0", "suite=other", *run]), resolve=True)
    assert (copied / "config.yaml").read_text() == expected
    summary, provenance = json_load(copied / "summary.json"), json_load(copied / "provenance.json")
    assert summary["suite"] == "other" and summary["reused_from"] == provenance["reused_from"] == "smoke/k1/math/seed=0"
    assert summary["mean@8"] == json_load(source / "summary.json")["mean@8"]
    frame, _ = leaderboard.build(tmp_path, "other")
    assert frame["stale"].tolist() == [""]  # as fresh as its source
    assert sweep.identical_runs(tmp_path, "other", cells, run) == []  # complete already: nothing to copy
    prov = json_load(source / "provenance.json")  # a stale source is never copied
    (source / "provenance.json").write_text(json.dumps({**prov, "code_modules": {**prov["code_modules"], "trainer.py": "0"}}))
    shutil.rmtree(copied)
    assert sweep.identical_runs(tmp_path, "other", cells, run) == []


def test_unknown_suite_is_one_clear_error():
    with pytest.raises(OpdbenchError, match="unknown suite 'nope'; valid: .*core"):
        sweep.expand("nope")


@pytest.mark.parametrize("body,error", [
    ("seeds: []", "`seeds` is empty"),
    ("variants: [{method: k1, overrides: [train.lr=5e-4]}]", "a list of override lists"),
    ("variants: [{method: k1}]", "needs `method` and `overrides`"),
    ("variants: [{method: k1, task: [math], overrides: [[train.lr=5e-4]]}]", r"unknown variant keys \['task'\]"),
    ("variants: [{method: k1, seeds: [], overrides: [[train.lr=5e-4]]}]", "has no seeds"),
])
def test_a_malformed_suite_is_one_clear_error(tmp_path, monkeypatch, body, error):
    (tmp_path / "bad.yaml").write_text(f"methods: [k1]\ntasks: [math]\n{body}\n")
    monkeypatch.setattr(sweep, "SUITES_DIR", tmp_path)
    with pytest.raises(OpdbenchError, match=f"suite bad: .*{error}"):
        sweep.expand("bad")


def test_a_sweep_wide_override_of_what_a_cell_sets_is_an_error():
    with pytest.raises(OpdbenchError, match="'seed=1': each cell sets method, task, seed"):
        sweep.sweep("smoke", ["seed=1"])


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the error of a machine without GPUs")
def test_asking_for_gpus_a_cluster_lacks_is_one_clear_error(tmp_path):
    with pytest.raises(OpdbenchError, match="gpus_per_cell=1 but the Ray cluster has 0 GPU"):
        sweep.sweep("smoke", [f"results_dir={tmp_path}"], gpus_per_cell=1, num_cpus=1, progress=False)


def test_a_variant_gets_its_own_folder():
    cell = sweep.Cell("k1", "math", 0, ("train.lr=5e-4",))
    cfg = load_config(cell.hydra_overrides("s", []))
    assert cfg.variant == "train.lr=5e-4" and cfg.train.lr == 5e-4
    assert cell.name == "k1@train.lr=5e-4/math/seed=0"
    two = sweep.Cell("k1", "math", 0, ("models.teachers=[zoo:teacher-xs,zoo:teacher]", "train.lr=5e-4"))
    for c in (cell, two, sweep.Cell("k1", "math", 0)):  # the label gives back the overrides, commas in values kept
        assert sweep.Cell.of_variant(c.method, c.task, c.seed, c.variant) == c


def _cli(*args, env=None):
    return subprocess.Popen([sys.executable, "-m", "opdbench.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _metrics(root: Path) -> dict:
    return {str(p.parent.relative_to(root)): p.read_bytes() for p in sorted(root.glob("*/*/*/seed=*/metrics.jsonl"))}


def test_a_killed_sweep_resumes_with_every_cell_once_and_identical_results(tmp_path):
    """kill -9 the driver mid-run; rerun at once; every cell exactly once, bytes equal to an uninterrupted run."""
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    args = ["sweep", "suite=smoke", "progress=false", "sweep.num_cpus=1"]  # one cell at a time, on any machine
    proc = _cli(*args, f"results_dir={killed}")
    deadline = time.time() + 120
    while time.time() < deadline and not list(killed.glob("smoke/*/*/seed=*/summary.json")):
        time.sleep(0.1)  # kill once the first cell is complete and the second under way
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_at_kill = len(list(killed.glob("smoke/*/*/seed=*/summary.json")))
    assert 1 <= done_at_kill < 3
    # No pause: Ray's workers may still be finishing the killed sweep's cell; the cell lock makes
    # the resumed sweep wait for it and count it complete rather than train it a second time.
    out = _cli(*args, f"results_dir={killed}").communicate()[0]
    found = re.search(r"3 cells, (\d) already complete, (\d) ran, 0 failed", out)
    assert found, out
    assert int(found[1]) >= done_at_kill and int(found[1]) + int(found[2]) == 3, out
    assert _cli(*args, f"results_dir={clean}").wait() == 0
    summaries = list(killed.glob("smoke/*/*/seed=*/summary.json"))
    assert len(summaries) == 3 and not list(killed.glob("smoke/*/*/*.partial")) and not list(killed.rglob("*.lock"))
    assert _metrics(killed / "smoke") == _metrics(clean / "smoke")


def _processes_of_ray_session(driver_pid: int) -> list[str]:
    """Command lines of live processes started for the Ray session of this driver (its session
    folder is named after the driver's pid)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if f"_{driver_pid}/" in cmd or cmd.endswith(f"_{driver_pid}"):
            found.append(cmd[:120])
    return found


def test_a_terminated_sweep_shuts_its_ray_down(tmp_path):
    proc = _cli("sweep", "suite=smoke", "progress=false", f"results_dir={tmp_path}")
    deadline = time.time() + 120
    while time.time() < deadline and not _processes_of_ray_session(proc.pid):
        time.sleep(0.2)
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) != 0  # (Ray installs its own SIGTERM handler: exit status 15)
    deadline = time.time() + 30
    while time.time() < deadline and _processes_of_ray_session(proc.pid):
        time.sleep(0.5)
    assert _processes_of_ray_session(proc.pid) == []


def test_a_cell_lock_is_exclusive_and_leaves_nothing_behind(tmp_path):
    lock = tmp_path / "task" / ".seed=0.lock"
    script = f"from opdbench import sweep; from pathlib import Path\nwith sweep.exclusive(Path({str(lock)!r})): print('in', flush=True)"
    with sweep.exclusive(lock):
        other = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        time.sleep(1.5)
        assert other.poll() is None  # waits while we hold it
    assert other.communicate(timeout=30)[0] == "in\n" and not lock.exists()


def test_a_sweep_uploads_to_an_fsspec_url_and_resumes_from_it(tmp_path):
    store = tmp_path / "store"
    args = ["sweep", "suite=smoke", "progress=false", f"results_dir=file://{store}"]
    first = subprocess.run([sys.executable, "-m", "opdbench.cli", *args], cwd=REPO, capture_output=True, text=True)
    assert "3 cells, 0 already complete, 3 ran, 0 failed" in first.stdout, first.stdout + first.stderr
    for summary in store.glob("smoke/*/*/seed=*/summary.json"):
        files = {p.name for p in summary.parent.iterdir()}
        assert {"metrics.jsonl", "config.yaml", "provenance.json", "scores.json"} <= files
    assert len(list(store.glob("smoke/*/*/seed=*/summary.json"))) == 3
    again = subprocess.run([sys.executable, "-m", "opdbench.cli", *args], cwd=REPO, capture_output=True, text=True)
    assert "3 cells, 3 already complete, 0 ran" in again.stdout, again.stdout + again.stderr


def test_train_refuses_a_url_results_dir(tmp_path):
    out = subprocess.run([sys.executable, "-m", "opdbench.cli", "train", "budget=smoke", f"results_dir=file://{tmp_path}"],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode != 0 and "`opdbench sweep` uploads finished cells to a URL" in out.stderr, out.stderr


def test_a_failing_cell_is_recorded_and_the_rest_go_on(tmp_path, monkeypatch):
    # an absurd learning rate makes k1 and k3_naive diverge (a NaN loss by step 3); student_base does not train
    code = subprocess.run([sys.executable, "-m", "opdbench.cli", "sweep", "suite=smoke", "train.lr=1e30", "train.warmup_steps=0",
                           f"results_dir={tmp_path}", "progress=false"], cwd=REPO, capture_output=True, text=True)
    assert code.returncode == 2, code.stdout + code.stderr
    assert "2 cell(s) failed" in code.stderr and "training diverged" in code.stderr
    failures = sweep.read_failures(tmp_path, "smoke")
    assert sorted(f["cell"] for f in failures) == ["k1/math/seed=0", "k3_naive/math/seed=0"]
    assert (results.cell_dir(tmp_path, "smoke", "student_base", "math", 0) / "summary.json").exists()
    assert not (results.cell_dir(tmp_path, "smoke", "k1", "math", 0)).exists()


def test_a_sweep_on_a_two_node_ray_cluster():
    """`ray start --head` + `ray start --address`, one CPU each: the cells land on both nodes."""
    ray = [sys.executable, "-m", "ray.scripts.scripts"]
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    results_dir = Path(temp) / "runs"
    # Ray 2.60 authenticates nodes with a token: the head, the worker and our driver share one.
    env = {**os.environ, "RAY_ADDRESS": "", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    port = 6390 + os.getpid() % 500
    try:
        head = subprocess.run([*ray, "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                               "--disable-usage-stats", f"--temp-dir={temp}"], capture_output=True, text=True, env=env)
        assert head.returncode == 0, head.stdout + head.stderr
        worker = subprocess.run([*ray, "start", f"--address=127.0.0.1:{port}", "--num-cpus=1",
                                 "--disable-usage-stats"], capture_output=True, text=True, env=env)
        assert worker.returncode == 0, worker.stdout + worker.stderr
        out = subprocess.run([sys.executable, "-m", "opdbench.cli", "sweep", "suite=smoke", "progress=false",
                              f"sweep.ray_address=127.0.0.1:{port}", f"results_dir={results_dir}"],
                             cwd=REPO, capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "3 ran, 0 failed, on 2 node(s)" in out.stdout, out.stdout
        assert len(list(results_dir.glob("smoke/*/*/seed=*/summary.json"))) == 3
    finally:
        # Stop only this cluster's processes (`ray stop` would stop every Ray on the machine):
        # each one names the session folder under `temp` on its command line.
        subprocess.run(["pkill", "-9", "-f", temp], capture_output=True)
        shutil.rmtree(temp, ignore_errors=True)
