"""Expert selection (docs/method.md §3): the OT selector and the ablation selectors, on one table.

Input: the profile's activation table (docs/method.md §1) and co-activation table. Output: one
row per (layer, expert) with EXPERT_COLUMNS; `score` is the duty an expert receives in the OT
plan (NaN for selectors that do not score). `scope: per_layer` picks w experts in every layer,
`global` picks w·L over the whole model.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .artifacts import atomic_path, write_parquet, write_provenance
from .cost import beta_rational_cost
from .reporting import plot_cost_curve, plot_selection
from .transport import reference_from_coactivation, transport_plans

log = logging.getLogger(__name__)
EXPERT_COLUMNS = ["layer", "expert", "f_mix", "cost", "p_safe", "score", "selected"]
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
    cost = beta_rational_cost(table.f_mix.to_numpy(), alpha_shift)
    table["cost"] = cost / pd.Series(cost).groupby(table.layer.to_numpy()).transform("max")
    table["score"] = np.nan
    table["selected"] = False
    return table


def coactivation_arrays(
    coactivation: pd.DataFrame, layers: np.ndarray, num_experts: int
) -> np.ndarray:
    """The co-activation table as counts [L, E, E], layers in the order of `layers`; every
    (layer, i, j) must appear exactly once."""
    missing = {"layer", "i", "j", "count"} - set(coactivation.columns)
    if missing:
        raise ValueError(f"co-activation table lacks columns {sorted(missing)}")
    shape = (len(layers), num_experts, num_experts)
    size = int(np.prod(shape))
    layer, i, j = (coactivation[column].to_numpy() for column in ("layer", "i", "j"))
    expert_ids = np.arange(num_experts)
    if (
        len(coactivation) == size
        and (layer.reshape(len(layers), -1) == layers[:, None]).all()
        and (i.reshape(shape) == expert_ids[None, :, None]).all()
        and (j.reshape(shape) == expert_ids[None, None, :]).all()
    ):
        # the order the profile stage writes: (layer, i, j) ascending
        return coactivation["count"].to_numpy().reshape(shape)
    position = np.searchsorted(layers, layer)
    known = (position < len(layers)) & (layers[np.minimum(position, len(layers) - 1)] == layer)
    in_range = known & (i >= 0) & (i < num_experts) & (j >= 0) & (j < num_experts)
    key = ((position * num_experts + i) * num_experts + j)[in_range]
    seen = np.zeros(size, dtype=bool)
    seen[key] = True
    if not in_range.all() or len(key) != size or not seen.all():
        per_layer = np.bincount(position[in_range], minlength=len(layers))
        short = [int(layer) for layer, n in zip(layers, per_layer) if n != num_experts**2]
        raise ValueError(
            f"co-activation table does not hold each (i, j) of {num_experts}² "
            f"exactly once for layers {short or list(layers)} (and no other layers)"
        )
    counts = np.zeros(size, dtype=coactivation["count"].dtype)
    counts[key] = coactivation["count"].to_numpy()[in_range]
    return counts.reshape(shape)


def ot_scores(
    table: pd.DataFrame,
    coactivation: pd.DataFrame,
    epsilon: float,
    tau: float,
    max_iter: int,
    tol: float,
) -> tuple[pd.DataFrame, np.ndarray]:
    """score(j) = Σ_i π*[i, j] per layer, and the plans [L, E, E] (layers in ascending order).

    All layers are solved together; every layer must have the same number of experts."""
    table = table.sort_values(["layer", "expert"], ignore_index=True)
    layers = np.unique(table.layer.to_numpy())
    num_experts = len(table) // len(layers)
    if len(table) != len(layers) * num_experts or not np.array_equal(
        table.expert.to_numpy(), np.tile(np.arange(num_experts), len(layers))
    ):
        raise ValueError("every MoE layer needs experts 0..E-1 with the same E for OT selection")
    r = table.p_safe.to_numpy().reshape(len(layers), num_experts)
    r = r / r.sum(axis=1, keepdims=True)  # freq sums to 1 by construction; renormalise float drift
    cost = table.cost.to_numpy().reshape(len(layers), num_experts)  # M[i, j] = Ĉ(f_mix(j))
    reference = reference_from_coactivation(coactivation_arrays(coactivation, layers, num_experts))
    plan = transport_plans(
        r, cost, reference, epsilon, tau, max_iter, tol, overwrite_reference=True
    )
    table["score"] = plan.sum(axis=1).ravel()
    return table, plan


def pick_top(table: pd.DataFrame, key: pd.Series, w: int, scope: str) -> np.ndarray:
    """Boolean mask (an array aligned with `table`): the w largest `key` per layer, or the w·L
    largest over the model."""
    ranked = table.assign(_key=key.to_numpy(), _tie=table.expert)
    ranked = ranked.sort_values(["_key", "_tie"], ascending=[False, True])
    if scope == "per_layer":
        chosen = ranked.groupby("layer").head(w).index
    else:
        chosen = ranked.head(w * table.layer.nunique()).index
    return table.index.isin(chosen)


def select_experts(
    activations: pd.DataFrame,
    coactivation: pd.DataFrame,
    selector: str,
    w: int | None = None,
    epsilon: float | None = None,
    tau: float = 0.1,
    alpha_shift: float = 1.0,
    scope: str = "per_layer",
    seed: int = 0,
    esft_top_p: float = 0.2,
    max_iter: int = 10_000,
    tol: float = 1e-9,
) -> tuple[pd.DataFrame, np.ndarray | None]:
    """The expert table (EXPERT_COLUMNS) with `selected` set, and the OT plans [L, E, E] (ot
    only; None otherwise)."""
    if selector not in SELECTORS:
        raise ValueError(f"unknown selector {selector!r}; one of {SELECTORS}")
    if scope not in SCOPES:
        raise ValueError(f"selection.scope must be one of {SCOPES}, got {scope!r}")
    table = expert_table(activations, alpha_shift)
    num_experts = table.groupby("layer").size().min()
    if selector not in ("all", "esft") and not (w and 1 <= w <= num_experts):
        raise ValueError(
            f"selection.w={w} must be between 1 and the number of experts ({num_experts})"
        )
    plan = None
    if selector == "ot":
        table, plan = ot_scores(table, coactivation, epsilon, tau, max_iter, tol)
        table["selected"] = pick_top(table, table.score, w, scope)
    elif selector == "cost_min":
        table["selected"] = pick_top(table, -table.cost, w, scope)
    elif selector == "cost_mid":
        median = (
            table.groupby("layer").cost.transform("median")
            if scope == "per_layer"
            else table.cost.median()
        )
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
    log.info(
        "%s: %d experts selected (per layer: %s)", selector, int(counts.sum()), counts.to_dict()
    )
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


def write_plan(layers: np.ndarray, plan: np.ndarray, path: str | Path) -> None:
    """plan.npz: `layer` [L] (model layer indices) and `pi` [L, E, E] (float32, π*[l, i, j]).

    L·E² numbers are the plan's size (DeepSeek-V3, 58 × 256: 15 MB); a long-form table would
    triple it and take longer to write than the solve."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, layer=np.asarray(layers, dtype=np.int64), pi=plan.astype(np.float32))


