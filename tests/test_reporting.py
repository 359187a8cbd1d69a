"""Which way each metric points, and the numbers the report aggregates from them: every value
here is worked out by hand (or by a brute-force loop), never by the library's own helpers."""

import json
import math
from pathlib import Path

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
    aggregate_seeds,
    oriented,
    pareto_front,
    plot_pareto,
    plot_safety_vs_utility,
    plot_sweep,
    setting_scores,
    summary_markdown,
    summary_table,
    sweep_table,
)
from mesa_moe.runs import parse_run, setting_of

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
        "scores": {"asr_m0": 0.0, "asr_m1": 0.5, "asr_m2": 1.0},
        "judge_unparsed": {"asr_m0": 0.0, "asr_m1": 0.0, "asr_m2": 0.0},
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
            [summary_row("mesa", "seed~0", "xstest", "overrefusal", "over_refusal_rate", 0.125)]
        )
    )
    assert "| mesa default | 12.5 |" in text  # one seed: no n column, just the value
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
        "lr": params.get("lr", np.nan),
        "seed": params.get("seed", np.nan),
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
    assert (sweep.n_seeds == 1).all() and sweep.safety_std.isna().all()
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


# --- seeds ------------------------------------------------------------------------------------
MESA_W2 = "w~2_eps~0.05_gamma~1.0"
MESA_W4 = "w~4_eps~0.05_gamma~1.0"
# (method, run) → (direct refusal, routing asr_m1, gsm8k exact match, degenerate of direct)
SEEDED = {
    ("mesa", f"{MESA_W2}_seed~0"): (0.6, 0.3, 0.5, 0.1),
    ("mesa", f"{MESA_W2}_seed~1"): (0.7, 0.2, 0.4, 0.2),
    ("mesa", f"{MESA_W2}_seed~2"): (0.8, 0.1, 0.6, 0.3),
    ("mesa", f"{MESA_W4}_seed~0"): (0.2, 0.5, 0.7, 0.0),
    ("mesa", f"{MESA_W4}_seed~1"): (0.4, 0.7, 0.9, 0.0),
    ("sft_full", "seed~0"): (0.55, 0.4, 0.1, 0.05),
    ("base", "default"): (0.3, 0.9, 0.8, 0.25),
}


@pytest.fixture
def seeded():
    rows = []
    for (method, run), (direct, asr, gsm8k, degenerate) in SEEDED.items():
        params = parse_run(run)
        rows += [
            summary_row(method, run, "direct", "safety", "refusal_rate", direct, **params),
            summary_row(method, run, "routing", "safety", "asr_m1", asr, **params),
            summary_row(method, run, "gsm8k", "utility", "exact_match", gsm8k, **params),
        ]
        rows[-3]["degenerate"] = degenerate
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def test_summary_table_reads_seed_and_lr_from_the_run(tmp_path):
    paths = [
        write_metrics(
            tmp_path, "mesa", f"{MESA_W2}_lr~0.003_seed~2", {"gsm8k": ("utility", {"em": 0.5})}
        ),
        write_metrics(tmp_path, "base", "default", {"gsm8k": ("utility", {"em": 0.5})}),
    ]
    table = summary_table("tiny", paths).set_index("method")
    assert table.loc["mesa", "seed"] == 2.0 and table.loc["mesa", "lr"] == 0.003
    assert math.isnan(table.loc["base", "seed"]) and math.isnan(table.loc["base", "lr"])
    assert table.seed.dtype == float and table.lr.dtype == float


def test_setting_of_drops_only_the_seed():
    assert setting_of(f"{MESA_W2}_seed~3") == MESA_W2
    assert setting_of("w~4_lr~0.003_seed~0") == "w~4_lr~0.003"
    assert setting_of("seed~0") == "default" and setting_of("default") == "default"
    with pytest.raises(ValueError, match="seeds~1"):
        setting_of("w~2_seeds~1")


