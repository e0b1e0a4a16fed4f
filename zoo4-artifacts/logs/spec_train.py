"""Train one ModelSpec given as JSON (name, spec kwargs) like `zoo build` does, into /tmp/exp4/next."""
import sys, json, torch
from opdbench.zoo import build as B
from opdbench.chat import messages_of
from opdbench.zoo.tokenizer import build_tokenizer
torch.set_num_threads(1)
name, kwargs = sys.argv[1], json.loads(sys.argv[2])
tasks = B.load_tasks()
texts = [t for task in tasks for split in ("sft", "train", "eval") for ex in task.examples(split)
         for t in [m["content"] for m in messages_of(ex.prompt)] + [ex.reference]]
tok = build_tokenizer(texts)
spec = B.ModelSpec(**kwargs)
res = B._train_and_score(name, spec, tok, tasks, {task.name: task.examples("sft") for task in tasks}, lambda m: print(m, flush=True))
for model_name, (state, entry) in res.items():
    B.save_model(f"/tmp/exp4/next/{model_name}", spec, tok, state, entry)
    json.dump(entry, open(f"/tmp/exp4/next/{model_name}.json", "w"), indent=1)
