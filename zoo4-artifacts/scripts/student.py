"""Experiment: the student with its own mixture, against the build-3 teacher and tokenizer."""
import sys, json, torch
from opdbench.zoo import build as B
from opdbench.zoo import load_tokenizer
counts = json.loads(sys.argv[1]); out = sys.argv[2]; target = json.loads(sys.argv[3])
torch.set_num_threads(1)
tasks = B.load_tasks()
tok = load_tokenizer("/work/wt-zoo/opdbench/zoo/checkpoints/teacher")
spec = B.ModelSpec(seed=2, steps=2500, student_target=target, calibrate_from=int(sys.argv[4]) if len(sys.argv) > 4 else 500, context_fraction=0.5, sft_examples=counts)
res = B._train_and_score("student", spec, tok, tasks, {t.name: t.examples("sft") for t in tasks}, lambda m: print(m, flush=True))
state, entry = res["student"]
m = B.llama(spec, tok); m.load_state_dict(state); m.save_pretrained(out); tok.save_pretrained(out)
json.dump(entry, open(out + ".json", "w"), indent=1)
