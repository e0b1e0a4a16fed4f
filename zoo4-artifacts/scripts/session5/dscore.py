import sys, torch
torch.set_num_threads(1)
from opdbench.zoo import load_model, load_tokenizer
from opdbench.zoo.build import load_tasks
from opdbench.evaluate import evaluate
t={x.name:x for x in load_tasks()}["dialogue"]
for p in sys.argv[1:]:
    s,_=evaluate(load_model(p), load_tokenizer(p), t)
    print(p.split("models/")[-1], round(s["mean@8"],3), round(s["best@8"],3), flush=True)
