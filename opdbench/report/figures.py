"""`opdbench figures`: the paper figures (PNG and PDF) in results/figures/<suite>/.

Built from results/runs/ alone, except two that need no run: advantage against ratio (the
registered shapings, over log r sampled from the shipped zoo student and teacher) and the
estimator's bias and variance (exact, on the enumerable toy). A figure whose methods the suite
did not run is skipped, so a short suite gives the figures it can.

    learning_curves_<family>  eval mean@k against step per family, seed band (lowest to highest seed)
    train_kl                  the per-token k1 estimate of KL(student || teacher): k1, k3_naive, k3_corrected
    advantage_vs_ratio        each divergence's advantage -f'(r) (solid) and its value-form -f(r)/r (dashed)
    divergence_bars           final mean@k per divergence and task, with 95 % CIs
    filter_heatmap            final mean@k per token filter: criterion x percentile band
    stability                 grad norm, rollout/learner drift, entropy for k1 (fp32), bf16 none / TIS / MIS
    hyperparameters           final mean@k (math) against each swept knob, k1's default marked
    estimator_bias_variance   discounted credit's bias and variance against gamma (exact, on the toy)
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .. import results
from ..errors import OpdbenchError
from . import leaderboard
from .leaderboard import BASELINE, ordered_tasks

REFERENCES = tuple(leaderboard.reference_methods())  # horizontal lines, not curves
FILTER_CRITERIA = ("kl", "student_entropy", "teacher_entropy")
FILTER_BANDS = ("0_30", "30_70", "70_100")
# Every training baseline in one family (tests/test_report.py checks it): a learning-curve figure each.
FAMILIES = {
    "estimators": ["k1", "k2_naive", "k3_naive", "k3_corrected"],
    "divergences": ["forward_kl", "js", "jsd_beta", "hellinger", "tsallis", "alpha", "tv"],
    "gkd": ["gkd_rkl", "gkd_fkl", "gkd_jsd", "sft_teacher_samples", "topk_support"],
    "credit": ["gamma_0p1", "gamma_0p5", "gamma_1", "gae_opd", "cr_opd", "gae_cr_opd"],
    "ensembles": ["ens_arith_mean", "ens_geo_mean", "ens_hard_switch", "ens_soft_switch", "ens_random",
                  "ens_control_token"],
    "filters": [f"filter_{c}_{band}" for c in FILTER_CRITERIA for band in FILTER_BANDS],
    "stability": ["k1_bf16", "tis", "mis"],
    "whitening": ["whiten_none", "whiten_batch", "whiten_group", "whiten_sample"],
    "regularized": ["k1_entropy_bonus", "k1_kl_ref", "exopd", "exopd_base_ref", "opsd"],
}
DIVERGENCE_ROWS = ["k1", *FAMILIES["divergences"]]
STABILITY_ROWS = {"k1": "k1 (fp32 rollout)", "k1_bf16": "bf16, no correction", "tis": "bf16, TIS",
                  "mis": "bf16, MIS"}
HYPERPARAMETER_TASK = "math"  # the task the paper suite's variants sweep (conf/suites/paper.yaml)
# Knobs swept as methods rather than variants: (the config path they set, rows).
METHOD_KNOBS = [("method.credit_params.gamma", ["k1", "gamma_0p1", "gamma_0p5", "gamma_1"]),
                ("method.whiten", FAMILIES["whitening"])]
# A panel's title, by the config path it sweeps (others are titled by the path itself).
KNOB_TITLES = {"train.lr": "learning rate", "rollout.temperature": "sampling temperature",
               "task.samples_per_prompt": "samples per prompt (group size)",
               "task.params.max_new_tokens": "response length (max new tokens)",
               "train.epochs": "epochs on each step's rollouts", "models.teachers": "teacher size (parameters)",
               "method.credit_params.gamma": "credit gamma", "method.whiten": "whitening"}
WHITENING_ORDER = ("none", "sample", "group", "batch")  # finest to coarsest normalization


def _plt():
    import matplotlib
    matplotlib.use("Agg")  # files only: no display on a CPU server
    import matplotlib.pyplot as plt
    plt.rcParams.update({"font.size": 7, "axes.titlesize": 8, "axes.labelsize": 7, "legend.fontsize": 6})
    return plt


def _save(fig, path: Path) -> list[Path]:
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    written = []
    for suffix, metadata in ((".png", {}), (".pdf", {"CreationDate": None})):  # no date: same figure, same bytes
        fig.savefig(path.with_suffix(suffix), dpi=200, metadata=metadata)
        written.append(path.with_suffix(suffix))
    _plt().close(fig)
    return written


def _frame(root: Path, suite: str):
    frame = results.load_metrics(root, suite)
    if frame.empty or suite not in set(frame["suite"]):
        raise OpdbenchError(f"no complete cells under {root / suite}: run `opdbench sweep suite={suite}` first")
    frame = frame[frame["suite"] == suite].copy()
    frame["row"] = [results.method_dir(m, v) for m, v in zip(frame["method"], frame["variant"])]
    return frame


def _curves(frame, rows, columns: list[tuple[str, str, int]], path: Path, labels=None) -> list[Path]:
    """One panel per (metric, task): the mean over seeds of each row, a band from the lowest to the
    highest seed. `columns` holds (column, y label, smoothing window in steps). A row keeps its
    colour in every panel, and one legend beside the panels names them all (with their seeds)."""
    plt = _plt()
    tasks = ordered_tasks(frame["task"])
    curves = [r for r in rows if r not in REFERENCES]
    colour = {row: f"C{i % 10}" for i, row in enumerate(curves)}
    fig, axes = plt.subplots(len(columns), len(tasks), figsize=(2.6 * len(tasks) + 1.6, 2.1 * len(columns)),
                             squeeze=False, layout="constrained")
    seeds: dict[str, set[int]] = {}
    handles = {}
    for (column, ylabel, smooth), panel_row in zip(columns, axes):
        for ax, task in zip(panel_row, tasks):
            sub = frame[(frame["task"] == task) & frame[column].notna()]
            for row in rows:
                cells = sub[sub["row"] == row]
                if cells.empty:
                    continue
                if row in REFERENCES:
                    ax.axhline(cells[column].mean(), ls=":", lw=0.8, color="grey")
                    # labelled at the right end, where the curves have left the student's floor
                    ax.annotate(row, (1, cells[column].mean()), xycoords=("axes fraction", "data"), fontsize=5,
                                color="grey", ha="right", va="bottom")
                    continue
                wide = cells.pivot_table(index="step", columns="seed", values=column)
                if smooth > 1:
                    wide = wide.rolling(smooth, min_periods=1).mean()
                seeds.setdefault(row, set()).add(wide.shape[1])
                handles[row], = ax.plot(wide.index, wide.mean(axis=1), lw=1.0, color=colour[row])
                ax.fill_between(wide.index, wide.min(axis=1), wide.max(axis=1), color=colour[row], alpha=0.18, lw=0)
            ax.set_title(task)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        panel_row[0].set_ylabel(ylabel)

    def label(row: str) -> str:
        counts = sorted(seeds[row])
        n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        return f"{(labels or {}).get(row, row)} ({n} seed{'s' * (counts[-1] > 1)})"

    shown = [r for r in curves if r in handles]
    fig.legend([handles[r] for r in shown], [label(r) for r in shown], loc="outside right upper", frameon=False)
    return _save(fig, path)


def learning_curves(frame, k: str, out: Path) -> list[Path]:
    present = set(frame["row"])
    written = []
    for family, members in FAMILIES.items():
        rows = [r for r in dict.fromkeys([BASELINE, *members]) if r in present]
        if any(r != BASELINE for r in rows):
            written += _curves(frame, [*rows, *REFERENCES], [(f"eval/mean@{k}", f"eval mean@{k}", 1)],
                               out / f"learning_curves_{family}")
    return written


def train_kl(frame, out: Path) -> list[Path]:
    rows = [r for r in ("k1", "k3_naive", "k3_corrected") if r in set(frame["row"])]
    return _curves(frame, rows, [("kl_k1", "train KL, k1 estimate (nats/token)", 5)], out / "train_kl") if rows else []


def stability(frame, out: Path) -> list[Path]:
    rows = [r for r in STABILITY_ROWS if r in set(frame["row"])]
    if not any(r != BASELINE for r in rows):
        return []
    columns = [("grad_norm", "grad norm", 5), ("drift", "|log pi_learner - log pi_rollout|", 5),
               ("entropy", "student entropy (nats/token)", 5)]
    return _curves(frame, rows, columns, out / "stability", labels=STABILITY_ROWS)


def _log_r_at_init(num_prompts: int = 64) -> np.ndarray:
    """log pi_student - log pi_teacher of the tokens the shipped student samples on math prompts."""
    import torch

    from ..conf import load_config
    from ..trainer import collect, prepare

    run = prepare(load_config(["method=k1", "task=math", "threads=1", "progress=false"]))
    examples = run.task.examples("train")[:num_prompts]
    with torch.no_grad():
        inputs, _ = collect(run, examples, list(range(num_prompts)), torch.Generator().manual_seed(0), 0.0)
    mask = inputs.batch.response_mask_B_R.bool()
    return (inputs.batch.rollout_logp_B_R - inputs.teacher.logp_B_R)[mask].numpy()


def advantage_vs_ratio(out: Path, log_r: np.ndarray | None = None) -> list[Path]:
    import torch

    from ..conf import baseline_files
    from ..feedback.shaping import GENERATORS, SHAPINGS
    from omegaconf import OmegaConf

    # each divergence with the parameters its baseline uses
    params = {}
    for path in baseline_files().values():
        spec = OmegaConf.to_container(OmegaConf.load(path))
        if spec.get("shaping") in GENERATORS:
            params.setdefault(spec["shaping"], spec.get("shaping_params", {}))
    names = ["reverse_kl", *sorted(n for n in params if n != "reverse_kl")]
    log_r = _log_r_at_init() if log_r is None else log_r
    plt = _plt()
    cols = 4
    fig, axes = plt.subplots(-(-len(names) // cols), cols, figsize=(2.3 * cols, 1.9 * -(-len(names) // cols)),
                             squeeze=False)
    lo, hi = -4, 12  # the zoo's log r: ~90 % within 0.03 of 0, a tail of teacher-rejected tokens to ~25
    x = torch.linspace(lo, hi, 801, dtype=torch.float64)
    for ax, name in zip(axes.flat, names):
        p = params.get(name, {})
        hist = ax.twinx()
        hist.hist(np.clip(log_r, lo, hi), bins=64, range=(lo, hi), color="0.85", log=True)  # log counts: the spike at 0
        hist.set_yticks([], minor=False)
        hist.set_yticks([], minor=True)
        ax.set_zorder(hist.get_zorder() + 1)
        ax.patch.set_visible(False)
        ax.plot(x, SHAPINGS[name](x, **p), lw=1.2, label="-f'(r)")
        ax.plot(x, -GENERATORS[name](x, **p) / x.exp(), lw=1.0, ls="--", label="value form -f(r)/r")
        ax.set_ylim(-6, 6)
        ax.set_title(name + (" " + ", ".join(f"{k}={v}" for k, v in p.items()) if p else ""))
        ax.set_xlabel("log r")
        ax.axhline(0, color="k", lw=0.4)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    axes[0][0].set_ylabel("advantage A(log r)")
    axes[0][0].legend(loc="upper right", frameon=False)
    fig.suptitle(f"grey: log r of {len(log_r)} tokens the zoo student samples on math at step 0 (log counts; "
                 f"beyond {hi} drawn at {hi})", fontsize=6)
    return _save(fig, out / "advantage_vs_ratio")


def _bars(ax, table, rows, tasks, k):
    width = 0.8 / max(1, len(rows))
    for i, row in enumerate(rows):
        rec = table.loc[row]
        points = np.array([rec[f"{t} mean@{k}"] for t in tasks])
        lo = np.array([rec[f"{t} mean@{k} lo"] for t in tasks])
        hi = np.array([rec[f"{t} mean@{k} hi"] for t in tasks])
        ax.bar(np.arange(len(tasks)) + i * width, points, width, label=row,
               yerr=[points - lo, hi - points], capsize=1.5, error_kw={"lw": 0.6})
    ax.set_xticks(np.arange(len(tasks)) + width * (len(rows) - 1) / 2, tasks)
    ax.set_ylabel(f"final eval mean@{k} (95 % CI)")
    ax.grid(alpha=0.3, axis="y")


def divergence_bars(table, tasks, k, out: Path) -> list[Path]:
    rows = [r for r in DIVERGENCE_ROWS if r in table.index]
    if len(rows) < 2:
        return []
    fig, ax = _plt().subplots(figsize=(6.5, 2.6))
    _bars(ax, table, rows, tasks, k)
    ax.legend(ncol=4, frameon=False)
    return _save(fig, out / "divergence_bars")


def filter_heatmap(table, tasks, k, out: Path) -> list[Path]:
    if not any(f"filter_{c}_{b}" in table.index for c in FILTER_CRITERIA for b in FILTER_BANDS):
        return []
    plt = _plt()
    fig, axes = plt.subplots(1, len(tasks), figsize=(2.6 * len(tasks), 2.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        grid = np.full((len(FILTER_CRITERIA), len(FILTER_BANDS)), np.nan)
        for i, c in enumerate(FILTER_CRITERIA):
            for j, b in enumerate(FILTER_BANDS):
                if f"filter_{c}_{b}" in table.index:
                    grid[i, j] = table.loc[f"filter_{c}_{b}", f"{task} mean@{k}"]
        image = ax.imshow(grid, cmap="viridis", aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="w", fontsize=6)
        ax.set_xticks(range(len(FILTER_BANDS)), [b.replace("_", "-") + " %" for b in FILTER_BANDS])
        ax.set_yticks(range(len(FILTER_CRITERIA)), FILTER_CRITERIA if ax is axes[0][0] else [])
        k1 = table.loc[BASELINE, f"{task} mean@{k}"] if BASELINE in table.index else np.nan
        ax.set_title(f"{task} (k1: {k1:.2f})")
        ax.set_xlabel("tokens kept: percentile band")
        fig.colorbar(image, ax=ax, shrink=0.8)
    return _save(fig, out / "filter_heatmap")


def _get(config: dict, dotted: str):
    for key in dotted.split("."):
        config = config.get(key, {}) if isinstance(config, dict) else {}
    return config if config != {} else None


def row_configs(cells, task: str) -> dict[str, dict]:
    """Each row's config on `task`: a knob's value is the task's (math and dialogue differ in
    samples per prompt and response length), and seeds share a config."""
    return {cell.row: cell.config for cell in cells if cell.summary["task"] == task}


def hyperparameters(table, configs: dict[str, dict], k, out: Path, task: str = HYPERPARAMETER_TASK) -> list[Path]:
    """Final mean@k on `task` against each knob a suite sweeps: k1's variants (`k1@train.lr=5e-4`)
    and the knobs registered as methods (gamma, whitening); k1's own value is the marked point.
    A teacher is placed at its parameter count (the zoo's manifest)."""
    knobs: dict[str, list[str]] = {}
    for row in table.index:
        found = re.fullmatch(rf"{BASELINE}@([\w.]+)=(.+)", row)
        if found and f"{task} mean@{k}" in table.columns and row in configs:
            knobs.setdefault(found[1], [BASELINE]).append(row)
    panels = [(knob, rows) for knob, rows in knobs.items()]
    panels += [(path, [r for r in rows if r in table.index and r in configs]) for path, rows in METHOD_KNOBS]
    panels = [(knob, [(r, _knob_value(knob, configs.get(r, {}))) for r in rows]) for knob, rows in panels if len(rows) > 1]
    if not panels:
        return []
    plt = _plt()
    cols = min(4, len(panels))
    fig, axes = plt.subplots(-(-len(panels) // cols), cols, figsize=(2.3 * cols, 2.0 * -(-len(panels) // cols)),
                             squeeze=False)
    for ax, (knob, points) in zip(axes.flat, panels):
        numeric = all(isinstance(v, float) for _, v in points)
        points = sorted(points, key=lambda p: p[1] if numeric else (_rank(p[1], WHITENING_ORDER), str(p[1])))
        xs = [v if numeric else i for i, (_, v) in enumerate(points)]
        rec = [table.loc[r] for r, _ in points]
        y = np.array([r[f"{task} mean@{k}"] for r in rec])
        err = [y - [r[f"{task} mean@{k} lo"] for r in rec], [r[f"{task} mean@{k} hi"] for r in rec] - y]
        ax.errorbar(xs, y, yerr=err, marker="o", ms=3, lw=1, capsize=2)
        for x, (row, _), v in zip(xs, points, y):
            if row == BASELINE:
                ax.plot([x], [v], marker="*", ms=9, color="C3", zorder=3, label="k1 default")
        if knob in ("train.lr", "models.teachers") and numeric:  # (an ensemble of teachers has no one size)
            ax.set_xscale("log")
        if numeric:  # a tick at each swept value, nowhere else: a teacher's is its size
            size = knob == "models.teachers"
            ax.set_xticks(xs, [f"{x / 1e3:.0f}K" if size else f"{x:g}" for x in xs], minor=False)
            ax.minorticks_off()
        else:
            ax.set_xticks(xs, [str(v) for _, v in points], rotation=20)
        ax.set_title(KNOB_TITLES.get(knob, knob))
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    axes[0][0].set_ylabel(f"{task}: final mean@{k} (95 % CI)")
    axes[0][0].legend(frameon=False)
    return _save(fig, out / "hyperparameters")


def _teachers(config: dict) -> list[str]:
    return list(_get(config, "models.teachers") or [])


def _knob_value(knob: str, config: dict):
    """The knob's value in a row's config, as a float where it is a number (a lone zoo teacher: its
    parameter count), else as it is (a method's default gamma, unset, is 0: k1's credit)."""
    if knob == "models.teachers":
        from ..zoo import manifest

        teachers = _teachers(config)
        params = manifest().get("models", {}).get(teachers[0].removeprefix("zoo:"), {}).get("params") if len(teachers) == 1 else None
        return float(params) if params else ",".join(teachers)
    value = _get(config, knob)
    if value is None and knob == "method.credit_params.gamma":
        value = 0.0
    number = _number(value)
    return value if number is None else number


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _rank(value, order) -> int:
    return order.index(value) if value in order else len(order)


def estimator_bias_variance(out: Path) -> list[Path]:
    from .toys import TabularAR, credit_bias_variance

    gammas = np.linspace(0, 1, 21)
    curves = [credit_bias_variance(TabularAR(T=4, V=3, seed=seed), gammas) for seed in range(5)]
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(5.2, 2.1))
    for ax, key, label in ((axes[0], "bias", "bias |E g - grad|"), (axes[1], "variance", "variance E|g - E g|^2")):
        for seed, rows in enumerate(curves):
            ax.plot(gammas, [r[key] for r in rows], lw=1, label=f"toy seed {seed}")
        ax.set_xlabel("gamma (credit discount)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_title("k1 credit vs the sequence reverse-KL gradient")
    axes[1].set_title("one sequence per estimate (T=4, V=3)")
    axes[0].legend(frameon=False)
    return _save(fig, out / "estimator_bias_variance")


def write(root: str | Path = "results/runs", suite: str = "quick", out: str | Path = "results/figures") -> list[Path]:
    root, out = Path(root), Path(out) / suite
    frame = _frame(root, suite)
    out.mkdir(parents=True, exist_ok=True)  # after the check: a misspelt suite leaves no empty folder
    k = next(c for c in frame.columns if c.startswith("eval/mean@")).split("@")[1]
    cells = leaderboard.load_cells(root, suite)
    table, _ = leaderboard.build(root, suite, cells=cells)
    table = table.set_index("method")
    tasks = ordered_tasks(frame["task"])
    written = [*learning_curves(frame, k, out), *train_kl(frame, out), *stability(frame, out),
               *advantage_vs_ratio(out), *divergence_bars(table, tasks, k, out), *filter_heatmap(table, tasks, k, out),
               *hyperparameters(table, row_configs(cells, HYPERPARAMETER_TASK), k, out, HYPERPARAMETER_TASK),
               *estimator_bias_variance(out)]
    for old in {*out.glob("*.png"), *out.glob("*.pdf")} - set(written):  # a figure this suite no longer makes
        old.unlink()
    return written
