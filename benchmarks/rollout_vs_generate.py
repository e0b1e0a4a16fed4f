"""Rollout throughput: opdbench's sampler against transformers' own `generate` on the same work.

Both sample one training step's rollout (the default batch: 64 math prompts x 4 samples, up to
the task's 48 new tokens, temperature 1, no top-p) from the zoo student on one CPU thread:

- `opdbench`: `rollout.hf.sample` on opdbench's native Llama (what `opdbench train` runs);
- `transformers`: `LlamaForCausalLM.generate(do_sample=True)` with a static KV cache
  (`cache_implementation="static"`), eager attention, prompts left-padded;
- `transformers (dynamic cache)`: the same with generate's default cache.

Throughput counts the tokens a response keeps (up to and including EOS), the same for both.
Repeats alternate between contenders, so both see the same machine load; the median is reported.

    python benchmarks/rollout_vs_generate.py [--threads 1] [--repeats 5] [--samples 4] [--out results/bench/rollout.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from machine import cpu_model  # benchmarks/machine.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("results/bench/rollout.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM

    from opdbench.chat import encode_prompt
    from opdbench.conf import load_config
    from opdbench.rollout import left_pad
    from opdbench.rollout.hf import sample
    from opdbench.tasks import make_task
    from opdbench.zoo import load_model, load_tokenizer, resolve

    task = make_task(load_config(["task=math"]).task)
    tok = load_tokenizer("zoo:student")
    prompts = [encode_prompt(tok, ex.prompt) for ex in task.examples("train")[:args.prompts]]
    rows = [p for p in prompts for _ in range(args.samples)]
    native = load_model("zoo:student")
    hf = AutoModelForCausalLM.from_pretrained(resolve("zoo:student"), attn_implementation="eager").eval()
    ids, mask = left_pad(rows, tok.pad_token_id)

    def opdbench_sample(seed):
        batch = sample(native, rows, max_new_tokens=task.max_new_tokens, eos_id=tok.eos_token_id,
                       pad_id=tok.pad_token_id, generator=torch.Generator().manual_seed(seed))
        return int(batch.response_mask_B_R.sum())

    def generate(cache):
        def run(seed):
            torch.manual_seed(seed)
            with torch.no_grad():
                out = hf.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_p=1.0,
                                  top_k=0, max_new_tokens=task.max_new_tokens, eos_token_id=tok.eos_token_id,
                                  pad_token_id=tok.pad_token_id, **({"cache_implementation": cache} if cache else {}))
            response = out[:, ids.shape[1]:]
            is_eos = (response == tok.eos_token_id).long()
            after_eos = (is_eos.cumsum(1) - is_eos) > 0  # tokens after the first EOS are padding
            return int((~after_eos).sum())
        return run

    contenders = {"opdbench": opdbench_sample, "transformers generate (static cache)": generate("static"),
                  "transformers generate (dynamic cache)": generate(None)}
    for run in contenders.values():  # warm-up
        run(0)
    results = {name: [] for name in contenders}
    for repeat in range(args.repeats):
        for name, run in contenders.items():
            start = time.perf_counter()
            tokens = run(repeat + 1)
            results[name].append(tokens / (time.perf_counter() - start))
    medians = {name: statistics.median(v) for name, v in results.items()}
    report = {
        "cpu": cpu_model(),
        "threads": args.threads, "rows": len(rows), "max_new_tokens": task.max_new_tokens,
        "torch": torch.__version__, "transformers": __import__("transformers").__version__,
        "tokens_per_s": {name: round(m) for name, m in medians.items()},
        "all_runs_tokens_per_s": {name: [round(x) for x in v] for name, v in results.items()},
        "opdbench_vs_static_generate": round(medians["opdbench"] / medians["transformers generate (static cache)"], 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for name, m in medians.items():
        print(f"{name:40s} {m:9.0f} tokens/s")
    print(f"opdbench / static-cache generate: {report['opdbench_vs_static_generate']:.2f}x  ({args.out})")


if __name__ == "__main__":
    main()
