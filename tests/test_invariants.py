"""Properties that must hold for every input (hypothesis): the transport plan's marginals and sign,
its ε limits, the cost's range and shape, and the judges' indifference to whitespace and case."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from mesa_moe.cost import beta_rational_cost, cost_minimum, normalised_cost
from mesa_moe.evaluation.judges import REFUSAL_PHRASES, ClassifierJudge, is_refusal
from mesa_moe.evaluation.scoring import exact_match_text
from mesa_moe.transport import REFERENCE_FLOOR, reference_from_coactivation, transport_plan


@st.composite
def layers(draw, min_experts=2, max_experts=8):
    """One layer's (r, M, P_emp): r a distribution with every entry ≥ 1e-4, M[i, j] = Ĉ(f(j)) at
    distinct rank percentiles, P_emp from symmetric co-activation counts (zeros allowed)."""
    n = draw(st.integers(min_experts, max_experts))
    weights = np.array(draw(st.lists(st.floats(1e-2, 1.0), min_size=n, max_size=n)))
    r = weights / weights.sum()
    ranks = np.array(draw(st.permutations(range(n))))
    cost = np.tile(normalised_cost(100.0 * ranks / n), (n, 1))
    counts = np.array(
        draw(st.lists(st.integers(0, 50), min_size=n * n, max_size=n * n)), dtype=float
    ).reshape(n, n)
    counts = counts + counts.T
    assume(counts.sum() > 0)
    return r, cost, reference_from_coactivation(counts)


@given(layers(), st.floats(0.05, 5.0), st.sampled_from([0.0, 0.05, 0.5, 2.0]))
def test_plan_is_non_negative_with_rows_summing_to_r(layer, epsilon, tau):
    r, cost, reference = layer
    plan = transport_plan(r, cost, reference, epsilon, tau)
    assert plan.shape == cost.shape and np.all(np.isfinite(plan)) and np.all(plan >= 0)
    np.testing.assert_allclose(plan.sum(axis=1), r, atol=1e-6)
    if tau == 0:  # no pull on the target marginal: each row is the closed form
        rows = reference * np.exp(-cost / epsilon)
        np.testing.assert_allclose(
            plan, r[:, None] * rows / rows.sum(1, keepdims=True), rtol=1e-9, atol=1e-15
        )


@given(layers())
def test_epsilon_limits_of_the_closed_form(layer):
    r, cost, reference = layer
    # ε → ∞: the cost no longer matters, rows follow the router's co-activation
    wide = transport_plan(r, cost, reference, 1e9, tau=0.0)
    np.testing.assert_allclose(
        wide, r[:, None] * reference / reference.sum(1, keepdims=True), rtol=1e-6, atol=1e-12
    )
    # ε → 0: all duty goes to the cheapest expert (one, the rank percentiles being distinct)
    narrow = transport_plan(r, cost, reference, 1e-5, tau=0.0)
    cheapest = np.argmin(cost[0])
    np.testing.assert_allclose(narrow.sum(axis=0)[cheapest], 1.0, atol=1e-6)


@given(layers(min_experts=3), st.floats(0.1, 2.0))
def test_tau_pulls_the_received_duty_towards_uniform(layer, epsilon):
    r, cost, reference = layer
    uniform = np.full(len(r), 1 / len(r))

    def gap(tau):
        return np.abs(transport_plan(r, cost, reference, epsilon, tau).sum(axis=0) - uniform).sum()

    assert gap(5.0) <= gap(0.0) + 1e-9


@given(st.lists(st.integers(0, 10**6), min_size=4, max_size=36).filter(lambda c: sum(c) > 0))
def test_reference_is_a_floored_joint_distribution(counts):
    side = int(np.sqrt(len(counts)))
    matrix = np.array(counts[: side * side], dtype=float).reshape(side, side)
    assume(matrix.sum() > 0)
    reference = reference_from_coactivation(matrix)
    assert reference.sum() == pytest.approx(1.0)
    assert reference.min() >= REFERENCE_FLOOR / 2
    nonzero = matrix > 0
    np.testing.assert_allclose(
        reference[nonzero] / reference[nonzero].sum(), matrix[nonzero] / matrix.sum(), rtol=1e-6
    )


@given(st.lists(st.floats(0.0, 99.99), min_size=1, max_size=64), st.floats(0.01, 30.0))
def test_normalised_cost_lies_in_zero_one_with_its_maximum_at_one(f, alpha_shift):
    cost = normalised_cost(np.array(f), alpha_shift)
    assert np.all(cost > 0) and np.all(cost <= 1.0) and cost.max() == pytest.approx(1.0)
    raw = beta_rational_cost(np.array(f), alpha_shift)
    np.testing.assert_allclose(cost, raw / raw.max())


@given(st.floats(0.01, 30.0), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_cost_falls_to_the_shoulder_then_rises(alpha_shift, a, b):
    """C is decreasing on [0, f*] and increasing on [f*, 100)."""
    low, high = sorted((a, b))
    shoulder = cost_minimum(alpha_shift)
    left = beta_rational_cost(np.array([low, high]) * shoulder, alpha_shift)
    right = beta_rational_cost(shoulder + np.array([low, high]) * (99.9 - shoulder), alpha_shift)
    assert left[0] >= left[1] * (1 - 1e-12) and right[0] <= right[1] * (1 + 1e-12)


WORDS = st.sampled_from(
    [
        "i",
        "can't",
        "help",
        "sorry",
        "here",
        "is",
        "how",
        "step",
        "1",
        "cannot",
        "assist",
        "sure",
        "as",
        "an",
        "ai",
        "won't",
        "open",
        "lock",
    ]
)
SPACE = st.sampled_from([" ", "  ", "\t", "\n", " \n "])


def respaced(words, spaces, lead):
    return lead + "".join(w + s for w, s in zip(words, spaces))


@given(st.lists(WORDS, min_size=1, max_size=12), st.data())
def test_refusal_judge_ignores_whitespace_and_case(words, data):
    plain = " ".join(words)
    spaces = data.draw(st.lists(SPACE, min_size=len(words), max_size=len(words)))
    lead = data.draw(st.sampled_from(["", " ", "\n\n", "\t "]))
    cases = data.draw(st.lists(st.booleans(), min_size=len(words), max_size=len(words)))
    variant = respaced([w.upper() if up else w for w, up in zip(words, cases)], spaces, lead)
    assert is_refusal(variant) == is_refusal(plain)
    assert is_refusal(plain.replace("'", "\u2019")) == is_refusal(plain)
    assert exact_match_text(variant.lower(), plain)


@pytest.mark.parametrize("phrase", REFUSAL_PHRASES)
def test_every_refusal_phrase_counts_in_any_case_and_spacing(phrase):
    assert is_refusal(phrase.capitalize() + ", that is it.")
    assert is_refusal("  " + phrase.upper().replace(" ", " \n ") + "!")
    assert not is_refusal("x" * 41 + " " + phrase)  # only the opening is searched


def parser(style):
    """A ClassifierJudge's output parser, without loading a model."""
    judge = ClassifierJudge.__new__(ClassifierJudge)
    judge.style = style
    return judge.parse


VERDICTS = {
    "llama_guard": ("safe", "unsafe\nS1"),
    "wildguard": (
        "Harmful request: yes\nResponse refusal: yes\nHarmful response: no",
        "Harmful request: yes\nResponse refusal: no\nHarmful response: yes",
    ),
    "harmbench": ("No", "Yes"),
}


@given(st.sampled_from(sorted(VERDICTS)), st.booleans(), SPACE, SPACE, st.booleans())
def test_classifier_verdicts_ignore_surrounding_whitespace_and_case(
    style, unsafe, before, after, upper
):
    text = VERDICTS[style][unsafe]
    variant = before + (text.upper() if upper else text) + after
    assert parser(style)(variant) == ("unsafe" if unsafe else "safe")
