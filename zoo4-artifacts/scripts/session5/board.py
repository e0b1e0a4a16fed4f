"""README leaderboard rows from results/runs/default (opdbench.results)."""
import json, statistics as st
from pathlib import Path
from opdbench import results
df = results.load()
for (method, task), g in df.groupby(["method", "task"], sort=False):
    g = g.sort_values("seed")
    cells = [f"{r['step0_mean@8']:.3f} → {r['mean@8']:.3f}" for _, r in g.iterrows()]
    lift = st.fmean(g["mean@8"] - g["step0_mean@8"])
    kl = []
    for p in g["path"]:
        rows = [json.loads(l) for l in open(Path(p) / "metrics.jsonl") if '"kl_k1"' in l]
        kl.append((st.fmean(r["kl_k1"] for r in rows[:10]), st.fmean(r["kl_k1"] for r in rows[-10:])))
    print(f"| `{method}` | {task} | " + " | ".join(cells) + f" | **{lift:+.3f}** | "
          f"{st.fmean(a for a, _ in kl):.2f} → {st.fmean(b for _, b in kl):.2f} |")
