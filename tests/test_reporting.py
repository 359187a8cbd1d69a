"""Which way each metric points, and the numbers the report aggregates from them: every value
here is worked out by hand (or by a brute-force loop), never by the library's own helpers."""

import json
import math

import matplotlib.axes
import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesa_moe.evaluation.benchmarks import METRICS, get_benchmark
from mesa_moe.evaluation.judges import RefusalJudge
from mesa_moe.evaluation.runner import metric_value, score_generations
from mesa_moe.reporting import (
    SUMMARY_COLUMNS,
    oriented,
    pareto_front,
    plot_safety_vs_utility,
    summary_markdown,
    summary_table,
    sweep_table,
)

REFUSAL, COMPLIANCE = "I can't help with that.", "Sure, here is how: step 1, open the lock."
# verdicts [True, True, False, False, False]: 2 of 5 rows safe / refused / correct / passed
VERDICTS = [True, True, False, False, False]
EXPECTED = {
    "refusal_rate": 0.4,
    "over_refusal_rate": 0.4,
    "exact_match": 0.4,
    "pass@1": 0.4,
    "asr": 0.6,
}
BENCHMARK_OF = {
    "refusal_rate": "strongreject",
    "over_refusal_rate": "xstest",
    "exact_match": "gsm8k",
    "pass@1": "humaneval",
    "asr": "jailbreakbench",
}
# the score that rises when a model gets better (safer or more useful)
BETTER = {
    "refusal_rate": 0.4,
    "over_refusal_rate": 0.6,
    "exact_match": 0.4,
    "pass@1": 0.4,
    "asr": 0.4,
}


def test_every_metric_kind_is_covered():
    assert set(EXPECTED) == set(METRICS) == set(BETTER)


@pytest.mark.parametrize("metric", sorted(EXPECTED))
def test_metric_value_from_verdicts(metric):
    benchmark = get_benchmark(BENCHMARK_OF[metric])
    assert benchmark.metric == metric
    rows = [{"verdict": verdict} for verdict in VERDICTS]
    assert metric_value(benchmark, rows) == pytest.approx(EXPECTED[metric])


def test_safety_scores_from_responses_by_hand():
    """ASR is the share of harmful prompts answered (not refused); refusal rate the share
    refused; over-refusal the share of benign prompts refused."""
    responses = [REFUSAL, COMPLIANCE, COMPLIANCE, COMPLIANCE]  # 1 of 4 refused
    rows = [{"message": "x", "response": text, "attack_m": 0} for text in responses]
    scored = {
        name: score_generations(get_benchmark(name), [dict(r) for r in rows], RefusalJudge(), {})[
            "scores"
        ]
        for name in ("strongreject", "jailbreakbench", "xstest")
    }
    assert scored == {
        "strongreject": {"refusal_rate": 0.25},
        "jailbreakbench": {"asr_m0": 0.75},
        "xstest": {"over_refusal_rate": 0.25},
    }


def test_routing_attack_scores_asr_per_number_of_masked_experts():
    attack = get_benchmark("jailbreakbench")
    rows = [
        {"message": "x", "response": text, "attack_m": m}
        for m, text in [
            (0, REFUSAL),
            (0, REFUSAL),
            (1, REFUSAL),
            (1, COMPLIANCE),
            (2, COMPLIANCE),
            (2, COMPLIANCE),
        ]
    ]
    assert score_generations(attack, rows, RefusalJudge(), {}) == {
        "scores": {"asr_m0": 0.0, "asr_m1": 0.5, "asr_m2": 1.0}
    }
    assert [row["verdict"] for row in rows] == [True, True, True, False, False, False]


def test_oriented_makes_higher_better_for_every_metric():
    metrics = sorted(EXPECTED) + ["asr_m0", "asr_m2"]
    values = [EXPECTED.get(metric, 0.25) for metric in metrics]
    table = pd.DataFrame({"metric": metrics, "value": values})
    expected = [BETTER.get(metric, 0.75) for metric in metrics]
    np.testing.assert_allclose(oriented(table).to_numpy(), expected)


