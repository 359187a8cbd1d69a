"""Expert selection (METHOD §3): the OT selector and the ablation selectors, on one table.

Input: the profile's activation table (METHOD §1) and co-activation table. Output: one row per
(layer, expert) with EXPERT_COLUMNS; `score` is the duty an expert receives in the OT plan (NaN
for selectors that do not score). `scope: per_layer` picks w experts in every layer, `global`
picks w·L over the whole model.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .artifacts import write_parquet, write_provenance
from .cost import normalised_cost
from .reporting import plot_cost_curve, plot_selection
from .transport import reference_from_coactivation, transport_plan

log = logging.getLogger(__name__)
EXPERT_COLUMNS = ["layer", "expert", "f_mix", "cost", "p_safe", "score", "selected"]
PLAN_COLUMNS = ["layer", "i", "j", "pi"]
SELECTORS = ("ot", "cost_min", "cost_mid", "safe_top", "esft", "all", "random")
SCOPES = ("per_layer", "global")


def expert_table(activations: pd.DataFrame, alpha_shift: float) -> pd.DataFrame:
    """Per (layer, expert): f_mix (R_mix rank percentile), cost Ĉ (per layer), p_safe (r)."""
    required = {"layer", "expert", "source", "freq", "f"}
    missing = required - set(activations.columns)
    if missing:
        raise ValueError(f"activation table lacks columns {sorted(missing)}")
    mix = activations[activations.source == "mix"].set_index(["layer", "expert"]).sort_index()
    safe = activations[activations.source == "safe"].set_index(["layer", "expert"]).sort_index()
    if mix.empty or safe.empty or not mix.index.equals(safe.index):
        raise ValueError("activation table needs matching 'mix' and 'safe' rows for every expert")
    table = pd.DataFrame({"f_mix": mix.f, "p_safe": safe.freq}).reset_index()
    table["cost"] = table.groupby("layer").f_mix.transform(
        lambda f: normalised_cost(f.to_numpy(), alpha_shift))
    table["score"] = np.nan
    table["selected"] = False
    return table


def coactivation_matrix(coactivation: pd.DataFrame, layer: int, num_experts: int) -> np.ndarray:
    rows = coactivation[coactivation.layer == layer]
    if len(rows) != num_experts * num_experts:
        raise ValueError(f"co-activation table has {len(rows)} entries for layer {layer}, "
                         f"expected {num_experts}²")
    matrix = np.zeros((num_experts, num_experts))
    matrix[rows.i.to_numpy(), rows.j.to_numpy()] = rows["count"].to_numpy()
    return matrix


def ot_scores(table: pd.DataFrame, coactivation: pd.DataFrame, epsilon: float, tau: float,
              max_iter: int, tol: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """score(j) = Σ_i π*[i, j] per layer, and the plans in long form."""
    table = table.copy()
    plans = []
    for layer, rows in table.groupby("layer", sort=True):
        rows = rows.sort_values("expert")
        n = len(rows)
        r = rows.p_safe.to_numpy()
        r = r / r.sum()  # freq sums to 1 by construction; renormalise away float drift
        cost = np.tile(rows.cost.to_numpy(), (n, 1))  # M[i, j] = Ĉ(f_mix(j)) [E, E]
        reference = reference_from_coactivation(coactivation_matrix(coactivation, layer, n))
        plan = transport_plan(r, cost, reference, epsilon, tau, max_iter, tol)
        table.loc[rows.index, "score"] = plan.sum(axis=0)
        i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        plans.append(pd.DataFrame({"layer": layer, "i": i.ravel(), "j": j.ravel(), "pi": plan.ravel()}))
    return table, pd.concat(plans, ignore_index=True)[PLAN_COLUMNS]


def pick_top(table: pd.DataFrame, key: pd.Series, w: int, scope: str) -> pd.Series:
    """Boolean mask: the w largest `key` per layer, or the w·L largest over the model."""
    ranked = table.assign(_key=key.to_numpy(), _tie=table.expert)
    ranked = ranked.sort_values(["_key", "_tie"], ascending=[False, True])
    if scope == "per_layer":
        chosen = ranked.groupby("layer").head(w).index
    else:
        chosen = ranked.head(w * table.layer.nunique()).index
    return table.index.isin(chosen)


def select_experts(activations: pd.DataFrame, coactivation: pd.DataFrame, selector: str,
                   w: int | None = None, epsilon: float | None = None, tau: float = 0.1,
                   alpha_shift: float = 1.0, scope: str = "per_layer", seed: int = 0,
                   esft_top_p: float = 0.2, max_iter: int = 10_000,
                   tol: float = 1e-9) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The expert table (EXPERT_COLUMNS) with `selected` set, and the OT plan (ot only)."""
    if selector not in SELECTORS:
        raise ValueError(f"unknown selector {selector!r}; one of {SELECTORS}")
    if scope not in SCOPES:
        raise ValueError(f"selection.scope must be one of {SCOPES}, got {scope!r}")
    table = expert_table(activations, alpha_shift)
    num_experts = table.groupby("layer").size().min()
    if selector not in ("all", "esft") and not (w and 1 <= w <= num_experts):
        raise ValueError(f"selection.w={w} must be between 1 and the number of experts ({num_experts})")
    plan = None
    if selector == "ot":
        table, plan = ot_scores(table, coactivation, epsilon, tau, max_iter, tol)
        table["selected"] = pick_top(table, table.score, w, scope)
    elif selector == "cost_min":
        table["selected"] = pick_top(table, -table.cost, w, scope)
    elif selector == "cost_mid":
        median = table.groupby("layer").cost.transform("median") if scope == "per_layer" \
            else table.cost.median()
        table["selected"] = pick_top(table, -(table.cost - median).abs(), w, scope)
    elif selector == "safe_top":
        table["selected"] = pick_top(table, table.p_safe, w, scope)
    elif selector == "random":
        noise = pd.Series(np.random.default_rng(seed).random(len(table)), index=table.index)
        table["selected"] = pick_top(table, noise, w, scope)
    elif selector == "esft":
        table["selected"] = esft_mask(table, esft_top_p)
    else:  # all
        table["selected"] = True
    counts = table.groupby("layer").selected.sum()
    log.info("%s: %d experts selected (per layer: %s)", selector, int(counts.sum()), counts.to_dict())
    return table[EXPERT_COLUMNS], plan


