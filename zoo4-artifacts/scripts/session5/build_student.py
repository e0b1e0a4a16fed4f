"""The shipped student, made by build._train_and_score (what a `zoo build` worker runs)."""
import json, torch
from opdbench.zoo import build as B
from opdbench.chat import messages_of
from opdbench.zoo.tokenizer import build_tokenizer
torch.set_num_threads(1)
tasks = B.load_tasks()
texts = [t for task in tasks for split in ("sft", "train", "eval") for ex in task.examples(split)
         for t in [m["content"] for m in messages_of(ex.prompt)] + [ex.reference]]
tok = build_tokenizer(texts)
res = B._train_and_score("student", B.SPECS["student"], tok, tasks, {t.name: t.examples("sft") for t in tasks}, lambda m: print(m, flush=True))
state, entry = res["student"]
B.save_model(__import__("pathlib").Path("/tmp/exp5/student"), B.SPECS["student"], tok, state, entry)
