"""Train a candidate student (build recipe) and save a snapshot at every calibration step in [lo, hi]."""
import sys, json, os, torch
from opdbench.zoo import build as B, load_tokenizer
from opdbench.zoo.sft import sft
from opdbench.evaluate import evaluate
torch.set_num_threads(1)
counts = json.loads(sys.argv[1]); out = sys.argv[2]; lo, hi = int(sys.argv[3]), int(sys.argv[4])
tasks = B.load_tasks()
tok = load_tokenizer("/work/wt-main4/zoo4-artifacts/models/teacher-4layer")
spec = B.ModelSpec(seed=int(sys.argv[5]) if len(sys.argv) > 5 else 2, steps=2500, context_fraction=0.5, sft_examples=counts)
model = B.llama(spec, tok)
os.makedirs(out, exist_ok=True)
def on_step(step, loss):
    if step < lo or step % B.CALIBRATION_EVERY:
        return False
    scores = {t.name: evaluate(model, tok, t, split="train", num_prompts=B.CALIBRATION_PROMPTS)[0]["mean@8"] for t in tasks}
    model.train()
    print(step, json.dumps({k: round(v, 3) for k, v in scores.items()}), flush=True)
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, f"{out}/step{step}.pt")
    return step >= hi
sft_data = {t.name: t.examples("sft") for t in tasks}
data = [ex for task, examples in sft_data.items() for ex in examples[:counts.get(task)]]
sft(model, tok, data, steps=spec.steps, batch_size=spec.batch_size, lr=spec.lr, seed=spec.seed,
    context_fraction=spec.context_fraction, on_step=on_step)
