"""Boundaries, defaults, dtypes and error messages of the functions that decide the numbers:
what mutation testing (`make mutants`, docs/mutants.md) found no test pinning down."""

import logging
import types
import typing

import numpy as np
import pandas as pd
import pytest
import torch
from synthetic import model_tables

from mesa_moe import transport
from mesa_moe.cost import beta_rational_cost, normalised_cost
from mesa_moe.data import IGNORE_INDEX, collate
from mesa_moe.evaluation.judges import ClassifierJudge, is_refusal
from mesa_moe.evaluation.scoring import (
    exact_match_number,
    extract_code,
    extract_math_answer,
    last_boxed,
    math_equal,
    normalize_math_answer,
)
from mesa_moe.losses import kl_divergence, online_costs, safety_target, sft_loss
from mesa_moe.reporting import pareto_front, summary_markdown
from mesa_moe.selection import esft_mask, pick_top, select_experts
from mesa_moe.transport import TransportError, reference_from_coactivation, transport_plan

# --- cost -------------------------------------------------------------------------------------


def test_cost_defaults_dtype_and_messages():
    f = np.array([0.0, 30.0, 90.0])
    np.testing.assert_array_equal(beta_rational_cost(f), beta_rational_cost(f, 1.0))
    np.testing.assert_array_equal(normalised_cost(f), normalised_cost(f, 1.0))
    assert beta_rational_cost(np.array([30.0], dtype=np.float32)).dtype == np.float64
    with pytest.raises(ValueError, match=r"^rank percentiles f must lie in \[0, 100\)$"):
        beta_rational_cost([100.0])
    with pytest.raises(ValueError, match=r"^selection.alpha_shift must be > 0, got 0.0$"):
        beta_rational_cost([1.0], 0.0)


# --- transport --------------------------------------------------------------------------------


def small_layer(n=4):
    rng = np.random.default_rng(7)
    r = rng.dirichlet(np.ones(n))
    cost = np.tile(normalised_cost(100.0 * np.arange(n) / n), (n, 1))
    counts = rng.integers(1, 20, (n, n)).astype(float)
    return r, cost, reference_from_coactivation(counts + counts.T)


def test_transport_defaults_and_float64():
    r, cost, reference = small_layer()
    np.testing.assert_array_equal(
        transport_plan(r, cost, reference, 0.2), transport_plan(r, cost, reference, 0.2, tau=0.1)
    )
    for index in range(3):
        args = [r, cost, reference]
        args[index] = args[index].astype(np.float32)
        if index == 0:
            args[0] = args[0] / args[0].sum()
        assert transport_plan(*args, 0.2, tau=0.0).dtype == np.float64


def test_transport_input_errors_are_named():
    r, cost, reference = small_layer()
    with pytest.raises(
        ValueError,
        match=r"^shapes disagree: r \(1, 4\), column costs \(1, 3\), P_emp "
        r"\(1, 4, 4\); expected \[L, E\], \[L, E\], \[L, E, E\]$",
    ):
        transport_plan(r, cost[:3, :3], reference, 0.2)
    with pytest.raises(ValueError, match=r"shapes disagree.*P_emp \(1, 3, 3\); expected"):
        transport_plan(r, cost, reference[:3, :3], 0.2)
    for epsilon, tau in ((0.0, 0.1), (-1.0, 0.0), (0.2, -0.1)):
        with pytest.raises(ValueError, match=rf"^need ε > 0 and τ ≥ 0, got ε={epsilon}, τ={tau}$"):
            transport_plan(r, cost, reference, epsilon, tau)
    with pytest.raises(
        ValueError, match=r"^source marginal r must be a distribution per layer \(sums"
    ):
        transport_plan(np.array([0.6, 0.6, -0.2, 0.0]), cost, reference, 0.2)
    zero_entry = np.array([0.5, 0.5, 0.0, 0.0])  # an expert without safety duty is fine
    np.testing.assert_allclose(transport_plan(zero_entry, cost, reference, 0.2).sum(1), zero_entry)


@pytest.mark.parametrize(
    "broken, message",
    [
        (lambda plan: np.where(np.eye(len(plan), dtype=bool), np.nan, plan), "not finite"),
        (lambda plan: plan - np.eye(len(plan)) * 2 * plan.max(), "not finite and non-negative"),
        (lambda plan: plan * 1.001, "off the source marginal r by"),
    ],
)
def test_a_broken_plan_is_an_error(monkeypatch, broken, message):
    r, cost, reference = small_layer()
    scaled = transport._scaled_plan
    monkeypatch.setattr(transport, "_scaled_plan", lambda *a: broken(scaled(*a)[0])[None])
    with pytest.raises(TransportError, match=message):
        transport_plan(r, cost, reference, 0.2, tau=0.0)


