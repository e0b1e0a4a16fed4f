import sys, collections
from opdbench.zoo import load_model, load_tokenizer
from opdbench.zoo.build import load_tasks
from opdbench.evaluate import evaluate
t={x.name:x for x in load_tasks()}["dialogue"]
m=load_model(sys.argv[1]); tok=load_tokenizer(sys.argv[1])
s, samples = evaluate(m, tok, t, num_prompts=100)
print(s)
ev=t.examples("eval")
by=collections.defaultdict(list)
for r in samples:
    ex=ev[r["prompt_index"]]
    nturns=sum(1 for x in ex.prompt if x["role"]=="user")
    kinds=tuple(x["content"].split()[0] for x in ex.prompt if x["role"]=="user")[1:-1]
    by[("turns",nturns)].append(r["score"]); by[("last",kinds[-1] if kinds else "-")].append(r["score"]); by[("items",len(ex.target["order"]))].append(r["score"])
for k in sorted(by): print(k, len(by[k]), round(sum(by[k])/len(by[k]),3))
bad=[r for r in samples if r["score"]<1][:6]
for r in bad:
    ex=ev[r["prompt_index"]]
    print([x["content"] for x in ex.prompt][-5:], "| ref", ex.reference, "| got", r["response"], round(r["score"],2))