def test_summary_markdown_marks_the_lower_is_better_metrics():
    text = summary_markdown(
        pd.DataFrame(
            [summary_row("mesa", "default", "xstest", "overrefusal", "over_refusal_rate", 0.125)]
        )
    )
    assert "| mesa default | 12.5 |" in text
    assert "asr ↓" in text and "over_refusal_rate ↓" in text
    assert "refusal_rate ↓" not in text.replace("over_refusal_rate ↓", "")


def summary_row(method, run, benchmark, kind, metric, value, **params):
    return {
        "model": "m",
        "method": method,
        "run": run,
        "w": params.get("w"),
        "eps": params.get("eps"),
        "gamma": params.get("gamma"),
        "benchmark": benchmark,
        "kind": kind,
        "metric": metric,
        "value": value,
        "degenerate": np.nan,
        "string_judge_agreement": np.nan,
        "n": 10,
        "judge": "refusal",
        "judge_model": None,
    }


def brute_force_front(safety, utility):
    """Indices of runs no other run dominates (≥ on both, > on one), by a double loop."""
    front = []
    for i in range(len(safety)):
        dominated = any(
            safety[j] >= safety[i]
            and utility[j] >= utility[i]
            and (safety[j] > safety[i] or utility[j] > utility[i])
            for j in range(len(safety))
        )
        if not dominated:
            front.append(i)
    return front


def test_pareto_front_by_hand():
    safety = np.array([0.9, 0.5, 0.9, 0.2, 0.5, 0.9, 0.95])
    utility = np.array([0.1, 0.5, 0.1, 0.9, 0.4, 0.05, 0.0])
    # 0 and 2 tie (both kept); 4 is below 1; 5 is below 0; 6 is the safest
    assert np.flatnonzero(pareto_front(safety, utility)).tolist() == [0, 1, 2, 3, 6]
    assert pareto_front(np.array([0.3]), np.array([0.3])).tolist() == [True]


@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=12))
def test_pareto_front_matches_brute_force(points):
    safety = np.array([p[0] / 4 for p in points])
    utility = np.array([p[1] / 4 for p in points])
    front = pareto_front(safety, utility)
    assert np.flatnonzero(front).tolist() == brute_force_front(safety, utility)
    assert front[int(np.argmax(safety + utility))]  # the best sum is never dominated


def write_metrics(root, method, run, results):
    path = root / method / run / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(
        json.dumps(
            {
                benchmark: {
                    "kind": kind,
                    "n": 8,
                    "scores": scores,
                    "judge": {"name": "refusal", "model": None},
                }
                for benchmark, (kind, scores) in results.items()
            }
        )
    )
    return str(path)


@pytest.fixture
def summary(tmp_path):
    paths = [
        write_metrics(
            tmp_path,
            "mesa",
            "w~2_eps~0.05_gamma~1.0",
            {
                "strongreject": ("safety", {"refusal_rate": 0.8}),
                "routing": ("safety", {"asr_m0": 0.2, "asr_m1": 0.4}),
                "xstest": ("overrefusal", {"over_refusal_rate": 0.5}),
                "gsm8k": ("utility", {"exact_match": 0.5}),
                "humaneval": ("code", {"pass@1": 0.1}),
            },
        ),
        write_metrics(
            tmp_path,
            "base",
            "default",
            {
                "strongreject": ("safety", {"refusal_rate": 0.3}),
                "routing": ("safety", {"asr_m0": 0.7, "asr_m1": 0.9}),
                "xstest": ("overrefusal", {"over_refusal_rate": 0.0}),
                "gsm8k": ("utility", {"exact_match": 0.6}),
                "humaneval": ("code", {"pass@1": 0.2}),
            },
        ),
        write_metrics(
            tmp_path,
            "sft_full",
            "default",
            {
                "strongreject": ("safety", {"refusal_rate": 0.7}),
                "routing": ("safety", {"asr_m0": 0.3, "asr_m1": 0.5}),
                "xstest": ("overrefusal", {"over_refusal_rate": 0.9}),
                "gsm8k": ("utility", {"exact_match": 0.2}),
                "humaneval": ("code", {"pass@1": 0.0}),
            },
        ),
    ]
    return summary_table("tiny", paths)


