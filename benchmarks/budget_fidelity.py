"""Would a shorter budget rank the methods as the default budget does? Read from committed cells.

A cell evaluates its student every `eval.every` steps, and nothing a step does depends on the total
number of steps except the schedule of the switching ensembles (`hard_switch`, `soft_switch`, which
read training progress: left out here). So the evaluation at step s of a committed cell is exactly
the final evaluation an s-step cell of the same seed would write, and the paper suite's curves say
what each shorter budget would have put on the leaderboard, without training anything.

For each task and each evaluated step s, over the suite's trained rows (reference rows and the
switching ensembles left out):
- `spearman_means`: rank correlation of the rows' seed-mean mean@k at step s with that at the end;
- `spearman_seed`: the same for single seeds, averaged over ordered pairs of different seeds. At the
  final step this is the ceiling (how well one seed's final ranking predicts another's): a budget
  whose value is close to it ranks methods as consistently as the default does, up to seed noise;
- `top10_overlap`: rows in both the top 10 at s and the top 10 at the end (seed means);
- k1's and k3_naive's lift over step 0 (seed means), and the k1 cell's wall clock at s (seconds,
  as the suite ran it: two cells at a time on two cores).

    python benchmarks/budget_fidelity.py [--suite paper] [--root results/runs] [--out results/bench/budget_fidelity]
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import yaml

from opdbench import results

PROGRESS_DEPENDENT = {"hard_switch", "soft_switch"}  # opdbench.teachers: ensembles that read progress


def row_name(method: str, variant: str) -> str:
    return f"{method}@{variant}" if variant else method


def uses_progress(root: Path, suite: str, row: str, task: str) -> bool:
    config = next((root / suite / row / task).glob("seed=*/config.yaml"))
    return yaml.safe_load(config.read_text())["method"]["ensemble"] in PROGRESS_DEPENDENT


def fidelity(curves) -> dict:
    """curves: one task's rows (index) x (step, seed) columns of `metric`."""
    final = max(step for step, _ in curves.columns)
    seeds = sorted({seed for _, seed in curves.columns})
    means = curves.T.groupby(level=0).mean().T  # rows x steps
    top_final = set(means[final].nlargest(10).index)

    def spearman(a, b) -> float:
        return float(a.corr(b, method="spearman"))

    out = {}
    for step in sorted(means.columns):
        if step == 0:
            continue
        pairs = [spearman(curves[(step, a)], curves[(final, b)]) for a, b in itertools.permutations(seeds, 2)]
        out[int(step)] = {
            "spearman_means": spearman(means[step], means[final]),
            "spearman_seed": sum(pairs) / len(pairs),
            "top10_overlap": len(set(means[step].nlargest(10).index) & top_final),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="paper")
    parser.add_argument("--root", type=Path, default=Path("results/runs"))
    parser.add_argument("--metric", default="eval/mean@8")
    parser.add_argument("--out", type=Path, default=Path("results/bench/budget_fidelity"))
    args = parser.parse_args()

    df = results.load_metrics(args.root, suite=args.suite)
    df = df[df[args.metric].notna()].copy()
    df["row"] = [row_name(m, v) for m, v in zip(df["method"], df["variant"])]
    report = {"suite": args.suite, "metric": args.metric, "tasks": {}}
    lines = [f"# Shorter budgets against the default: the {args.suite} suite's curves ({args.metric})", ""]
    for task, g in df.groupby("task"):
        curves = g.pivot_table(index="row", columns=["step", "seed"], values=args.metric)
        trained = [r for r in curves.index
                   if curves.loc[r].notna().sum() > len(g["seed"].unique())  # evaluated after step 0
                   and not uses_progress(args.root, args.suite, r, task)]
        curves = curves.loc[trained].dropna(axis=1, how="any")
        by_step = fidelity(curves)
        for step, entry in by_step.items():
            for row in ("k1", "k3_naive"):
                if row in curves.index:
                    entry[f"{row}_lift"] = float(curves.loc[row, step].mean() - curves.loc[row, 0].mean())
            wall = g[(g["row"] == "k1") & (g["step"] == step)]["wall_s"]
            entry["k1_wall_s"] = float(wall.mean()) if len(wall) else None
        report["tasks"][task] = {"rows": len(trained), "steps": by_step}
        lines += [f"## {task} ({len(trained)} rows, seeds {sorted(g['seed'].unique().tolist())})", "",
                  "| step | Spearman, seed means | Spearman, one seed vs another | top-10 overlap "
                  "| k1 lift | k3_naive lift | k1 cell wall (s) |", "|---:|---:|---:|---:|---:|---:|---:|"]
        for step, e in by_step.items():
            wall = f"{e['k1_wall_s']:.0f}" if e.get("k1_wall_s") is not None else ""
            lines.append(f"| {step} | {e['spearman_means']:.3f} | {e['spearman_seed']:.3f} | {e['top10_overlap']} "
                         f"| {e.get('k1_lift', float('nan')):+.3f} | {e.get('k3_naive_lift', float('nan')):+.3f} "
                         f"| {wall} |")
        lines.append("")
    lines.append("The last row of each table is the default budget: its one-seed-vs-another value is the "
                 "ceiling a shorter budget is compared with.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
