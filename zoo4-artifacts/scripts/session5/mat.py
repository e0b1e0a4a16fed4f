"""Snapshot state (.pt) -> checkpoint folder, and its eval mean@8 on every zoo task."""
import sys, torch
torch.set_num_threads(1)
from opdbench.zoo import build as B, load_tokenizer
from opdbench.evaluate import evaluate
tok = load_tokenizer("/work/wt-main4/zoo4-artifacts/models/teacher-4layer")
spec = B.ModelSpec(seed=2, steps=2500)
for pt in sys.argv[1:]:
    out = pt[:-3]
    m = B.llama(spec, tok); m.load_state_dict(torch.load(pt)); m.eval()
    m.save_pretrained(out); tok.save_pretrained(out)
    s = {t.name: round(evaluate(m, tok, t)[0]["mean@8"], 3) for t in B.load_tasks()}
    print(out, s, flush=True)
