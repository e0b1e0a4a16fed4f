"""Second SFT phase from a checkpoint with another mixture; snapshot + calibration every 25 steps."""
import sys, json, os, torch
from opdbench.zoo import build as B, load_tokenizer, load_model
from opdbench.zoo.sft import sft
from opdbench.evaluate import evaluate
torch.set_num_threads(1)
start, counts, out, hi, lr = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
tasks = B.load_tasks()
tok = load_tokenizer(start)
model = load_model(start); model.train()
os.makedirs(out, exist_ok=True)
def on_step(step, loss):
    if step % B.CALIBRATION_EVERY:
        return False
    scores = {t.name: evaluate(model, tok, t, split="train", num_prompts=B.CALIBRATION_PROMPTS)[0]["mean@8"] for t in tasks}
    model.train()
    print(step, json.dumps({k: round(v, 3) for k, v in scores.items()}), flush=True)
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, f"{out}/step{step}.pt")
    return step >= hi
sft_data = {t.name: t.examples("sft") for t in tasks}
data = [ex for task, examples in sft_data.items() for ex in examples[:counts.get(task)]]
sft(model, tok, data, steps=1000, batch_size=64, lr=lr, seed=7, context_fraction=0.5, on_step=on_step, warmup=25)
