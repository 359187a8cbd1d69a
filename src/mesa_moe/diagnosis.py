"""Why router training and L_OT help or hurt: routing shift, the attack per m, tuning curves.

Three views of finished runs (docs/method.md §6.7), each a pure function of tables:

- routing shift: on each evaluated model's own D_stat profile, the share of safety (and general)
  tokens' routing slots that land on the experts MESA selected, and the entropy of safety routing,
  so Base and the trained methods can be compared: did router training move safety onto the
  selected experts, and did it concentrate it?
- ASR per m: the routing attack's success rate per number m of masked experts, with the share of
  degenerate answers beside it (an attacked model that emits noise does not comply).
- validation scores against γ and ε, from the tuning trials.

Seeds are averaged per setting only: a setting is a run name less its `seed~N`.
"""

from __future__ import annotations

import os
import re

import matplotlib

matplotlib.use("Agg")  # headless: workflow jobs have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .artifacts import write_parquet  # noqa: E402
from .reporting import _save, run_scores  # noqa: E402
from .runs import parse_run, seed_of, setting_of  # noqa: E402

OT = "ot"  # the selector of MESA's own selection
SHIFT_COLUMNS = [
    "method",
    "run",
    "setting",
    "seed",
    "selector",
    "selection",
    "layer",
    "safe_share",
    "gen_share",
    "uniform_share",
    "safe_entropy",
    "max_entropy",
]
SHIFT_VALUES = ("safe_share", "gen_share", "uniform_share", "safe_entropy", "max_entropy")
ATTACK_METRIC = re.compile(r"^asr_m(\d+)$")