def test_aggregate_seeds_mean_std_n_per_setting(seeded):
    stats = aggregate_seeds(seeded).set_index(["method", "setting", "metric"]).sort_index()
    w2 = stats.loc[("mesa", MESA_W2, "refusal_rate")]
    assert w2["mean"] == pytest.approx(0.7) and w2["std"] == pytest.approx(0.1)
    assert w2.n_seeds == 3 and w2.degenerate == pytest.approx(0.2)
    assert (w2.w, w2.eps, w2.gamma) == (2, 0.05, 1.0)
    # the other setting's two seeds: never pooled with w~2's three
    w4 = stats.loc[("mesa", MESA_W4, "refusal_rate")]
    assert w4["mean"] == pytest.approx(0.3) and w4["std"] == pytest.approx(math.sqrt(0.02))
    assert w4.n_seeds == 2
    assert stats.loc[("mesa", MESA_W4, "exact_match"), "std"] == pytest.approx(math.sqrt(0.02))
    base = stats.loc[("base", "default")]
    assert len(base) == 3 and (base.n_seeds == 1).all() and base["std"].isna().all()
    assert stats.loc[("base", "default", "asr_m1"), "mean"] == 0.9
    sft = stats.loc[("sft_full", "default", "refusal_rate")]
    assert sft["mean"] == 0.55 and sft.n_seeds == 1 and math.isnan(sft["std"])
    assert len(stats) == 4 * 3


def test_summary_markdown_one_row_per_setting_with_mean_std_and_n(seeded):
    text = summary_markdown(seeded)
    lines = text.splitlines()
    assert lines[0] == "| method | n | direct refusal_rate | routing asr_m1 | gsm8k exact_match |"
    assert f"| mesa {MESA_W2} | 3 | 70.0 ± 10.0 (20.0) | 20.0 ± 10.0 | 50.0 ± 10.0 |" in lines
    assert f"| mesa {MESA_W4} | 2 | 30.0 ± 14.1 (0.0) | 60.0 ± 14.1 | 80.0 ± 14.1 |" in lines
    assert "| sft_full default | 1 | 55.0 (5.0) | 40.0 | 10.0 |" in lines
    assert "| base default | 1 | 30.0 (25.0) | 90.0 | 80.0 |" in lines
    assert sum(line.startswith("| mesa") for line in lines) == 2
    assert "standard deviation" in text


def test_summary_markdown_marks_a_cell_with_fewer_seeds(seeded):
    dropped = seeded[~((seeded.run == f"{MESA_W2}_seed~2") & (seeded.metric == "exact_match"))]
    line = next(row for row in summary_markdown(dropped).splitlines() if MESA_W2 in row)
    assert line.endswith("| 45.0 ± 7.1 [n=2] |") and "| 3 |" in line


def test_setting_scores_spread_of_the_per_seed_scores(seeded):
    scores = setting_scores(seeded)
    # per seed of w~2: safety = mean(direct, 1 − asr_m1) = 0.65, 0.75, 0.85
    w2 = scores.loc[("mesa", MESA_W2)]
    assert w2.safety == pytest.approx(0.75) and w2.safety_std == pytest.approx(0.1)
    assert w2.utility == pytest.approx(0.5) and w2.utility_std == pytest.approx(0.1)
    assert w2.n_seeds == 3
    # w~4: safety 0.35, 0.35 → std 0
    w4 = scores.loc[("mesa", MESA_W4)]
    assert w4.safety == pytest.approx(0.35) and w4.safety_std == pytest.approx(0.0)
    assert scores.loc[("base", "default")].n_seeds == 1
    assert math.isnan(scores.loc[("base", "default")].safety_std)


def test_sweep_table_one_row_per_setting(seeded):
    sweep = sweep_table(seeded).set_index(["method", "setting"])
    assert len(sweep) == 4 and sweep.loc[("mesa", MESA_W2)].n_seeds == 3
    assert sweep.loc[("mesa", MESA_W2), "direct:refusal_rate"] == pytest.approx(0.7)
    assert sweep.loc[("mesa", MESA_W4), "w"] == 4
    assert sweep.loc[("mesa", MESA_W2), "safety_std"] == pytest.approx(0.1)


