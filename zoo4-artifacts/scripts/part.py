"""Train some of SPECS exactly as `zoo build` does (same tokenizer, data, one thread) into /tmp/exp4/final."""
import sys, json, torch
from opdbench.zoo import build as B
from opdbench.chat import messages_of
from opdbench.zoo.tokenizer import build_tokenizer
torch.set_num_threads(1)
tasks = B.load_tasks()
texts = [t for task in tasks for split in ("sft", "train", "eval") for ex in task.examples(split)
         for t in [m["content"] for m in messages_of(ex.prompt)] + [ex.reference]]
tok = build_tokenizer(texts)
sft_data = {task.name: task.examples("sft") for task in tasks}
for name in sys.argv[1:]:
    res = B._train_and_score(name, B.SPECS[name], tok, tasks, sft_data, lambda m: print(m, flush=True))
    for model_name, (state, entry) in res.items():
        m = B.llama(B.SPECS[name], tok); m.load_state_dict(state)
        out = f"/tmp/exp4/final/{model_name}"
        m.save_pretrained(out); tok.save_pretrained(out)
        json.dump(entry, open(out + ".json", "w"), indent=1)