def _require(table: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; has {list(table.columns)}")


def routed_shares(activations: pd.DataFrame, experts: pd.DataFrame) -> pd.DataFrame:
    """Per MoE layer, and over all layers (layer <NA>): the share of safe and of gen tokens'
    routing slots that went to the selected experts, and `uniform_share`, the share uniform
    routing would give them (selected / E).

    activations: a profile table (layer, expert, source, count); experts: a selection (layer,
    expert, selected) over the same layers and experts. Over all layers the slots are pooled.
    """
    _require(activations, ["layer", "expert", "source", "count"], "activations")
    _require(experts, ["layer", "expert", "selected"], "selection")
    counts = activations[activations.source.isin(["safe", "gen"])].pivot_table(
        index=["layer", "expert"], columns="source", values="count", aggfunc="sum"
    )
    selected = experts.set_index(["layer", "expert"]).selected.astype(bool)
    if set(counts.index) != set(selected.index):
        raise ValueError(
            f"selection covers layers {sorted(experts.layer.unique())} with "
            f"{experts.groupby('layer').size().max()} experts, the profile layers "
            f"{sorted(activations.layer.unique())} with "
            f"{activations.groupby('layer').expert.nunique().max()}: not the same model"
        )
    if not {"safe", "gen"} <= set(counts.columns):
        raise ValueError("activations: need rows of source safe and gen")
    table = counts[["safe", "gen"]].assign(selected=selected.reindex(counts.index))
    on_selected = table[table.selected].groupby(level="layer")[["safe", "gen"]].sum()
    per_layer = table.groupby(level="layer")[["safe", "gen"]].sum()
    on_selected = on_selected.reindex(per_layer.index, fill_value=0)
    shares = pd.DataFrame(
        {
            "safe_share": on_selected.safe / per_layer.safe,
            "gen_share": on_selected.gen / per_layer.gen,
            "uniform_share": table.groupby(level="layer").selected.mean(),
        }
    )
    overall = pd.DataFrame(
        {
            "safe_share": [on_selected.safe.sum() / per_layer.safe.sum()],
            "gen_share": [on_selected.gen.sum() / per_layer.gen.sum()],
            "uniform_share": [table.selected.mean()],
        }
    )
    shares = pd.concat([shares.reset_index(), overall], ignore_index=True)
    return shares.astype({"layer": "Int64"})


def routing_shift(
    method: str,
    run: str,
    activations: pd.DataFrame,
    sparsity: pd.DataFrame,
    selections: dict[tuple[str, str], pd.DataFrame],
) -> pd.DataFrame:
    """One evaluated model's rows of SHIFT_COLUMNS: per selection {(selector, selection run):
    experts table}, `routed_shares` of its own D_stat profile, with the entropy of its safety
    routing (sparsity table; over all layers, the layer mean)."""
    _require(sparsity, ["layer", "entropy", "max_entropy"], "sparsity")
    if not selections:
        raise ValueError(f"{method} {run}: no selection to measure routing against")
    setting, seed = setting_of(run), seed_of(run)
    entropy = sparsity.set_index("layer")
    if set(entropy.index) != set(activations.layer):
        raise ValueError(
            f"{method} {run}: sparsity layers {sorted(entropy.index)} are not the profile's "
            f"{sorted(activations.layer.unique())}"
        )
    frames = []
    for (selector, selection), experts in selections.items():
        shares = routed_shares(activations, experts)
        per_layer = {
            column: shares.layer.map(entropy[column])
            .astype(float)
            .where(shares.layer.notna(), entropy[column].mean())
            for column in ("entropy", "max_entropy")
        }
        frames.append(
            shares.assign(
                method=method,
                run=run,
                setting=setting,
                seed=seed,
                selector=selector,
                selection=selection,
                safe_entropy=per_layer["entropy"],
                max_entropy=per_layer["max_entropy"],
            )
        )
    return pd.concat(frames, ignore_index=True)[SHIFT_COLUMNS]


def seed_spread(table: pd.DataFrame, keys: list[str], values: list[str]) -> pd.DataFrame:
    """Mean and standard deviation (ddof 1; NaN for one seed) of `values` over the seeds of each
    group of `keys` (which should hold `setting`, never `run`), and `seeds`, how many."""
    grouped = table.groupby(keys, dropna=False, sort=False)
    spread = grouped[values].agg(["mean", "std"])
    spread.columns = [f"{value}_{stat}" for value, stat in spread.columns]
    return spread.assign(seeds=grouped.size()).reset_index()


def _label(method: str, setting: str) -> str:
    return f"{method} {setting}".replace(" default", "")


def plot_routing_shift(shift: pd.DataFrame, path: str | os.PathLike) -> None:
    """Over all layers: safe and gen shares on the OT selection (and on the method's own), the
    safety routing entropy; per layer: the safe share on the OT selection. Mean ± std over seeds."""
    keys = ["method", "setting", "selector", "selection", "layer"]
    spread = seed_spread(shift, keys, list(SHIFT_VALUES))
    overall = spread[spread.layer.isna()]
    ot = overall[overall.selector == OT].reset_index(drop=True)
    several_ot = ot.selection.nunique() > 1
    labels = [
        _label(row.method, row.setting) + (f" [ot {row.selection}]" if several_ot else "")
        for row in ot.itertuples()
    ]
    own = overall[overall.selector != OT].set_index(["method", "setting"])
    fig, axes = plt.subplots(2, 2, figsize=(13, 0.35 * len(ot) + 7))
    y = np.arange(len(ot))
    for ax, source in zip(axes[0], ("safe", "gen")):
        column = f"{source}_share"
        ax.barh(
            y - 0.2,
            ot[f"{column}_mean"],
            xerr=ot[f"{column}_std"].fillna(0),
            height=0.4,
            label="OT selection",
            color="tab:red",
        )
        own_rows = own.reindex(list(zip(ot.method, ot.setting)))
        ax.barh(
            y + 0.2,
            own_rows[f"{column}_mean"].to_numpy(),
            xerr=own_rows[f"{column}_std"].fillna(0).to_numpy(),
            height=0.4,
            label="the method's own selection",
            color="tab:grey",
        )
        ax.scatter(
            ot.uniform_share_mean,
            y - 0.2,
            marker="|",
            s=150,
            color="black",
            zorder=3,
            label="uniform routing",
        )
        ax.set_yticks(y, labels if source == "safe" else [], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"share of {source} tokens' routing slots on the selected experts")
    axes[0][0].legend(fontsize=7, loc="lower right")
    entropy = axes[1][0]
    entropy.barh(y, ot.safe_entropy_mean, xerr=ot.safe_entropy_std.fillna(0), color="tab:green")
    entropy.axvline(ot.max_entropy_mean.max(), color="grey", ls="--", lw=1)
    entropy.set_yticks(y, labels, fontsize=7)
    entropy.invert_yaxis()
    entropy.set_xlabel("entropy of safety routing, layer mean (nats; dashed: uniform)")
    layers = spread[spread.layer.notna() & (spread.selector == OT)]
    per_layer = axes[1][1]
    for label, row in zip(labels, ot.itertuples()):
        rows = layers[
            (layers.method == row.method)
            & (layers.setting == row.setting)
            & (layers.selection == row.selection)
        ].sort_values("layer")
        per_layer.errorbar(
            rows.layer.astype(int),
            rows.safe_share_mean,
            yerr=rows.safe_share_std.fillna(0),
            marker="o",
            lw=1,
            capsize=2,
            label=label,
            ls="--" if row.method == "base" else "-",
        )
    per_layer.set_xticks(sorted(layers.layer.astype(int).unique()))
    per_layer.set_xlabel("MoE layer")
    per_layer.set_ylabel("safe share on the OT selection")
    per_layer.legend(fontsize=6)
    seeds = int(ot.seeds.max()) if len(ot) else 0
    fig.suptitle(f"routing shift on D_stat (mean ± std over up to {seeds} seed(s))")
    fig.tight_layout()
    _save(fig, path)


def attack_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The routing attack per method, setting, benchmark and m (from `asr_m<m>` metrics): mean
    and std over seeds of the ASR and of the degenerate share."""
    _require(summary, ["method", "run", "benchmark", "metric", "value", "degenerate"], "summary")
    m = summary.metric.str.extract(ATTACK_METRIC, expand=False)
    rows = summary[m.notna()].assign(m=m[m.notna()].astype(int))
    if rows.empty:
        raise ValueError(
            "summary: no routing-attack metric (asr_m<m>); add a benchmark with the routing "
            "attack to evaluation.benchmarks"
        )
    rows = rows.assign(setting=rows.run.map(setting_of), asr=rows.value)
    return seed_spread(
        rows, ["method", "setting", "benchmark", "m"], ["asr", "degenerate"]
    ).sort_values(["benchmark", "method", "setting", "m"], ignore_index=True)


def plot_asr_vs_m(attack: pd.DataFrame, path: str | os.PathLike) -> None:
    """Per benchmark with the routing attack: ASR (top) and degenerate share (bottom) against m,
    a line per method and setting, mean ± std over seeds."""
    benchmarks = sorted(attack.benchmark.unique())
    fig, axes = plt.subplots(
        2, len(benchmarks), figsize=(6 * len(benchmarks), 7), squeeze=False, sharex="col"
    )
    for column, benchmark in enumerate(benchmarks):
        rows = attack[attack.benchmark == benchmark]
        for (method, setting), line in rows.groupby(["method", "setting"], sort=False):
            style = {"ls": "--" if method == "base" else "-", "marker": "o", "capsize": 2}
            for ax, value in zip(axes[:, column], ("asr", "degenerate")):
                ax.errorbar(
                    line.m,
                    line[f"{value}_mean"],
                    yerr=line[f"{value}_std"].fillna(0),
                    label=_label(method, setting),
                    **style,
                )
        top, bottom = axes[:, column]
        top.set_title(benchmark)
        top.set_ylabel("ASR (well-formed compliance)")
        bottom.set_ylabel("degenerate share (noise, not compliance)")
        bottom.set_xlabel("m = experts masked per layer")
        bottom.set_xticks(sorted(rows.m.unique()))
        if rows.degenerate_mean.isna().all():
            bottom.text(
                0.5, 0.5, "no exact answer classifier", ha="center", transform=bottom.transAxes
            )
        for ax in (top, bottom):
            ax.set_ylim(-0.02, 1.02)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("routing attack: success and noise per m (mean ± std over seeds)")
    fig.tight_layout()
    _save(fig, path)


TRIAL_PARAMS = ("w", "eps", "gamma", "lr")


def trial_scores(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per tuning trial (method, run): its parameters (TRIAL_PARAMS, NaN where absent),
    setting, seed, and its validation `safety` and `utility` (`reporting.run_scores`)."""
    _require(trials, ["method", "run", "kind", "metric", "value"], "trials")
    scores = run_scores(trials).reset_index()
    params = scores.run.map(parse_run)
    for key in TRIAL_PARAMS:
        scores[key] = params.map(lambda p, key=key: p.get(key, np.nan)).astype(float)
    return scores.assign(setting=scores.run.map(setting_of), seed=scores.run.map(seed_of))


def plot_val_vs(scores: pd.DataFrame, param: str, path: str | os.PathLike) -> None:
    """Validation safety and utility against `param`, a line per method and value of the other
    parameters (mean ± std over seeds); Base's dashed where the trials hold it."""
    others = [key for key in TRIAL_PARAMS if key != param]
    swept = scores[scores[param].notna()]
    spread = seed_spread(swept, ["method", *others, param], ["safety", "utility"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, score in zip(axes, ("safety", "utility")):
        for keys, line in spread.groupby(["method", *others], dropna=False, sort=False):
            line = line.sort_values(param)
            fixed = ", ".join(
                f"{key}={value:g}" for key, value in zip(others, keys[1:]) if pd.notna(value)
            )
            ax.errorbar(
                line[param],
                line[f"{score}_mean"],
                yerr=line[f"{score}_std"].fillna(0),
                marker="o",
                capsize=2,
                label=f"{keys[0]} ({fixed})" if fixed else keys[0],
            )
        base = scores[scores.method == "base"][score].dropna()
        if len(base):
            ax.axhline(base.mean(), color="grey", ls="--", lw=1, label="base")
        ax.set_xlabel(param)
        ax.set_ylabel(f"validation {score}")
        if len(swept) and swept[param].min() > 0:  # the grids are spaced by factors
            ax.set_xscale("log")
        values = sorted(swept[param].unique())
        ax.set_xticks(values, [f"{value:g}" for value in values])
        ax.minorticks_off()
    axes[0].legend(fontsize=6)
    fig.suptitle(f"tuning trials on the validation files against {param} (mean ± std over seeds)")
    fig.tight_layout()
    _save(fig, path)


def write_diagnosis(
    evaluations: list[dict],
    summary_path: str,
    shift_path: str,
    shift_figure: str,
    attack_path: str | None,
    attack_figure: str | None,
    trials_path: str | None = None,
    trial_figures: dict[str, str] | None = None,
) -> pd.DataFrame:
    """The `diagnosis` stage. evaluations: per evaluated model {method, run, activations,
    sparsity, selections: [{selector, run, path}]}. attack_path and attack_figure (None when no
    benchmark runs the routing attack). trial_figures {param: path}, one per searched parameter,
    with trials_path (the tuning trials) when tuning ran."""
    shift = pd.concat(
        [
            routing_shift(
                evaluation["method"],
                evaluation["run"],
                pd.read_parquet(evaluation["activations"]),
                pd.read_parquet(evaluation["sparsity"]),
                {
                    (selection["selector"], selection["run"]): pd.read_parquet(selection["path"])
                    for selection in evaluation["selections"]
                },
            )
            for evaluation in evaluations
        ],
        ignore_index=True,
    )
    write_parquet(shift, shift_path)
    plot_routing_shift(shift, shift_figure)
    if attack_path is not None:
        attack = attack_table(pd.read_parquet(summary_path))
        write_parquet(attack, attack_path)
        plot_asr_vs_m(attack, attack_figure)
    if trials_path is not None:
        scores = trial_scores(pd.read_parquet(trials_path))
        for param, figure in (trial_figures or {}).items():
            plot_val_vs(scores, param, figure)
    return shift