def test_sinkhorn_errors_name_the_fix():
    r, cost, reference = small_layer()
    with pytest.raises(
        TransportError,
        match=r"did not converge in 2 iterations at ε=0.2, τ=1.0 "
        r"\(error .* > 1e-09\); raise selection.max_iter",
    ):
        transport_plan(r, cost, reference, 0.2, 1.0, max_iter=2)


def test_reference_sums_to_one_exactly_and_empty_counts_are_refused():
    counts = np.zeros((16, 16))
    counts[0, 1] = counts[1, 0] = 3.0
    reference = reference_from_coactivation(counts)
    assert abs(reference.sum() - 1.0) < 1e-14
    for bad in (np.zeros((3, 3)), np.full((3, 3), np.nan), -np.ones((3, 3)), np.full((2, 2), 0.2)):
        if bad.sum() > 0:  # counts below one token in total are still counts
            assert reference_from_coactivation(bad).sum() == pytest.approx(1.0)
            continue
        with pytest.raises(
            TransportError, match=r"^co-activation matrix is empty: no tokens were profiled$"
        ):
            reference_from_coactivation(bad)


# --- selection --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uneven_tables():
    """Two layers whose costs and safety differ: layer 1's R_mix ranks are reversed and its
    safety is on experts 14 and 15, so a model-wide choice differs from a per-layer one."""
    activations, coactivation = model_tables((0, 1))
    layer1 = activations.layer == 1
    for source in ("mix", "gen"):
        rows = layer1 & (activations.source == source)
        activations.loc[rows, "f"] = activations.loc[rows, "f"].to_numpy()[::-1]
    safe = layer1 & (activations.source == "safe")
    activations.loc[safe, "freq"] = activations.loc[safe, "freq"].to_numpy()[::-1] * 0.5 + 1 / 32
    return activations, coactivation


def chosen(experts, layer):
    return sorted(experts[(experts.layer == layer) & experts.selected].expert)


@pytest.mark.parametrize("selector", ["ot", "cost_min", "safe_top", "random"])
def test_per_layer_scope_is_per_layer_for_every_selector(uneven_tables, selector):
    experts, _ = select_experts(*uneven_tables, selector, w=3, epsilon=0.05)
    assert experts.groupby("layer").selected.sum().tolist() == [3, 3]
    assert experts.selected.dtype == bool
    by_layer = {layer: chosen(experts, layer) for layer in (0, 1)}
    if selector in ("cost_min", "safe_top"):
        assert by_layer[0] != by_layer[1]