def read_plan(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(layer [L], pi [L, E, E]) as written by write_plan."""
    with np.load(path) as data:
        return data["layer"], data["pi"]


def run_selection(
    activations_path: str,
    coactivation_path: str,
    selector: str,
    params: dict,
    experts_path: str,
    figure_path: str,
    cost_curve_path: str,
    provenance_path: str,
    plan_path: str | None = None,
) -> pd.DataFrame:
    """The `select` stage for one selector and setting: the expert table, the OT plan (`ot` only:
    plan_path is required then), both figures and provenance. `params` holds select_experts'
    keyword arguments."""
    if (selector == "ot") != (plan_path is not None):
        raise ValueError("run_selection: plan_path is required for the ot selector, and only there")
    activations = pd.read_parquet(activations_path)
    coactivation = pd.read_parquet(coactivation_path)
    experts, plan = select_experts(activations, coactivation, selector, **params)
    shown = {"ot": ("w", "epsilon", "tau", "scope"), "esft": ("esft_top_p",), "all": ()}.get(
        selector, ("w", "scope")
    )
    title = " ".join([selector] + [f"{k}={params[k]}" for k in shown if k in params])
    plot_selection(activations, experts, title, figure_path)
    plot_cost_curve(experts, params.get("alpha_shift", 1.0), title, cost_curve_path)
    if plan is not None:
        write_plan(np.unique(experts.layer.to_numpy()), plan, plan_path)
    write_provenance(
        provenance_path, "select", {"selector": selector, **params}, params.get("seed")
    )
    write_parquet(experts, experts_path)  # last: its presence means the run is complete
    return experts
