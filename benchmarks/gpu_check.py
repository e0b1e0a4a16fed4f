"""The real tier's GPU checks, in one short run on a lent GPU (issue 14): what no CPU test can show.

    bash benchmarks/gpu_check.sh wheels     # here, once a checkout: the packages the GPU machine lacks
    # then, through the device tool:  run(command="bash benchmarks/gpu_check.sh device",
    #                                     carry=[".whl"], timeout_s=540)

The GPU machine has its own torch (2.11 + CUDA) and transformers, and no package registry: Hydra
and OmegaConf travel as wheels (`.whl/`, about 0.4 MB); Ray, vLLM and lm-eval do not (vLLM's wheel
alone is far over the 64 MiB a call can carry), so sweeps and the vLLM backend stay unchecked there.

Each check runs on its own and records its own error, so one broken check does not cost the others
(device time is 15 minutes a session, start-up included). Results go to `--out`/gpu_check.json.

1. `tiny_cuda`: the tiny tier's k1 math cell (default budget) trained with `device=cuda`, for each of
   `--seeds`, against the CPU cell of that seed committed in results/runs/core/k1/math. Rollouts draw
   their uniforms from a CPU generator on both devices, so the step-0 evaluation should agree up to
   the few tokens whose sampling threshold falls within float rounding; the final score within seed
   noise (k1's three CPU seeds end at 0.517 / 0.457 / 0.496). `--rerun` trains the first seed again:
   whether two CUDA runs give the same metrics (on the CPU they are bit-identical).
2. `real_*`: k1 steps of a randomly initialised Qwen3-0.6B-shaped student under a Qwen3-1.7B-shaped
   teacher (transformers' Qwen3 classes, as the real presets load; a 151,936-row vocabulary; the zoo's
   tokenizer, so the math task's prompts are the tiny tier's), bf16 teacher and bf16 autocast, timed
   by `opdbench.bench` with a clock that synchronises CUDA, so each phase's seconds are its own:
   seconds a step, rollout tokens/s, peak GPU memory; full fine-tuning, then gradient checkpointing,
   then LoRA (r=16), sampling from a merged copy (the default) and from the adapted model. A random
   model rarely samples EOS, so every response runs to the token limit.
3. `vllm`: whether vLLM imports (expected: not installed there) and, if it does, the rollout
   backends' contract tests on it.

`--dry-run` runs the same code on the CPU at toy sizes (smoke budget, 2-layer Qwen3 models), so
the script itself is checked here before it spends device time.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
CPU_CELLS = REPO / "results/runs/core/k1/math"


class SynchronizedClock:
    """`time` for opdbench.trainer's phase timers: CUDA work is asynchronous, so without a
    synchronisation a phase's seconds would land in whichever phase next waits for the GPU."""

    def perf_counter(self) -> float:
        torch.cuda.synchronize()
        return time.perf_counter()

    def __getattr__(self, name):
        return getattr(time, name)


def environment() -> dict:
    import transformers

    gpu = {"gpu": torch.cuda.get_device_name(0),
           "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
           } if torch.cuda.is_available() else {"gpu": None}
    return {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "transformers": transformers.__version__, **gpu}


def tiny_cuda(scratch: Path, device: str, budget: list[str], seeds: list[int], rerun: bool) -> dict:
    """The default k1 math cell on CUDA, one per seed, against the committed CPU cell of that seed;
    with `rerun`, the first seed trained again, to see whether two CUDA runs are bit-identical."""
    from opdbench import trainer
    from opdbench.conf import load_config

    keys = ("step0_mean@8", "teacher_mean@8", "mean@8", "best@8", "auc_mean@8")
    report = {}
    for run, seed in enumerate([*seeds, *seeds[:1]] if rerun else seeds):
        name = f"seed={seed}" + (" (rerun)" if run >= len(seeds) else "")
        runs = scratch / f"runs{run}"
        shutil.rmtree(runs, ignore_errors=True)  # a rerun on a warm machine trains afresh
        start = time.perf_counter()
        cfg = load_config(["method=k1", "task=math", f"seed={seed}", f"device={device}", f"results_dir={runs}",
                           f"eval.cache_dir={scratch / 'eval_cache'}", *budget])
        summary = trainer.train(cfg)
        cpu = json.loads((CPU_CELLS / f"seed={seed}" / "summary.json").read_text())
        report[name] = {"wall_s": round(time.perf_counter() - start, 1), "cuda": {k: summary[k] for k in keys},
                        "cpu_committed": {k: cpu[k] for k in keys}, "cpu_wall_s": cpu["wall_s"]}
    if rerun:
        first, again = report[f"seed={seeds[0]}"]["cuda"], report[f"seed={seeds[0]} (rerun)"]["cuda"]
        report["rerun_identical"] = first == again
    return report