@pytest.fixture
def errorbars(monkeypatch):
    drawn = []
    errorbar = matplotlib.axes.Axes.errorbar

    def recording(self, x, y, *args, **kwargs):
        drawn.append(
            {"x": list(x), "y": list(y), "xerr": kwargs.get("xerr"), "yerr": kwargs.get("yerr")}
        )
        return errorbar(self, x, y, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", recording)
    return drawn


def test_plots_draw_error_bars_only_where_several_seeds(seeded, tmp_path, errorbars):
    plot_safety_vs_utility(seeded, tmp_path / "scatter.png")
    [bars] = errorbars
    # only the two mesa settings (n = 3 and 2); safety ± std on y, utility ± std on x
    np.testing.assert_allclose(sorted(bars["y"]), [0.35, 0.75])
    np.testing.assert_allclose(sorted(bars["yerr"]), [0.0, 0.1], atol=1e-12)
    np.testing.assert_allclose(sorted(bars["xerr"]), [0.1, math.sqrt(0.02)])
    errorbars.clear()
    sweep = sweep_table(seeded)
    plot_pareto(sweep, tmp_path / "pareto.png")
    assert len(errorbars) == 1 and len(errorbars[0]["x"]) == 2
    errorbars.clear()
    plot_sweep(sweep, "w", tmp_path / "w.png")
    safety, utility = errorbars  # one line per panel: mesa (the only method with a w)
    assert safety["x"] == [2, 4] and safety["y"] == pytest.approx([0.75, 0.35])
    assert safety["yerr"] == pytest.approx([0.1, 0.0]) and utility["y"] == pytest.approx([0.5, 0.8])
    assert utility["yerr"] == pytest.approx([0.1, math.sqrt(0.02)])


def test_plots_without_several_seeds_draw_no_error_bars(summary, tmp_path, errorbars):
    plot_safety_vs_utility(summary, tmp_path / "scatter.png")
    plot_pareto(sweep_table(summary), tmp_path / "pareto.png")
    assert errorbars == []


def test_aggregate_seeds_is_the_mean_not_the_median_of_skewed_seeds(seeded):
    table = seeded.copy()
    rows = (table.method == "mesa") & (table.run.map(setting_of) == MESA_W2)
    rows &= table.metric == "refusal_rate"
    table.loc[rows, "value"] = [0.1, 0.2, 0.6]  # mean 0.3, median 0.2
    table.loc[rows, "degenerate"] = [0.0, 0.0, 0.3]  # mean 0.1, median 0
    stats = aggregate_seeds(table).set_index(["method", "setting", "metric"])
    w2 = stats.loc[("mesa", MESA_W2, "refusal_rate")]
    # std ddof 1: (0.04 + 0.01 + 0.09) / 2 = 0.07
    assert w2["mean"] == pytest.approx(0.3) and w2["std"] == pytest.approx(math.sqrt(0.07))
    assert w2.degenerate == pytest.approx(0.1)


def test_summary_table_reads_the_degenerate_share_per_metric(tmp_path):
    path = Path(
        write_metrics(
            tmp_path, "mesa", "seed~0", {"routing": ("safety", {"asr_m0": 0.1, "asr_m1": 0.4})}
        )
    )
    result = json.loads(path.read_text())
    result["routing"]["degenerate"] = {"asr_m0": 0.0, "asr_m1": 0.35}
    result["routing"]["string_judge_agreement"] = {"asr_m0": 1.0, "asr_m1": 0.75}
    path.write_text(json.dumps(result))
    base = write_metrics(tmp_path, "base", "default", {"gsm8k": ("utility", {"em": 0.5})})
    table = summary_table("tiny", [path, base]).set_index("metric")
    assert table.loc["asr_m1", "degenerate"] == 0.35 and table.loc["asr_m0", "degenerate"] == 0.0
    assert table.loc["asr_m1", "string_judge_agreement"] == 0.75
    assert math.isnan(table.loc["em", "degenerate"])  # no exact classifier: empty
