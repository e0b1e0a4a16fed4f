"""benchmarks/gpu_check.py spends scarce GPU time in one shot: its CPU dry run keeps it from rotting."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_gpu_check_script_runs_every_check_on_the_cpu_at_toy_sizes(tmp_path):
    subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--dry-run", "--out", str(tmp_path),
                    "--scratch", str(tmp_path / "scratch"), "--rerun"],
                   cwd=REPO, check=True, capture_output=True, text=True, timeout=300)
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert list(report) == ["environment", "tiny_cuda", "real_full", "real_checkpointing", "real_lora",
                            "real_lora_unmerged", "vllm"]
    assert not [name for name, result in report.items() if "error" in result]
    tiny = report["tiny_cuda"]
    assert tiny["seed=0"]["cpu_committed"]["mean@8"] > tiny["seed=0"]["cpu_committed"]["step0_mean@8"]
    assert tiny["rerun_identical"], "two CPU runs of one seed must give the same metrics"
    for name in ("real_full", "real_checkpointing", "real_lora", "real_lora_unmerged"):
        assert report[name]["tokens_per_step"] > 0 and report[name]["rollout_tokens_per_s"] > 0
