import numpy as np
import pandas as pd
import pytest
from synthetic import HEADS, NEIGHBOURS, model_tables

from mesa_moe.selection import (
    EXPERT_COLUMNS,
    SELECTORS,
    coactivation_arrays,
    read_plan,
    run_selection,
    select_experts,
)


def chosen(table, layer=0):
    return set(table[(table.layer == layer) & table.selected].expert)


@pytest.fixture(scope="module")
def tables():
    return model_tables((0, 1, 2))


def test_small_epsilon_follows_the_cost_order(tables):
    greedy, _ = select_experts(*tables, "cost_min", w=4)
    ot, _ = select_experts(*tables, "ot", w=4, epsilon=1e-3, tau=0.0)
    assert chosen(ot) == chosen(greedy) == {4, 5, 6, 7}  # the shoulder around f* = 32.7


def test_large_epsilon_follows_the_safety_heads_neighbours(tables):
    for tau in (0.0, 0.1):
        ot, _ = select_experts(*tables, "ot", w=4, epsilon=10.0, tau=tau)
        assert chosen(ot) == set(HEADS) | set(NEIGHBOURS)


def test_intermediate_epsilon_mixes_both(tables):
    ot, _ = select_experts(*tables, "ot", w=4, epsilon=0.05, tau=0.1)
    picked = chosen(ot)
    assert picked & {4, 5, 6, 7} and picked & (set(HEADS) | set(NEIGHBOURS))


def test_plan_and_scores(tables):
    experts, plan = select_experts(*tables, "ot", w=4, epsilon=0.05, tau=0.1)
    assert list(experts.columns) == EXPERT_COLUMNS
    assert plan.shape == (3, 16, 16)
    for layer, pi in enumerate(plan):
        r = experts[experts.layer == layer].sort_values("expert").p_safe.to_numpy()
        np.testing.assert_allclose(pi.sum(axis=1), r / r.sum(), atol=1e-8)
        score = experts[experts.layer == layer].sort_values("expert").score.to_numpy()
        np.testing.assert_allclose(score, pi.sum(axis=0))
    assert experts.cost.between(0, 1, inclusive="right").all()
    assert experts.groupby("layer").cost.max().eq(1.0).all()


def test_batched_selection_matches_one_layer_at_a_time(tables):
    """Layers solved together give each layer the plan it gets alone."""
    activations, coactivation = tables
    _, together = select_experts(activations, coactivation, "ot", w=4, epsilon=0.05, tau=0.1)
    for layer in (0, 2):
        _, alone = select_experts(
            activations[activations.layer == layer],
            coactivation[coactivation.layer == layer],
            "ot",
            w=4,
            epsilon=0.05,
            tau=0.1,
        )
        np.testing.assert_allclose(together[layer], alone[0], rtol=1e-12, atol=1e-15)


def test_coactivation_in_any_row_order(tables):
    _, coactivation = tables
    layers = np.array([0, 1, 2])
    ordered = coactivation_arrays(coactivation, layers, 16)
    shuffled = coactivation.sample(frac=1.0, random_state=0)
    np.testing.assert_array_equal(coactivation_arrays(shuffled, layers, 16), ordered)
    assert ordered[1, 0, 10] == 50
    with pytest.raises(ValueError, match="exactly once"):
        coactivation_arrays(pd.concat([shuffled, shuffled.head(1)]), layers, 16)


def test_plan_file(tables, tmp_path):
    experts = run_selection_from(tables, tmp_path)
    layers, pi = read_plan(tmp_path / "plan.npz")
    assert list(layers) == [0, 1, 2] and pi.shape == (3, 16, 16) and pi.dtype == np.float32
    r = experts.sort_values(["layer", "expert"]).p_safe.to_numpy().reshape(3, 16)
    np.testing.assert_allclose(pi.sum(axis=2), r, atol=1e-6)


def run_selection_from(tables, out):
    activations, coactivation = tables
    activations.to_parquet(out / "activations.parquet")
    coactivation.to_parquet(out / "coactivation.parquet")
    return run_selection(
        out / "activations.parquet",
        out / "coactivation.parquet",
        "ot",
        {"w": 4, "epsilon": 0.05, "tau": 0.1},
        out / "experts.parquet",
        out / "selection.png",
        out / "cost_curve.png",
        out / "provenance.json",
        out / "plan.npz",
    )


def test_per_layer_scope_picks_w_in_every_layer(tables):
    for selector in ("ot", "cost_min", "cost_mid", "safe_top", "random"):
        experts, _ = select_experts(*tables, selector, w=3, epsilon=0.05)
        assert experts.groupby("layer").selected.sum().eq(3).all(), selector


def test_global_scope_picks_w_times_layers_over_the_model():
    activations, coactivation = model_tables((0, 1))
    # make layer 1's safety diffuse, so globally the heads of layer 0 win
    safe = (activations.layer == 1) & (activations.source == "safe")
    activations.loc[safe, "freq"] = 1 / 16
    experts, _ = select_experts(
        activations, coactivation, "ot", w=2, epsilon=10.0, tau=0.0, scope="global"
    )
    per_layer = experts.groupby("layer").selected.sum()
    assert per_layer.sum() == 4
    assert per_layer[0] > per_layer[1]


def test_baseline_selectors(tables):
    safe_top, _ = select_experts(*tables, "safe_top", w=2)
    assert chosen(safe_top) == set(HEADS)
    assert safe_top.score.isna().all()
    mid, _ = select_experts(*tables, "cost_mid", w=2)
    layer = mid[mid.layer == 0]
    median = layer.cost.median()
    picked = layer[layer.selected].cost
    assert (picked - median).abs().max() <= (layer[~layer.selected].cost - median).abs().min()
    everything, _ = select_experts(*tables, "all")
    assert everything.selected.all()
    esft, _ = select_experts(*tables, "esft", esft_top_p=0.5)
    assert chosen(esft) == {0, 1}  # 0.45 + 0.45 ≥ 0.5 of the safety routing, 0.45 alone is not
    a, _ = select_experts(*tables, "random", w=4, seed=1)
    b, _ = select_experts(*tables, "random", w=4, seed=1)
    c, _ = select_experts(*tables, "random", w=4, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not a.selected.equals(c.selected)


def test_every_selector_has_the_same_columns(tables):
    for selector in SELECTORS:
        experts, _ = select_experts(*tables, selector, w=2, epsilon=0.05)
        assert list(experts.columns) == EXPERT_COLUMNS
        assert len(experts) == 3 * 16


def test_selection_errors(tables):
    with pytest.raises(ValueError, match="selection.w"):
        select_experts(*tables, "ot", w=17, epsilon=0.1)
    with pytest.raises(ValueError, match="selector"):
        select_experts(*tables, "nope", w=2)
    with pytest.raises(ValueError, match="scope"):
        select_experts(*tables, "cost_min", w=2, scope="everywhere")
    with pytest.raises(ValueError, match="co-activation table does not hold"):
        select_experts(tables[0], tables[1][tables[1].layer != 2], "ot", w=2, epsilon=0.1)
