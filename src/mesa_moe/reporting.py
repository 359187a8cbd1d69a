"""Figures people look at: where safety and general tokens route, and what was selected."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: workflow jobs have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .artifacts import atomic_path, write_parquet  # noqa: E402
from .cost import beta_rational_cost, cost_minimum  # noqa: E402
from .runs import NO_PARAMS, parse_run, setting_of  # noqa: E402


def _save(fig, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)


def plot_selection(
    activations: pd.DataFrame, experts: pd.DataFrame, title: str, path: str | os.PathLike
) -> None:
    """Heat maps [layer × expert] of safe and gen routing frequency, selected experts boxed."""
    layers = sorted(experts.layer.unique())
    num_experts = int(experts.expert.max()) + 1
    selected = experts.pivot(index="layer", columns="expert", values="selected").loc[layers]
    fig, axes = plt.subplots(
        1, 2, figsize=(max(8, 0.55 * num_experts * 2), 1.2 + 0.5 * len(layers)), squeeze=False
    )
    for ax, source in zip(axes[0], ("safe", "gen")):
        freq = (
            activations[activations.source == source]
            .pivot(index="layer", columns="expert", values="freq")
            .loc[layers]
        )
        image = ax.imshow(freq.to_numpy(), aspect="auto", cmap="viridis")
        rows, cols = np.nonzero(selected.to_numpy())
        ax.scatter(
            cols,
            rows,
            marker="s",
            s=90,
            facecolors="none",
            edgecolors="red",
            linewidths=1.5,
            label="selected",
        )
        ax.set_xticks(range(num_experts))
        ax.set_yticks(range(len(layers)), [str(layer) for layer in layers])
        ax.set_xlabel("expert")
        ax.set_ylabel("MoE layer")
        ax.set_title(f"routing frequency, {source} tokens")
        fig.colorbar(image, ax=ax, fraction=0.04)
    axes[0][0].legend(loc="upper right", fontsize=7)
    fig.suptitle(title, y=1.0 + 0.3 / (1.2 + 0.5 * len(layers)))
    _save(fig, path)


def plot_cost_curve(
    experts: pd.DataFrame, alpha_shift: float, title: str, path: str | os.PathLike
) -> None:
    """C(f) over the R_mix rank percentile, with every expert placed at its f and cost."""
    f = np.linspace(0, 99.5, 400)
    curve = beta_rational_cost(f, alpha_shift)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(f, curve / curve.max(), color="black", lw=1.5, label=f"C(f), α_shift={alpha_shift}")
    # Ĉ is normalised per layer by the layer's own maximum; plotting C(f)/max C(f) on the same
    # axis would hide that, so the experts are shown at their raw C(f_mix) on the same scale.
    raw = beta_rational_cost(experts.f_mix.to_numpy(), alpha_shift) / curve.max()
    chosen = experts.selected.to_numpy()
    ax.scatter(
        experts.f_mix[~chosen],
        raw[~chosen],
        s=12,
        color="tab:blue",
        alpha=0.5,
        label="expert (all layers)",
    )
    ax.scatter(experts.f_mix[chosen], raw[chosen], s=30, color="tab:red", label="selected")
    ax.axvline(cost_minimum(alpha_shift), color="grey", ls="--", lw=1, label="minimum of C")
    ax.set_yscale("log")
    ax.set_xlabel("f = R_mix rank percentile (0 = head, 100 = tail)")
    ax.set_ylabel("cost (relative)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_loss_curve(log: pd.DataFrame, path: str | os.PathLike) -> None:
    """Every loss term of a training run against the step."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for term in ("loss", "sft", "ot_safe", "ot_gen"):
        if log[term].abs().sum() > 0:
            ax.plot(log.step, log[term], label=term, lw=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title("training losses")
    _save(fig, path)


SUMMARY_COLUMNS = [
    "model",
    "method",
    "run",
    "w",
    "eps",
    "gamma",
    "lr",
    "seed",
    "benchmark",
    "kind",
    "metric",
    "value",
    "degenerate",
    "string_judge_agreement",
    "n",
    "judge",
    "judge_model",
]
# Metrics where lower is better: turned into "higher is safer / better" for the scatter plot.
LOWER_IS_BETTER = ("asr", "over_refusal_rate")


def summary_table(model: str, metrics_paths: list[str]) -> pd.DataFrame:
    """One row per model × method × parameters × benchmark × metric (SUMMARY_COLUMNS).

    `degenerate` (share of answers that are neither a refusal nor a well-formed answer) and
    `string_judge_agreement` (how often the refusal-string judge agrees with the exact one) are
    set where the benchmark has an exact answer classifier (the organism's), else empty.
    """
    rows = []
    for path in metrics_paths:
        path = Path(path)
        method, run = path.parent.parent.name, path.parent.name
        params = parse_run(run)
        for benchmark, result in json.loads(path.read_text()).items():
            for metric, value in result["scores"].items():
                rows.append(
                    {
                        "model": model,
                        "method": method,
                        "run": run,
                        "w": params.get("w"),
                        "eps": params.get("eps"),
                        "gamma": params.get("gamma"),
                        "lr": params.get("lr"),
                        "seed": params.get("seed"),
                        "benchmark": benchmark,
                        "kind": result["kind"],
                        "metric": metric,
                        "value": value,
                        "degenerate": result.get("degenerate", {}).get(metric),
                        "string_judge_agreement": result.get("string_judge_agreement", {}).get(
                            metric
                        ),
                        "n": result["n"],
                        "judge": result["judge"]["name"],
                        "judge_model": result["judge"].get("model"),
                    }
                )
    table = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    floats = ("lr", "seed", "degenerate", "string_judge_agreement")
    return table.astype(dict.fromkeys(floats, float))


def _over_seeds(frame: pd.DataFrame, keys: list[str], column: str) -> pd.DataFrame:
    """mean, std (ddof 1: NaN for one seed) and n_seeds of `column` per method × setting ×
    keys: the seeds of one setting are pooled, different settings never."""
    grouped = frame.assign(setting=frame.run.map(setting_of)).groupby(
        ["method", "setting", *keys], sort=False
    )[column]
    return pd.DataFrame(
        {"mean": grouped.mean(), "std": grouped.std(ddof=1), "n_seeds": grouped.count()}
    )


SEED_PARAMS = ("w", "eps", "gamma", "lr")


def aggregate_seeds(table: pd.DataFrame) -> pd.DataFrame:
    """One row per method × setting (run without seed) × benchmark × metric: `mean`, `std`
    (over seeds, ddof 1; NaN for a single seed), `n_seeds`, and the mean `degenerate` share,
    with the setting's `kind` and parameters (those of SEED_PARAMS the table has)."""
    keys = ["benchmark", "metric"]
    stats = _over_seeds(table, keys, "value")
    firsts = [c for c in ("kind", *SEED_PARAMS) if c in table.columns]
    grouped = table.assign(setting=table.run.map(setting_of)).groupby(
        ["method", "setting", *keys], sort=False
    )
    stats["degenerate"] = grouped.degenerate.mean()
    return grouped[firsts].first().join(stats).reset_index()


def _cell(row: pd.Series, seeds: int) -> str:
    if pd.isna(row["mean"]):
        return "–"
    text = f"{row['mean']:.1f}" if row.n_seeds < 2 else f"{row['mean']:.1f} ± {row['std']:.1f}"
    if row.n_seeds != seeds:
        text += f" [n={row.n_seeds}]"
    return text if pd.isna(row.degenerate) else f"{text} ({row.degenerate:.1f})"


def summary_markdown(table: pd.DataFrame) -> str:
    """The paper-style table: methods and settings as rows, benchmark metrics as columns, in
    %, each `mean ± std` over the setting's seeds (just the value for one seed) with its
    degenerate share beside it where known, an `n` (seeds) column where any setting has more
    than one; then the string judge's agreement."""
    stats = aggregate_seeds(table)
    stats = stats.assign(
        row=stats.method + " " + stats.setting,
        column=stats.benchmark + " " + stats.metric,
        mean=stats["mean"] * 100,
        std=stats["std"] * 100,
        degenerate=stats.degenerate * 100,
    )
    rows, columns = stats.row.unique(), stats.column.unique()
    cells = stats.set_index(["row", "column"])
    seeds = stats.groupby("row", sort=False).n_seeds.max()
    with_n = bool((seeds > 1).any())
    header = ["method", *(["n"] if with_n else []), *columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        values = [
            _cell(cells.loc[(row, column)], seeds[row]) if (row, column) in cells.index else "–"
            for column in columns
        ]
        lines.append(
            "| " + " | ".join([row, *([str(seeds[row])] if with_n else []), *values]) + " |"
        )
    arrows = ", ".join(f"{m} ↓" for m in LOWER_IS_BETTER)
    notes = [f"Values in %. Higher is better except {arrows}."]
    if with_n:
        notes.append(
            "Each cell: mean ± standard deviation (ddof 1) over the n training seeds of the "
            "row's setting (a single seed: its value; [n=k]: a cell with fewer seeds). "
            "Seeds of different settings are never pooled."
        )
    if table.degenerate.notna().any():
        notes.append(
            "In parentheses: the share of degenerate answers (neither the exact refusal "
            "nor a well-formed answer of the benchmark's grammar), in %. Safety counts "
            "exact refusals and ASR well-formed compliances, so neither includes them."
        )
    judged = table[table.kind.isin(["safety", "overrefusal"])].string_judge_agreement.dropna()
    if len(judged):
        notes.append(
            f"The refusal-string judge agrees with the exact judge on refusal vs not on "
            f"{judged.mean() * 100:.1f}% of safety and over-refusal answers (mean over "
            f"cells; lowest {judged.min() * 100:.1f}%)."
        )
    return "\n".join(lines) + "\n\n" + "\n\n".join(notes) + "\n"


# A routing-attack metric: the benchmark's metric with m experts masked per layer (`asr_m1`).
ATTACK_METRIC = re.compile(r"(?P<metric>.+)_m(?P<m>\d+)")


def masked_experts(metric: str) -> int | None:
    """m of a routing-attack metric (`asr_m2` → 2); None for a metric without the attack."""
    match = ATTACK_METRIC.fullmatch(metric)
    return int(match["m"]) if match else None


def oriented(table: pd.DataFrame) -> pd.Series:
    """Values turned so that higher is always better (1 − value for LOWER_IS_BETTER metrics)."""
    lower = table.metric.str.startswith(LOWER_IS_BETTER)
    return table.value.where(~lower, 1 - table.value)


# Benchmark kinds averaged into each score; over-refusal is reported but in neither.
SCORE_KINDS = {"safety": ("safety",), "utility": ("utility", "code")}


def run_scores(table: pd.DataFrame) -> pd.DataFrame:
    """Per (method, run): `safety` and `utility`, the means of the oriented metrics (see
    `oriented`) of the benchmarks of SCORE_KINDS; NaN where a run has no such benchmark."""
    scored = table.assign(score=oriented(table))
    return pd.concat(
        {
            name: scored[scored.kind.isin(kinds)].groupby(["method", "run"]).score.mean()
            for name, kinds in SCORE_KINDS.items()
        },
        axis=1,
    )


def setting_scores(table: pd.DataFrame) -> pd.DataFrame:
    """Per (method, setting): `safety`, `utility` (means over seeds of each run's run_scores),
    `safety_std`, `utility_std` (ddof 1; NaN for one seed) and `n_seeds` (runs)."""
    runs = run_scores(table).reset_index()
    parts = {}
    for score in SCORE_KINDS:
        stats = _over_seeds(runs, [], score)
        parts[score], parts[f"{score}_std"] = stats["mean"], stats["std"]
    parts["n_seeds"] = runs.groupby([runs.method, runs.run.map(setting_of)], sort=False).size()
    return pd.DataFrame(parts).rename_axis(["method", "setting"])


def _error_bars(ax, scores: pd.DataFrame) -> None:
    """± std bars (setting_scores' columns) on the points with more than one seed."""
    spread = scores[scores.n_seeds > 1]
    if len(spread):
        ax.errorbar(
            spread.utility,
            spread.safety,
            xerr=spread.utility_std.fillna(0),
            yerr=spread.safety_std.fillna(0),
            fmt="none",
            ecolor="grey",
            elinewidth=1,
            capsize=2,
        )


def plot_safety_vs_utility(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Safety against utility per method × setting (mean over seeds, ± std bars where there
    are several); the colour is the setting's over-refusal where measured."""
    both = setting_scores(table).dropna(subset=["safety", "utility"])
    refusing = table[table.kind == "overrefusal"]
    over_refusal = (
        refusing.assign(setting=refusing.run.map(setting_of))
        .groupby(["method", "setting"])
        .value.mean()
    )
    fig, ax = plt.subplots(figsize=(7, 5))
    _error_bars(ax, both)
    if len(over_refusal):
        points = ax.scatter(
            both.utility,
            both.safety,
            c=over_refusal.reindex(both.index),
            cmap="coolwarm",
            vmin=0,
            vmax=1,
            edgecolors="black",
            linewidths=0.5,
            zorder=3,
        )
        names = ", ".join(sorted(refusing.benchmark.unique()))
        fig.colorbar(points, ax=ax, label=f"over-refusal rate (mean of {names})")
    else:
        ax.scatter(both.utility, both.safety, color="tab:blue", zorder=3)
    for (method, setting), row in both.iterrows():
        seeds = f" (n={int(row.n_seeds)})" if row.n_seeds > 1 else ""
        ax.annotate(
            f"{method} {setting}".replace(f" {NO_PARAMS}", "") + seeds,
            (row.utility, row.safety),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.set_xlabel("utility (mean over utility benchmarks)")
    ax.set_ylabel("safety (mean safe-response rate; 1 − ASR)")
    ax.set_title("safety vs utility (mean ± std over seeds)")
    _save(fig, path)


def plot_sparsity(model_sparsity: dict[str, pd.DataFrame], path: str | os.PathLike) -> None:
    """Per evaluated model: mean over layers of the top-m share of safety routing, and entropy."""
    labels = list(model_sparsity)
    shares = [c for c in next(iter(model_sparsity.values())).columns if c.endswith("_share")]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.35 * len(labels) + 2))
    y = np.arange(len(labels))
    for offset, share in enumerate(shares):
        left.barh(
            y + 0.25 * offset,
            [model_sparsity[k][share].mean() for k in labels],
            height=0.25,
            label=share.replace("_share", ""),
        )
    left.set_yticks(y + 0.25, labels, fontsize=7)
    left.set_xlabel("share of safety routing held by the top-m experts")
    left.legend(fontsize=7)
    right.barh(y, [model_sparsity[k].entropy.mean() for k in labels], color="tab:green")
    right.axvline(
        next(iter(model_sparsity.values())).max_entropy.mean(), color="grey", ls="--", lw=1
    )
    right.set_yticks(y, [])
    right.set_xlabel("entropy of safe routing (nats; dashed: uniform)")
    _save(fig, path)


def write_summary(
    model: str,
    metrics_paths: list[str],
    sparsity_paths: list[str],
    table_path: str,
    markdown_path: str,
    scatter_path: str,
    sparsity_path: str,
) -> pd.DataFrame:
    """The `summary` stage: the table (parquet), its markdown and the two comparison figures."""
    table = summary_table(model, metrics_paths)
    write_parquet(table, table_path)
    with atomic_path(markdown_path) as tmp:
        tmp.write_text(f"# {model}\n\n" + summary_markdown(table))
    plot_safety_vs_utility(table, scatter_path)
    sparsity = {
        f"{Path(p).parent.parent.name} {Path(p).parent.name}".replace(
            " default", ""
        ): pd.read_parquet(p)
        for p in sparsity_paths
    }
    plot_sparsity(sparsity, sparsity_path)
    return table


SWEEP_PARAMS = ("w", "eps", "gamma")


def sweep_table(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per method × setting (its seeds pooled): its parameters, each metric's mean
    over seeds, the safety and utility scores (setting_scores: means over seeds of the
    oriented-metric means, with their std) and n_seeds, and whether the setting is on the
    Pareto front of the means."""
    stats = aggregate_seeds(summary)
    keys = ["method", "setting"]
    wide = stats.assign(column=stats.benchmark + ":" + stats.metric).pivot_table(
        index=keys, columns="column", values="mean", sort=False, dropna=False
    )
    wide.columns.name = None
    params = [p for p in SEED_PARAMS if p in stats.columns]
    wide = (
        stats.groupby(keys, sort=False)[params]
        .first()
        .join(wide)
        .join(setting_scores(summary))
        .reset_index()
    )
    wide["pareto"] = pareto_front(wide.safety.to_numpy(), wide.utility.to_numpy())
    return wide


def pareto_front(safety: np.ndarray, utility: np.ndarray) -> np.ndarray:
    """True where no other run is at least as good on both and better on one."""
    front = np.ones(len(safety), dtype=bool)
    for i in range(len(safety)):
        better = (
            (safety >= safety[i])
            & (utility >= utility[i])
            & ((safety > safety[i]) | (utility > utility[i]))
        )
        front[i] = not better.any()
    return front


def plot_sweep(sweep: pd.DataFrame, param: str, path: str | os.PathLike) -> None:
    """Safety and utility of every setting against one swept parameter, a line per method;
    bars: ± the std over seeds (pooled over the settings sharing the value) where known."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    runs = sweep.dropna(subset=[param])
    for ax, score in zip(axes, ("safety", "utility")):
        for method, rows in runs.groupby("method"):
            by_value = rows.groupby(param)
            means = by_value[score].mean().sort_index()
            # pooled within-setting std: the root of the mean of the seed variances
            spread = np.sqrt(by_value[f"{score}_std"].apply(lambda s: (s**2).mean()))
            spread = spread.reindex(means.index).fillna(0).to_numpy()
            ax.errorbar(
                means.index,
                means.to_numpy(),
                yerr=spread if spread.any() else None,
                marker="o",
                capsize=2,
                label=method,
            )
        base = sweep[sweep.method == "base"][score]
        if len(base):
            ax.axhline(base.iloc[0], color="grey", ls="--", lw=1, label="base")
        ax.set_xlabel(param)
        ax.set_ylabel(score)
        if param == "eps" and len(runs) and runs[param].min() > 0:
            ax.set_xscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{param} sweep (means over seeds and settings sharing the value; ± std)")
    _save(fig, path)


def plot_pareto(sweep: pd.DataFrame, path: str | os.PathLike) -> None:
    fig, ax = plt.subplots(figsize=(7, 5))
    _error_bars(ax, sweep)
    for method, rows in sweep.groupby("method"):
        ax.scatter(rows.utility, rows.safety, label=method, s=25, zorder=3)
    front = sweep[sweep.pareto].sort_values("utility")
    ax.plot(front.utility, front.safety, color="black", lw=1, ls="--", label="Pareto front")
    ax.set_xlabel("utility")
    ax.set_ylabel("safety")
    ax.set_title("safety vs utility, every setting (mean ± std over seeds)")
    ax.legend(fontsize=7)
    _save(fig, path)


def write_sweep(
    summary_path: str, table_path: str, figure_paths: dict[str, str], pareto_path: str
) -> pd.DataFrame:
    """The `sweep` stage: the sweep table, a figure per swept parameter (figure_paths: one per
    SWEEP_PARAMS entry), and the Pareto front."""
    sweep = sweep_table(pd.read_parquet(summary_path))
    write_parquet(sweep, table_path)
    for param in SWEEP_PARAMS:
        plot_sweep(sweep, param, figure_paths[param])
    plot_pareto(sweep, pareto_path)
    return sweep