QWEN3_0P6B = dict(vocab_size=151936, hidden_size=1024, num_hidden_layers=28, num_attention_heads=16,
                  num_key_value_heads=8, head_dim=128, intermediate_size=3072, tie_word_embeddings=True)
QWEN3_1P7B = {**QWEN3_0P6B, "hidden_size": 2048, "intermediate_size": 6144}  # tied too, as Qwen3-1.7B's
TOY = dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
           head_dim=16, intermediate_size=128, tie_word_embeddings=True)  # --dry-run


def random_qwen3(folder: Path, shape: dict, seed: int, device: str) -> str:
    """A randomly initialised Qwen3 checkpoint with the zoo's tokenizer files, saved in bf16."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from opdbench.zoo import ZOO_DIR

    if (folder / "config.json").exists():
        return str(folder)
    config = Qwen3Config(**shape, max_position_embeddings=4096)
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen3ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(ZOO_DIR / "student" / name, folder / name)
    return str(folder)


def real_steps(student: str, teacher: str, device: str, extra: list[str], steps: int) -> dict:
    from opdbench import bench

    cuda = device == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    overrides = [f"models.student={student}", f"models.teachers=[{teacher}]", f"models.teacher_base={teacher}",
                 f"device={device}", "models.teacher_dtype=bfloat16", "train.autocast=bfloat16", "task=math", *extra]
    result = bench.seconds_per_step("k1", overrides, steps)
    result["rollout_tokens_per_s"] = round(result["tokens_per_step"] / result["rollout_s"])
    result["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1) if cuda else None
    result["overrides"] = overrides
    return result


def vllm_check() -> dict:
    try:
        import vllm
    except ImportError as err:
        return {"installed": False, "import_error": str(err)}
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/test_rollout_backends.py", "-k", "vllm"],
                           cwd=REPO, capture_output=True, text=True)
    return {"installed": True, "version": vllm.__version__, "pytest_rc": tests.returncode,
            "pytest_tail": tests.stdout[-3000:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "results/bench")
    parser.add_argument("--steps", type=int, default=3, help="timed steps of each real-size run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="tiny_cuda's seeds (CPU cells: 0-2)")
    parser.add_argument("--rerun", action="store_true", help="tiny_cuda trains its first seed twice")
    parser.add_argument("--only", nargs="*", default=None, help="run these checks alone (names as in the report)")
    parser.add_argument("--dry-run", action="store_true", help="the same checks on the CPU at toy sizes")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/gpu_check"),
                        help="the random models and the trained cell; only the report goes to --out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from opdbench import trainer

    if args.dry_run:
        device, budget, steps, shapes = "cpu", ["budget=smoke"], 1, (TOY, TOY)
    elif torch.cuda.is_available():
        device, budget, steps, shapes = "cuda", [], args.steps, (QWEN3_0P6B, QWEN3_1P7B)
        trainer.time = SynchronizedClock()
    else:
        sys.exit("gpu_check: torch sees no CUDA device here (--dry-run checks the script on the CPU)")
    scratch = args.scratch / device
    student = lambda: random_qwen3(scratch / "student", shapes[0], 1, device)  # noqa: E731
    teacher = lambda: random_qwen3(scratch / "teacher", shapes[1], 2, device)  # noqa: E731
    real = lambda extra: real_steps(student(), teacher(), device, extra, steps)  # noqa: E731
    checks = {
        "environment": environment,
        "tiny_cuda": lambda: tiny_cuda(scratch, device, budget, args.seeds, args.rerun),
        "real_full": lambda: real([]),
        "real_checkpointing": lambda: real(["train.gradient_checkpointing=true"]),
        "real_lora": lambda: real(["student.lora.r=16"]),  # sampling from a merged copy (the default)
        "real_lora_unmerged": lambda: real(["student.lora.r=16", "student.lora.merged_rollout=false"]),
        "vllm": vllm_check,
    }
    report = {}
    for name, check in checks.items():
        if args.only is not None and name not in args.only and name != "environment":
            continue
        start = time.perf_counter()
        try:
            report[name] = check()
        except Exception as err:  # noqa: BLE001 -- a failed check is a result; the others still run
            report[name] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-4000:]}
        print(f"== {name} ({time.perf_counter() - start:.1f} s)\n{json.dumps(report[name], indent=1)}", flush=True)
        (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