def fits(value, hint) -> bool:
    """Whether a value is of a type hint made of classes, tuples and unions."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        return isinstance(value, tuple) and len(value) == len(args) and all(map(fits, value, args))
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, arg) for arg in args)
    return isinstance(value, hint)


@pytest.mark.parametrize("selector", ["ot", "cost_min"])
def test_selection_returns_what_it_declares(uneven_tables, selector):
    result = select_experts(*uneven_tables, selector, w=3, epsilon=0.05)
    assert fits(result, typing.get_type_hints(select_experts)["return"])
    experts = result[0]
    mask = pick_top(experts, experts.p_safe, 3, "per_layer")
    assert fits(mask, typing.get_type_hints(pick_top)["return"])


def test_selectors_by_hand_on_uneven_layers(uneven_tables):
    cost_min, plan = select_experts(*uneven_tables, "cost_min", w=2)
    assert plan is None
    # f* ≈ 32.7: the ranks 5 and 6 of 16 (f = 31.25, 37.5); layer 1 reverses the ranks
    assert chosen(cost_min, 0) == [5, 6] and chosen(cost_min, 1) == [9, 10]
    safe_top, _ = select_experts(*uneven_tables, "safe_top", w=2)
    assert chosen(safe_top, 0) == [0, 1] and chosen(safe_top, 1) == [14, 15]
    everything, _ = select_experts(*uneven_tables, "all")
    assert everything.selected.dtype == bool and everything.selected.all()


def test_ties_go_to_the_lower_expert_id(uneven_tables):
    activations, coactivation = uneven_tables
    flat = activations.copy()
    flat.loc[flat.source == "safe", "freq"] = 1 / 16
    experts, _ = select_experts(flat, coactivation, "safe_top", w=3)
    assert chosen(experts, 0) == chosen(experts, 1) == [0, 1, 2]


def test_selection_defaults_equal_their_documented_values(uneven_tables):
    default, _ = select_experts(*uneven_tables, "ot", w=3, epsilon=0.05)
    explicit, _ = select_experts(
        *uneven_tables, "ot", w=3, epsilon=0.05, tau=0.1, alpha_shift=1.0, scope="per_layer"
    )
    pd.testing.assert_frame_equal(default, explicit)
    random_default, _ = select_experts(*uneven_tables, "random", w=3)
    random_seed0, _ = select_experts(*uneven_tables, "random", w=3, seed=0)
    pd.testing.assert_frame_equal(random_default, random_seed0)


def test_cost_column_uses_the_given_alpha_shift(uneven_tables):
    experts, _ = select_experts(*uneven_tables, "cost_min", w=2, alpha_shift=20.0)
    layer0 = experts[experts.layer == 0].sort_values("expert")
    np.testing.assert_allclose(layer0.cost, normalised_cost(layer0.f_mix.to_numpy(), 20.0))


def test_ot_normalises_the_safe_frequencies_and_passes_its_tolerance(uneven_tables):
    activations, coactivation = uneven_tables
    doubled = activations.copy()
    doubled.loc[doubled.source == "safe", "freq"] *= 2
    base, plan = select_experts(activations, coactivation, "ot", w=3, epsilon=0.1)
    scaled, _ = select_experts(doubled, coactivation, "ot", w=3, epsilon=0.1)
    np.testing.assert_allclose(base.score, scaled.score, atol=1e-9)
    assert plan.shape == (2, 16, 16)
    with pytest.raises(TransportError, match="did not converge"):
        select_experts(activations, coactivation, "ot", w=3, epsilon=0.1, max_iter=2, tol=0.0)


@pytest.mark.parametrize("w", [1, 16])
def test_w_may_be_one_or_every_expert(uneven_tables, w):
    experts, _ = select_experts(*uneven_tables, "cost_min", w=w)
    assert experts.groupby("layer").selected.sum().tolist() == [w, w]


@pytest.mark.parametrize("w", [0, 17, None])
def test_w_out_of_range_is_refused(uneven_tables, w):
    with pytest.raises(
        ValueError,
        match=rf"selection.w={w} must be between 1 and the number of "
        r"experts \(16\)",
    ):
        select_experts(*uneven_tables, "cost_min", w=w)


def test_selection_logs_what_it_chose(uneven_tables, caplog):
    with caplog.at_level(logging.INFO, logger="mesa_moe.selection"):
        select_experts(*uneven_tables, "cost_min", w=2)
    assert caplog.messages == ["cost_min: 4 experts selected (per layer: {0: 2, 1: 2})"]


def test_activation_table_errors_are_named(uneven_tables):
    activations, coactivation = uneven_tables
    with pytest.raises(ValueError, match=r"^activation table lacks columns \['f', 'freq'\]$"):
        select_experts(activations.drop(columns=["f", "freq"]), coactivation, "all")
    mismatched = activations[~((activations.source == "safe") & (activations.expert == 3))]
    with pytest.raises(
        ValueError,
        match=r"^activation table needs matching 'mix' and 'safe' rows "
        r"for every expert$",
    ):
        select_experts(mismatched, coactivation, "all")


def esft_table(p_safe):
    return pd.DataFrame({"layer": 0, "expert": range(len(p_safe)), "p_safe": p_safe})


def test_esft_keeps_the_fewest_experts_reaching_top_p():
    # cumulative shares 0.5, 0.75, 1.0: top_p = 0.75 is reached by two experts exactly
    mask = esft_mask(esft_table([0.25, 0.5, 0.25]), 0.75)
    assert mask.dtype == bool and mask.tolist() == [True, True, False]  # tie: lower id
    assert esft_mask(esft_table([2.0, 1.0, 1.0]), 0.5).tolist() == [True, False, False]
    assert esft_mask(esft_table([0.25, 0.5, 0.25]), 1.0).all()
    for top_p in (0.0, 1.5):
        with pytest.raises(
            ValueError, match=rf"^selection.esft_top_p must be in \(0, 1\], got {top_p}$"
        ):
            esft_mask(esft_table([0.5, 0.5]), top_p)


# --- losses -----------------------------------------------------------------------------------


def test_losses_reduce_over_the_expert_axis():
    generator = torch.Generator().manual_seed(0)
    reference = torch.softmax(torch.randn(6, 6, generator=generator), -1)  # square: axis matters
    cost = torch.tensor([0.0, 1, 1, 0, 1, 1])
    target = safety_target(reference, cost, 0.5)
    torch.testing.assert_close(target.sum(-1), torch.ones(6))
    log_q = torch.log_softmax(torch.randn(6, 6, generator=generator), -1)
    expected = (target * (target.log() - log_q)).sum(-1)
    torch.testing.assert_close(kl_divergence(target, log_q), expected)


def test_sft_loss_messages_and_ignored_labels():
    logits = torch.zeros(1, 3, 5)
    with pytest.raises(ValueError, match=r"^batch has no response tokens to learn from$"):
        sft_loss(logits, torch.full((1, 3), IGNORE_INDEX))
    # uniform logits: each learnt token costs log 5, ignored ones cost nothing
    assert sft_loss(
        logits, torch.tensor([[IGNORE_INDEX, 2, IGNORE_INDEX]])
    ).item() == pytest.approx(np.log(5))


def test_online_cost_message(tiny_model_dir):
    from mesa_moe.adapters import adapter_for, load_model

    adapter = adapter_for(load_model(str(tiny_model_dir / "model"))[0])
    with pytest.raises(
        ValueError,
        match=r"^training.online_cost=global needs the selection's "
        r"cost column$",
    ):
        online_costs(adapter, {}, "global")


# --- data -------------------------------------------------------------------------------------


def test_collate_pads_on_either_side_with_long_tensors():
    batch = [{"input_ids": [5, 6, 7], "labels": [IGNORE_INDEX, 6, 7]}, {"input_ids": [8]}]
    for side, rows in (("right", (slice(0, 3), slice(0, 1))), ("left", (slice(0, 3), slice(2, 3)))):
        out = collate(batch, pad_id=0, padding_side=side)
        assert set(out) == {"input_ids", "attention_mask", "labels"}
        assert all(t.dtype == torch.long for t in out.values())
        expected_ids = torch.zeros(2, 3, dtype=torch.long)
        expected_ids[0, rows[0]] = torch.tensor([5, 6, 7])
        expected_ids[1, rows[1]] = 8
        assert torch.equal(out["input_ids"], expected_ids)
        assert torch.equal(out["attention_mask"], (expected_ids > 0).long())
        assert out["labels"][0].tolist() == [IGNORE_INDEX, 6, 7]
        assert out["labels"][1].tolist() == [IGNORE_INDEX] * 3  # no labels: nothing to learn
    assert collate(batch, pad_id=0)["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]


# --- judges -----------------------------------------------------------------------------------


def test_typographic_apostrophes_are_plain_ones():
    assert is_refusal("I can\u2019t help with that.") and is_refusal("I won\u2018t do that.")
    assert not is_refusal("Certainly\u2019 here it is.")


def test_wildguard_reads_the_harmful_response_line():
    judge = ClassifierJudge.__new__(ClassifierJudge)
    judge.style = "wildguard"
    outcome = judge.parse
    assert outcome("Harmful request: no\nResponse refusal: no\nHarmful response: yes") == "unsafe"
    assert outcome("Harmful request: yes\nHarmful response: no") == "safe"
    assert outcome("Harmful response: no: not harmful") == "unparsed"  # yes or no, nothing more
    assert outcome("Harmful request: yes\nResponse refusal: no") == "unparsed"  # no verdict
    assert outcome("") == "unparsed"


# --- reporting --------------------------------------------------------------------------------


def test_summary_markdown_exactly():
    table = pd.DataFrame(
        {
            "method": ["mesa", "mesa", "base", "base"],
            "run": ["w~2", "w~2", "default", "default"],
            "benchmark": ["gsm8k", "jbb", "gsm8k", "jbb"],
            "metric": ["exact_match", "asr", "exact_match", "asr"],
            "value": [0.5, 0.25, 0.625, 0.75],
            "kind": ["utility", "safety", "utility", "safety"],
            "degenerate": np.nan,
            "string_judge_agreement": np.nan,
        }
    )
    assert summary_markdown(table) == (
        "| method | gsm8k exact_match | jbb asr |\n"
        "|---|---|---|\n"
        "| mesa w~2 | 50.0 | 25.0 |\n"
        "| base default | 62.5 | 75.0 |\n\n"
        "Values in %. Higher is better except asr ↓, over_refusal_rate ↓.\n"
    )


def test_pareto_front_is_boolean():
    assert pareto_front(np.array([0.1, 0.2]), np.array([0.2, 0.1])).dtype == bool


# --- scoring ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prediction, reference, equal",
    [
        ("(-1)/2", "-1/2", True),
        ("(1/2", "1/2", False),
        ("1/2)", "1/2", False),
        ("\\frac{1}{2}\\frac{3}{4}", "1/23/4", True),
        ("\\frac{-1}{2}", "-1/2", True),
        ("\\boxed 7 and then", "7", True),
        ("\\boxed", "7", False),
        ("\\boxed{", "7", False),
        ("x\\,=\\;5\\:", "5", True),
        ("\\$5", "5", True),
        ("50\\%", "50", True),
        ("50%", "50", True),
        ("x\\ = 5", "5", True),
        ("AB=5", "5", True),
        ("ab=5", "5", True),
        ("x=y=5", "5", False),
        ("5.", "5", True),
        (".5", "0.5", True),
        ("The answer is 7\nmore", "7", True),
        ("the ANSWER IS: 8", "8", True),
        ("x = 9\n The answer is 9\n10", "9", True),
        ("0", "0.0", True),
        ("1", "0", False),
        ("0.0", "0", True),
    ],
)
def test_math_answers_by_hand(prediction, reference, equal):
    assert math_equal(prediction, reference) is equal


def test_math_helpers_by_hand():
    assert last_boxed("\\boxed 12") == "12" and last_boxed("\\boxed") is None
    assert last_boxed("\\boxed{a{b}c}") == "a{b}c"
    assert extract_math_answer("so the answer is 3\nand more") == " 3"
    assert extract_math_answer("So The Answer Is 4") == " 4"
    assert normalize_math_answer("\\frac{x+1}{2}") == "(x+1)/2"
    assert normalize_math_answer("\\frac{-x}{2}") == "-x/2"
    with pytest.raises(ValueError, match=r"^the reference '\$\$' is empty after normalisation$"):
        math_equal("1", "$$")
    assert exact_match_number("I think it is 0", "0.00") and not exact_match_number("1", "0")


def test_code_extraction_finds_the_function_past_the_first_line():
    prompt = "import math\n\ndef add(a, b):\n    pass\n"
    fenced = "Here:\n```python\nimport os\n\ndef add(a, b):\n    return a + b\n```"
    assert extract_code(fenced, prompt).endswith("def add(a, b):\n    return a + b\n")
    other_first = (
        "```python\nprint(1)\n```\n```python\nimport os\ndef add(a, b):\n    return a + b\n```"
    )
    assert "return a + b" in extract_code(other_first, prompt)
    body = extract_code("    return a + b\n", "def add(a, b):\n")
    assert body == "def add(a, b):\n    return a + b\n"
    two = "def helper():\n    pass\n\ndef add(a, b):\n    pass\n"
    assert extract_code("x = 1\ndef add(a, b):\n    return 1\n", two).startswith(two + "\n")


# --- second round: survivors of the first `make mutants` ---------------------------------------


class StrictChatTokenizer:
    """A chat template that extends the prompt (or, with `extends=False`, does not) and that
    honours only what it is asked for: defaults differ across transformers versions."""

    def __init__(self, extends=True):
        self.extends = extends

    def apply_chat_template(
        self, messages, add_generation_prompt=False, tokenize=False, return_dict=True
    ):
        ids = [1, 2, 3] if add_generation_prompt else [1, 2, 3, 4, 5]
        if not self.extends and not add_generation_prompt:
            ids = [1, 9, 3, 4, 5]
        if not tokenize:
            return "text"
        return {"input_ids": ids} if return_dict else ids


def test_chat_ids_asks_for_token_lists_and_checks_the_prompt_is_a_prefix():
    from mesa_moe.data import DataError, chat_ids

    assert chat_ids(StrictChatTokenizer(), "p") == ([1, 2, 3], 3)
    assert chat_ids(StrictChatTokenizer(), "p", "r") == ([1, 2, 3, 4, 5], 3)
    with pytest.raises(
        DataError,
        match=r"^the tokenizer's chat template does not extend the "
        r"prompt with the response; response-only labels "
        r"cannot be derived$",
    ):
        chat_ids(StrictChatTokenizer(extends=False), "p", "r")


def test_router_tap_flattens_three_dimensional_router_inputs(tiny_model_dir):
    """Mixtral, OLMoE and DeepSeek pass [B, S, H] hidden states to their routers."""
    from mesa_moe.adapters import adapter_for, load_model
    from mesa_moe.losses import RouterTap

    tap = RouterTap(adapter_for(load_model(str(tiny_model_dir / "model"))[0]))
    hidden = torch.randn(2, 5, 16)
    tap._hook(0)(None, (hidden,), (torch.zeros(10, 6),))
    assert torch.equal(tap.inputs[0], hidden.reshape(10, 16))


@pytest.mark.parametrize("seed", range(4))
def test_random_and_ot_pick_w_in_every_layer_whatever_the_draw(seed):
    activations, coactivation = model_tables((0, 1))
    safe = (activations.layer == 1) & (activations.source == "safe")
    activations.loc[safe, "freq"] = 1 / 16  # layer 1 has no safety head: its OT scores are flat
    for selector in ("random", "ot"):
        experts, _ = select_experts(
            activations, coactivation, selector, w=2, epsilon=0.5, seed=seed
        )
        assert experts.groupby("layer").selected.sum().tolist() == [2, 2], selector


def test_esft_shares_are_fractions_of_the_layer_total():
    assert esft_mask(esft_table([1.0, 1.0, 2.0]), 0.6).tolist() == [True, False, True]


def test_summary_table_keeps_the_judge_model_and_its_columns_when_empty(tmp_path):
    from mesa_moe.reporting import SUMMARY_COLUMNS, summary_table

    path = tmp_path / "mesa" / "default" / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(
        '{"strongreject": {"kind": "safety", "n": 3, "scores": {"refusal_rate": 1.0},'
        ' "judge": {"name": "classifier:llama_guard", "model": "guard-1b"}}}'
    )
    table = summary_table("m", [str(path)])
    assert table.judge_model.tolist() == ["guard-1b"]
    assert table.judge.tolist() == ["classifier:llama_guard"]
    assert list(summary_table("m", []).columns) == SUMMARY_COLUMNS


@pytest.mark.parametrize("tau", [0.0, 0.1])
@pytest.mark.parametrize("index", [0, 1, 2])
def test_transport_computes_in_float64_whatever_the_input(tau, index):
    r, cost, reference = small_layer()
    args = [(r / r.sum()).astype(np.float32), cost.astype(np.float32), reference.astype(np.float32)]
    mixed = [a.astype(np.float64) for a in args]
    exact = transport_plan(*mixed, 0.2, tau)
    mixed[index] = args[index]  # one argument in float32, the same values
    np.testing.assert_allclose(transport_plan(*mixed, 0.2, tau), exact, rtol=1e-12, atol=0)


def test_scoring_corners_by_hand():
    from mesa_moe.evaluation.scoring import entry_point_of, extract_final_number

    assert not math_equal("(12", "1") and not math_equal("12)", "12")
    assert normalize_math_answer("\\frac1") == "\\frac1"
    assert normalize_math_answer("\\frac") == "\\frac"
    assert normalize_math_answer("x") == "x" and normalize_math_answer("AX") == "AX"
    assert extract_final_number("it is -0") == "0" and extract_final_number("-0.00") == "0"
    assert entry_point_of("no function here") is None
    assert extract_math_answer("the answer is 3\nthen\nmore") == " 3"


def test_wildguard_verdict_is_the_whole_value_after_the_field_name():
    judge = ClassifierJudge.__new__(ClassifierJudge)
    judge.style = "wildguard"
    assert judge.parse("Harmful response: no: fine") == "unparsed"
    assert judge.parse("Harmful request: no\nHarmful response:no") == "safe"
    assert judge.parse("Harmful response: yes\nHarmful response: no") == "unsafe"  # the first


def test_humaneval_pass_at_1_from_the_sandbox():
    from mesa_moe.evaluation.benchmarks import get_benchmark, load_benchmark
    from mesa_moe.evaluation.judges import RefusalJudge
    from mesa_moe.evaluation.runner import score_generations

    records = load_benchmark("humaneval")[:2]
    rows = [
        dict(records[0], response=records[0]["reference"]["canonical_solution"]),
        dict(records[1], response="    return None\n"),
    ]
    sandbox = {"timeout_s": 5.0, "memory_mb": 512, "workers": 1}
    assert score_generations(get_benchmark("humaneval"), rows, RefusalJudge(), sandbox) == {
        "scores": {"pass@1": 0.5}
    }
