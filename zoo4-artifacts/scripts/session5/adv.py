import sys, torch, collections
torch.set_num_threads(2)
from transformers import AutoModelForCausalLM
from opdbench.zoo import load_tokenizer
from opdbench.zoo.build import load_tasks
from opdbench.evaluate import encode_prompt
from opdbench.rollout import hf
task_name = sys.argv[1]
tasks = {t.name: t for t in load_tasks()}
task = tasks[task_name]
tok = load_tokenizer("/work/wt-zoo/opdbench/zoo/checkpoints/teacher")
S = AutoModelForCausalLM.from_pretrained(sys.argv[2]).eval()
T = AutoModelForCausalLM.from_pretrained(sys.argv[3]).eval()
ex = task.examples("train")[:64]
ids = [encode_prompt(tok, e.prompt) for e in ex]
g = torch.Generator().manual_seed(0)
b = hf.sample(S, [p for p in ids for _ in range(4)], max_new_tokens=task.max_new_tokens, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id, generator=g)
with torch.no_grad():
    lt = T(input_ids=b.input_ids_B_L, attention_mask=b.attention_mask_B_L).logits[:, b.prompt_len-1:-1].log_softmax(-1)
    ls = S(input_ids=b.input_ids_B_L, attention_mask=b.attention_mask_B_L).logits[:, b.prompt_len-1:-1].log_softmax(-1)
r = b.response_ids_B_R
m = b.response_mask_B_R.bool()
lpT = lt.gather(-1, r[..., None]).squeeze(-1); lpS = ls.gather(-1, r[..., None]).squeeze(-1)
A = (lpT - lpS)[m]
print("adv mean", A.mean().item(), "frac < -3", (A < -3).float().mean().item(), "sum of neg<-3 share", A[A<-3].sum().item()/A.sum().item())
# where are the big negatives: student token vs teacher argmax
cnt = collections.Counter()
tA = collections.Counter()
targ = lt.argmax(-1)
for i in range(r.shape[0]):
    for t in range(r.shape[1]):
        if m[i, t] and (lpT[i, t] - lpS[i, t]) < -3:
            key = (tok.convert_ids_to_tokens(int(r[i, t])), tok.convert_ids_to_tokens(int(targ[i, t])))
            cnt[key] += 1; tA[key] += float(lpT[i,t]-lpS[i,t])
for k, v in cnt.most_common(25):
    print(k, v, round(tA[k]/v, 1))
texts = [tok.decode(r[i][m[i]]) for i in range(4)]
print(ex[0].prompt); print(texts)
# teacher entropy and is teacher's greedy path under student prefix correct: p_T(argmax)
print("teacher max prob mean", lt.exp().max(-1).values[m].mean().item())