def esft_mask(table: pd.DataFrame, top_p: float) -> np.ndarray:
    """ESFT (Wang et al., 2024): per layer, the fewest experts whose token-selection ratio on the
    task data (here D_safe's p_safe) adds up to at least top_p."""
    if not 0 < top_p <= 1:
        raise ValueError(f"selection.esft_top_p must be in (0, 1], got {top_p}")
    mask = np.zeros(len(table), dtype=bool)
    for _, rows in table.groupby("layer"):
        ordered = rows.sort_values(["p_safe", "expert"], ascending=[False, True])
        share = ordered.p_safe.cumsum() / ordered.p_safe.sum()
        keep = int(np.searchsorted(share.to_numpy(), top_p - 1e-12) + 1)
        mask[table.index.get_indexer(ordered.index[:keep])] = True
    return mask


def run_selection(activations_path: str, coactivation_path: str, selector: str, params: dict,
                  experts_path: str, figure_path: str, cost_curve_path: str, provenance_path: str,
                  plan_path: str | None = None) -> pd.DataFrame:
    """The `select` stage for one selector and setting: the expert table, the OT plan (`ot` only:
    plan_path is required then), both figures and provenance. `params` holds select_experts'
    keyword arguments."""
    if (selector == "ot") != (plan_path is not None):
        raise ValueError("run_selection: plan_path is required for the ot selector, and only there")
    activations = pd.read_parquet(activations_path)
    coactivation = pd.read_parquet(coactivation_path)
    experts, plan = select_experts(activations, coactivation, selector, **params)
    shown = {"ot": ("w", "epsilon", "tau", "scope"), "esft": ("esft_top_p",), "all": ()}.get(
        selector, ("w", "scope"))
    title = " ".join([selector] + [f"{k}={params[k]}" for k in shown if k in params])
    plot_selection(activations, experts, title, figure_path)
    plot_cost_curve(experts, params.get("alpha_shift", 1.0), title, cost_curve_path)
    if plan is not None:
        write_parquet(plan, plan_path)
    write_provenance(provenance_path, "select", {"selector": selector, **params}, params.get("seed"))
    write_parquet(experts, experts_path)  # last: its presence means the run is complete
    return experts