def test_summary_table_has_one_row_per_run_and_metric(summary):
    assert list(summary.columns) == SUMMARY_COLUMNS and len(summary) == 3 * 6
    mesa = summary[summary.method == "mesa"].set_index("metric")
    assert (mesa.w.iloc[0], mesa.eps.iloc[0], mesa.gamma.iloc[0]) == (2, 0.05, 1.0)
    assert mesa.loc["asr_m1", "value"] == 0.4 and mesa.loc["asr_m1", "benchmark"] == "routing"
    assert mesa.loc["pass@1", "kind"] == "code" and (mesa.n == 8).all()
    assert summary[summary.method == "base"].w.isna().all()


# safety: refusal 0.8, 1 − 0.2, 1 − 0.4 → 0.7333; over-refusal is in neither score
SCORES = {
    "mesa": ((0.8 + 0.8 + 0.6) / 3, (0.5 + 0.1) / 2),
    "base": ((0.3 + 0.3 + 0.1) / 3, (0.6 + 0.2) / 2),
    "sft_full": ((0.7 + 0.7 + 0.5) / 3, (0.2 + 0.0) / 2),
}


def test_sweep_scores_are_means_of_oriented_metrics(summary):
    sweep = sweep_table(summary).set_index("method")
    for method, (safety, utility) in SCORES.items():
        assert sweep.loc[method, "safety"] == pytest.approx(safety), method
        assert sweep.loc[method, "utility"] == pytest.approx(utility), method
    # mesa is safest, base most useful; sft_full is dominated by mesa
    assert sweep.pareto.to_dict() == {"mesa": True, "base": True, "sft_full": False}
    assert sweep.loc["mesa", "routing:asr_m1"] == pytest.approx(0.4)  # raw values kept
    assert math.isnan(sweep.loc["base", "w"]) and sweep.loc["mesa", "w"] == 2


def test_headline_plot_shows_the_oriented_scores(summary, tmp_path, monkeypatch):
    drawn = []
    scatter = matplotlib.axes.Axes.scatter

    def recording(self, x, y, *args, **kwargs):
        drawn.append((list(x), list(y)))
        return scatter(self, x, y, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "scatter", recording)
    plot_safety_vs_utility(summary, tmp_path / "scatter.png")
    [(utility, safety)] = drawn
    expected = sorted((u, s) for s, u in SCORES.values())
    np.testing.assert_allclose(sorted(zip(utility, safety)), expected)
    assert (tmp_path / "scatter.png").stat().st_size > 0


def test_summary_records_model_and_judge(summary):
    assert (summary.model == "tiny").all() and (summary.judge == "refusal").all()
    assert summary.judge_model.isna().all()


def test_runs_missing_benchmarks_stay_in_the_sweep(tmp_path):
    paths = [
        write_metrics(
            tmp_path,
            "mesa",
            "w~2",
            {
                "gsm8k": ("utility", {"exact_match": 0.5}),
                "xstest": ("overrefusal", {"over_refusal_rate": 0.1}),
            },
        ),
        write_metrics(
            tmp_path, "router_only", "w~2", {"xstest": ("overrefusal", {"over_refusal_rate": 0.3})}
        ),
    ]
    sweep = sweep_table(summary_table("tiny", paths)).set_index("method")
    assert sorted(sweep.index) == ["mesa", "router_only"]
    assert sweep.loc["mesa", "utility"] == 0.5 and math.isnan(sweep.loc["mesa", "safety"])
    assert math.isnan(sweep.loc["router_only", "utility"])
    assert sweep.loc["router_only", "xstest:over_refusal_rate"] == pytest.approx(0.3)
