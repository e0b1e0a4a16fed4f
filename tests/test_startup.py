"""A plain `opdbench train` imports only what a cell uses: start-up is paid by every cell of a
sweep (transformers' modeling code alone pulled in sklearn, scipy and torch._dynamo: ~6 s; since
session 15 a tiny-tier cell imports neither transformers nor torch._dynamo: ~2 s to its first step)."""

import json
import subprocess
import sys

HEAVY = ("sklearn", "scipy", "lm_eval", "ray", "pandas", "datasets", "matplotlib", "accelerate",
         "transformers",  # ~1 s: the zoo's folders load as opdbench's Llama and ZooTokenizer
         "torch._dynamo")  # torch.optim's classes import it (1.2-1.8 s): opdbench.optim.AdamW does not


def test_a_tiny_tier_cell_imports_no_heavy_library():
    script = ("import sys, json\n"
              "from opdbench.conf import load_config\n"
              "from opdbench import trainer\n"
              "run = trainer.prepare(load_config(['budget=smoke', 'method=k1']))\n"
              "trainer.train_step(run, trainer.make_optimizer(run), "
              "run.task.examples('train')[:2], [0, 1], __import__('torch').Generator().manual_seed(0), 0.0)\n"
              "from opdbench.evaluate import modules_in_use\n"
              "print(json.dumps(sorted(modules_in_use())))\n"
              f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
    # What the cell records as the code it ran (provenance.code_modules, what stale marks compare):
    # its own modules, not the real tier's, the GPU backend's, nor the report and sweep code.
    ran = json.loads(out.stdout.strip().splitlines()[-2])
    assert {"trainer.py", "llama.py", "feedback/shaping.py", "tasks/math.py"} <= set(ran)
    assert not [m for m in ran if m.startswith(("tasks/real/", "report/", "sweep.py", "cli.py"))], ran
