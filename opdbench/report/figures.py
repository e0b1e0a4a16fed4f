"""`opdbench figures`: paper figures (PNG and PDF) in results/figures/, from results/runs/ alone.

Written so far: learning curves (eval mean@k against step, the mean over seeds with a band from
the lowest to the highest seed) and train-KL curves (the per-token k1 estimate of KL(student ||
teacher), smoothed) for every method of a suite, one panel per task. The other figures of issue 13
(advantage against ratio, filters, stability diagnostics, hyperparameter sweeps, estimator bias)
are not written yet.
"""

from __future__ import annotations

from pathlib import Path

from .. import results
from ..errors import OpdbenchError

TASK_ORDER = ("math", "code", "dialogue")
REFERENCES = ("student_base", "teacher")  # horizontal lines, not curves


def _frame(root: Path, suite: str):
    frame = results.load_metrics(root)
    if frame.empty or suite not in set(frame["suite"]):
        raise OpdbenchError(f"no complete cells under {root / suite}: run `opdbench sweep suite={suite}` first")
    frame = frame[frame["suite"] == suite].copy()
    frame["row"] = [results.method_dir(m, v) for m, v in zip(frame["method"], frame["variant"])]
    return frame


def _panels(frame, column: str, ylabel: str, smooth: int, path: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")  # files only: no display on a CPU server
    import matplotlib.pyplot as plt

    tasks = [t for t in TASK_ORDER if t in set(frame["task"])] + sorted(set(frame["task"]) - set(TASK_ORDER))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.4 * len(tasks), 2.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        sub = frame[(frame["task"] == task) & frame[column].notna()]
        for row in sorted(set(sub["row"])):
            cells = sub[sub["row"] == row]
            if row in REFERENCES:
                if column.startswith("eval/"):
                    ax.axhline(cells[column].mean(), ls=":", lw=1, color="grey")
                    ax.annotate(row, (0, cells[column].mean()), fontsize=6, color="grey", va="bottom")
                continue
            wide = cells.pivot_table(index="step", columns="seed", values=column)
            if smooth > 1:
                wide = wide.rolling(smooth, min_periods=1).mean()
            line, = ax.plot(wide.index, wide.mean(axis=1), lw=1.2, label=f"{row} ({wide.shape[1]} seeds)")
            ax.fill_between(wide.index, wide.min(axis=1), wide.max(axis=1), color=line.get_color(), alpha=0.2, lw=0)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel, fontsize=8)
    axes[0][0].legend(loc="best", fontsize=6, frameon=False)
    fig.tight_layout()
    written = []
    for suffix in (".png", ".pdf"):
        out = path.with_suffix(suffix)
        fig.savefig(out, dpi=200)
        written.append(out)
    plt.close(fig)
    return written


def write(root: str | Path = "results/runs", suite: str = "quick", out: str | Path = "results/figures") -> list[Path]:
    root, out = Path(root), Path(out) / suite
    out.mkdir(parents=True, exist_ok=True)
    frame = _frame(root, suite)
    k = next(c for c in frame.columns if c.startswith("eval/mean@")).split("@")[1]
    return [*_panels(frame, f"eval/mean@{k}", f"eval mean@{k}", 1, out / "learning_curves"),
            *_panels(frame, "kl_k1", "train KL, k1 estimate (nats/token)", 5, out / "train_kl")]
