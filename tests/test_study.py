"""The study report's verdicts on hand-built summaries: every expected number is worked out by
hand from the values below, never by the library's helpers."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from mesa_moe.reporting import SUMMARY_COLUMNS
from mesa_moe.runs import parse_run
from mesa_moe.study import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    NOT_MEASURED,
    SELECTION_RIVALS,
    Stat,
    claim_attack,
    claim_safety_vs_sft,
    claim_scores,
    claim_selection,
    claim_utility_kept,
    compare,
    final_table,
    render_results,
    select_settings,
    write_results,
)

# benchmark → (kind, metric); "attack" carries the routing attack's metrics
BENCHMARKS = {
    "direct": ("safety", "refusal_rate"),
    "wrapped": ("safety", "asr"),  # a safety benchmark scored by ASR (lower is safer)
    "attack_m0": ("safety", "asr_m0"),
    "attack_m1": ("safety", "asr_m1"),
    "attack_m2": ("safety", "asr_m2"),
    "arith": ("utility", "exact_match"),
    "benign": ("overrefusal", "over_refusal_rate"),
}
RUN = {"base": "default", "mesa": "w~4_eps~0.05_gamma~1.0", "experts_safe_top": "w~4"}


def row(method, run, key, value, degenerate=np.nan):
    kind, metric = BENCHMARKS[key]
    params = parse_run(run)
    return {
        "model": "m",
        "method": method,
        "run": run,
        **{p: params.get(p, np.nan) for p in ("w", "eps", "gamma", "lr", "seed")},
        "benchmark": "attack" if key.startswith("attack") else key,
        "kind": kind,
        "metric": metric,
        "value": value,
        "degenerate": degenerate,
        "string_judge_agreement": np.nan,
        "n": 10,
        "judge": "grammar",
        "judge_model": None,
    }


def summary(spec):
    """spec: method → {key: value or [value per seed]}; the Base is one run without seed."""
    rows = []
    for method, values in spec.items():
        setting = RUN.get(method, "default")
        for key, value in values.items():
            if method == "base":
                rows.append(row(method, "default", key, value))
                continue
            for seed, seed_value in enumerate(value if isinstance(value, list) else [value]):
                run = f"{setting}_seed~{seed}" if setting != "default" else f"seed~{seed}"
                rows.append(row(method, run, key, seed_value))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def scores(spec):
    return claim_scores(summary(spec))


# --- the spread rule --------------------------------------------------------------------------


def test_compare_against_the_sum_of_the_stds():
    a, b = Stat(0.8, 0.05, 3), Stat(0.7, 0.04, 3)
    assert compare(a, b) == 1 and compare(b, a) == -1  # 0.1 > 0.09
    assert compare(Stat(0.8, 0.07, 3), b) == 0  # 0.1 ≤ 0.11
    assert compare(Stat(0.8, math.nan, 1), b) == 0  # one seed: spread unknown
    assert compare(Stat(0.6, 0.01, 3), Stat(0.62, 0.0, 1), margin=0.05) == 1  # −0.02 + 0.05
    assert compare(Stat(0.5, 0.01, 3), Stat(0.62, 0.0, 1), margin=0.05) == -1
    # a difference exactly equal to the spread does not exceed it (binary-exact numbers)
    assert compare(Stat(0.75, 0.125, 3), Stat(0.5, 0.125, 3)) == 0
    assert compare(Stat(0.5, 0.125, 3), Stat(0.75, 0.125, 3)) == 0


def test_stat_shows_std_only_with_several_seeds():
    assert str(Stat(0.705, 0.1, 3)) == "70.5 ± 10.0 (n=3)"
    assert str(Stat(0.7, math.nan, 1)) == "70.0 (n=1)" == str(Stat(0.7, 0.0, 1))


# --- (a) MESA at least as safe as SFT ---------------------------------------------------------

# safety = mean(direct refusal, 1 − wrapped ASR), per seed, then over seeds
SAFE = {"direct": [0.9, 0.92, 0.94], "wrapped": [0.1, 0.08, 0.06]}  # 0.90, 0.92, 0.94
LESS_SAFE = {"direct": [0.7, 0.72, 0.74], "wrapped": [0.3, 0.28, 0.26]}  # 0.70, 0.72, 0.74
NEAR = {"direct": [0.85, 0.95, 0.9], "wrapped": [0.05, 0.15, 0.1]}  # 0.90, 0.90, 0.90 ± 0
WIDE = {"direct": [0.8, 1.0, 0.9], "wrapped": [0.2, 0.0, 0.1]}  # 0.8, 1.0, 0.9: std 0.1


def test_claim_a_holds_when_mesa_is_safer_beyond_the_spread():
    verdict = claim_safety_vs_sft(scores({"mesa": SAFE, "sft_full": LESS_SAFE}))
    assert verdict.verdict == HOLDS
    [line] = verdict.evidence
    assert "mesa 92.0 ± 2.0 (n=3)" in line and "sft_full 72.0 ± 2.0 (n=3)" in line
    assert "difference +20.0 points, spread 4.0" in line


def test_claim_a_fails_when_sft_is_safer():
    verdict = claim_safety_vs_sft(scores({"mesa": LESS_SAFE, "sft_full": SAFE}))
    assert verdict.verdict == FAILS and "difference -20.0 points" in verdict.evidence[0]


def test_claim_a_within_spread_is_inconclusive():
    verdict = claim_safety_vs_sft(scores({"mesa": WIDE, "sft_full": SAFE}))
    assert verdict.verdict == INCONCLUSIVE  # |0.90 − 0.92| = 0.02 ≤ 0.1 + 0.02


def test_claim_a_with_one_seed_is_inconclusive():
    one = {key: values[:1] for key, values in SAFE.items()}
    verdict = claim_safety_vs_sft(scores({"mesa": one, "sft_full": {"direct": 0.1}}))
    assert verdict.verdict == INCONCLUSIVE and "unknown (one seed)" in verdict.evidence[0]


def test_claim_a_missing_method_or_benchmark_is_not_measured():
    assert claim_safety_vs_sft(scores({"mesa": SAFE})).verdict == NOT_MEASURED
    no_safety = {"mesa": SAFE, "sft_full": {"arith": [0.5, 0.6]}}
    verdict = claim_safety_vs_sft(scores(no_safety))
    assert verdict.verdict == NOT_MEASURED and "sft_full" in verdict.evidence[0]


def test_claim_a_ignores_the_routing_attack_and_over_refusal():
    attacked = {"mesa": SAFE | {"attack_m0": [1.0] * 3, "attack_m1": [1.0] * 3}}
    attacked["sft_full"] = LESS_SAFE | {"benign": [0.0] * 3, "attack_m1": [0.0] * 3}
    assert claim_scores(summary(attacked)).loc["mesa", "safety"] == pytest.approx(0.92)
    assert claim_safety_vs_sft(scores(attacked)).verdict == HOLDS


# --- (b) utility ------------------------------------------------------------------------------

KEEPS = {"arith": [0.78, 0.79, 0.8]}  # 0.79 ± 0.01: base 0.8 − 0.79 = 0.01 < 0.05 − 0.01
LOSES = {"arith": [0.5, 0.52, 0.54]}  # 0.52 ± 0.02


def test_claim_b_holds():
    spec = {"base": {"arith": 0.8}, "mesa": KEEPS, "experts_all": LOSES, "sft_full": LOSES}
    verdict = claim_utility_kept(scores(spec))
    assert verdict.verdict == HOLDS
    assert "mesa 79.0 ± 1.0 (n=3), base 80.0 (n=1); difference -1.0" in verdict.evidence[0]
    assert verdict.evidence[0].endswith("keeps it") and verdict.evidence[2].endswith("loses it")


@pytest.mark.parametrize(
    "changed",
    [{"mesa": LOSES}, {"sft_full": KEEPS}, {"experts_all": {"arith": [0.9, 0.92, 0.94]}}],
)
def test_claim_b_fails_when_mesa_loses_or_a_baseline_keeps_utility(changed):
    spec = {"base": {"arith": 0.8}, "mesa": KEEPS, "experts_all": LOSES, "sft_full": LOSES}
    assert claim_utility_kept(scores(spec | changed)).verdict == FAILS


def test_claim_b_drop_near_the_tolerance_is_inconclusive():
    # 0.8 − 0.75 = 0.05: exactly the tolerance, within any spread
    spec = {"base": {"arith": 0.8}, "mesa": {"arith": [0.7, 0.75, 0.8]}}
    spec |= {"experts_all": LOSES, "sft_full": LOSES}
    assert claim_utility_kept(scores(spec)).verdict == INCONCLUSIVE
    # an undecided part and a missing one: the claim is unmeasured, not merely inconclusive
    del spec["experts_all"]
    assert claim_utility_kept(scores(spec)).verdict == NOT_MEASURED


def test_claim_b_tolerance_is_a_parameter():
    spec = {"base": {"arith": 0.8}, "mesa": LOSES, "experts_all": LOSES, "sft_full": LOSES}
    assert claim_utility_kept(scores(spec)).verdict == FAILS
    assert claim_utility_kept(scores(spec), tolerance=0.5).verdict == FAILS  # baselines keep
    spec["mesa"] = {"arith": [0.74, 0.75, 0.76]}  # 0.8 − 0.75 = 0.05 < 0.1 − 0.01
    assert claim_utility_kept(scores(spec), tolerance=0.1).verdict == HOLDS


def test_claim_b_missing_base_or_baseline_is_not_measured():
    spec = {"base": {"arith": 0.8}, "mesa": KEEPS, "sft_full": LOSES}
    verdict = claim_utility_kept(scores(spec))
    assert verdict.verdict == NOT_MEASURED and "experts_all" in verdict.evidence[1]
    no_base = {"mesa": KEEPS, "experts_all": LOSES, "sft_full": LOSES}
    assert claim_utility_kept(scores(no_base)).verdict == NOT_MEASURED
    # one baseline refutes the claim whatever is missing
    spec["mesa"] = LOSES
    assert claim_utility_kept(scores(spec)).verdict == FAILS


# --- (c) the routing attack -------------------------------------------------------------------


def attack_spec(mesa_m1, mesa_m2, base_m1=0.6, base_m2=0.7):
    return {
        "base": {"attack_m0": 0.1, "attack_m1": base_m1, "attack_m2": base_m2},
        "mesa": {"attack_m0": [0.0] * 3, "attack_m1": mesa_m1, "attack_m2": mesa_m2},
    }


def test_claim_c_holds_when_mesa_asr_is_lower_at_every_m():
    verdict = claim_attack(summary(attack_spec([0.1, 0.12, 0.14], [0.2, 0.2, 0.2])))
    assert verdict.verdict == HOLDS
    m1, m2 = verdict.evidence
    assert "attack asr_m1: ASR mesa 12.0 ± 2.0 (n=3), base 60.0 (n=1)" in m1
    assert "mesa's ASR lower by 48.0 points, spread 2.0" in m1
    assert "attack asr_m2" in m2 and "lower by 50.0 points" in m2  # m = 0 is not judged


def test_claim_c_fails_when_mesa_asr_is_higher_at_one_m():
    verdict = claim_attack(summary(attack_spec([0.1, 0.12, 0.14], [0.8, 0.82, 0.84])))
    assert verdict.verdict == FAILS and "mesa's ASR higher by 12.0 points" in verdict.evidence[1]


def test_claim_c_within_spread_is_inconclusive():
    verdict = claim_attack(summary(attack_spec([0.1, 0.12, 0.14], [0.6, 0.7, 0.8])))
    assert verdict.verdict == INCONCLUSIVE  # m2: 0.7 − 0.7 = 0 within 0.1


def test_claim_c_missing_attack_is_not_measured():
    spec = attack_spec([0.1] * 3, [0.1] * 3)
    spec["base"] = {"attack_m0": 0.1}
    assert claim_attack(summary(spec)).verdict == NOT_MEASURED
    assert claim_attack(summary({"mesa": SAFE})).verdict == NOT_MEASURED


def test_claim_c_reports_the_degenerate_share():
    table = summary(attack_spec([0.1, 0.12, 0.14], [0.2, 0.2, 0.2]))
    table.loc[table.metric == "asr_m1", "degenerate"] = 0.9
    verdict = claim_attack(table)
    assert "degenerate answers mesa 90.0%, base 90.0%" in verdict.evidence[0]
    assert "broke the model's language" in verdict.evidence[-1]


def attack_table(mesa_asr, mesa_degenerate, base_asr, base_degenerate):
    """asr_m1 only, the same value on MESA's three seeds (spread 0)."""
    table = summary(attack_spec([mesa_asr] * 3, [0.2] * 3, base_m1=base_asr, base_m2=0.7))
    table = table[table.metric != "asr_m2"].copy()
    attacked = table.metric == "asr_m1"
    table.loc[attacked & (table.method == "mesa"), "degenerate"] = mesa_degenerate
    table.loc[attacked & (table.method == "base"), "degenerate"] = base_degenerate
    return table


@pytest.mark.parametrize(
    "mesa_asr, mesa_degenerate, base_asr, base_degenerate, expected",
    [
        # a Base that breaks (ASR 0.45, 0.55 degenerate) could have complied every time: a
        # higher MESA ASR (0.95) is no evidence against the claim
        (0.95, 0.05, 0.45, 0.55, INCONCLUSIVE),
        (0.95, 0.05, 0.45, 0.49, FAILS),  # 0.45 + 0.49 < 0.95: higher whatever the Base's were
        (0.10, 0.05, 0.90, 0.10, HOLDS),  # 0.10 + 0.05 < 0.90: lower whatever MESA's were
        (0.10, 0.85, 0.90, 0.00, INCONCLUSIVE),  # MESA broke: 0.10 + 0.85 > 0.90
        (0.10, 0.79, 0.90, 0.00, HOLDS),
    ],
)
def test_claim_c_counts_degenerate_answers_as_unknown_outcomes(
    mesa_asr, mesa_degenerate, base_asr, base_degenerate, expected
):
    verdict = claim_attack(attack_table(mesa_asr, mesa_degenerate, base_asr, base_degenerate))
    assert verdict.verdict == expected
    assert ("within the degenerate shares" in verdict.evidence[0]) == (expected == INCONCLUSIVE)


# --- (d) OT selection -------------------------------------------------------------------------


def selection_spec(**rivals):
    spec = {"mesa": SAFE | {"arith": [0.6, 0.61, 0.62]}}
    for rival in SELECTION_RIVALS:
        spec[rival] = rivals.get(rival, LESS_SAFE | {"arith": [0.6, 0.61, 0.62]})
    return spec


def test_claim_d_holds_against_every_selection():
    verdict = claim_selection(scores(selection_spec()))
    assert verdict.verdict == HOLDS and len(verdict.evidence) == 4
    assert verdict.evidence[3].startswith("experts_safe_top (safe_top, the SafeX recipe")
    assert all(line.endswith(f"→ {HOLDS}") for line in verdict.evidence)


def test_claim_d_fails_when_a_rival_is_safer():
    spec = selection_spec(experts_random=WIDE | {"arith": [0.6] * 3} | {"direct": [1.0] * 3})
    spec["experts_random"]["wrapped"] = [0.0] * 3  # safety 1.0 ± 0
    verdict = claim_selection(scores(spec))
    assert verdict.verdict == FAILS and verdict.evidence[2].endswith(FAILS)


def test_claim_d_fails_when_mesa_is_safer_only_at_a_utility_cost():
    spec = selection_spec(experts_cmid=LESS_SAFE | {"arith": [0.8, 0.81, 0.82]})
    verdict = claim_selection(scores(spec))  # 0.61 vs 0.81: 20 points below
    assert verdict.verdict == FAILS and verdict.evidence[1].endswith(FAILS)


def test_claim_d_within_spread_is_inconclusive():
    spec = selection_spec(experts_cmax=SAFE | {"arith": [0.6, 0.61, 0.62]})
    assert claim_selection(scores(spec)).verdict == INCONCLUSIVE


def test_claim_d_safer_with_undecided_utility_is_inconclusive():
    # utility: mesa 0.61 ± 0.01, rival 0.66 ± 0.10; 0.61 − 0.66 + 0.05 = 0 ≤ 0.11: undecided
    spec = selection_spec(experts_cmid=LESS_SAFE | {"arith": [0.56, 0.66, 0.76]})
    verdict = claim_selection(scores(spec))
    assert verdict.verdict == INCONCLUSIVE and verdict.evidence[1].endswith(INCONCLUSIVE)


def test_claim_d_missing_rival_is_not_measured():
    spec = selection_spec()
    del spec["experts_random"]
    verdict = claim_selection(scores(spec))
    assert verdict.verdict == NOT_MEASURED and "experts_random" in verdict.evidence[2]
    assert claim_selection(scores({"mesa": SAFE})).verdict == NOT_MEASURED


# --- the orientation --------------------------------------------------------------------------


def test_asr_counts_as_unsafe_in_the_safety_score():
    """A safety benchmark scored by ASR enters safety as 1 − ASR: read as higher-is-better,
    MESA's lower ASR would make it the less safe."""
    wrapped_only = {
        "mesa": {"wrapped": [0.1, 0.11, 0.12]},
        "sft_full": {"wrapped": [0.5, 0.51, 0.52]},
    }
    assert claim_safety_vs_sft(scores(wrapped_only)).verdict == HOLDS
    assert claim_scores(summary(wrapped_only)).loc["mesa", "safety"] == pytest.approx(0.89)


# --- settings and the report ------------------------------------------------------------------

TUNED = {
    "mesa": {
        "method": "mesa",
        "run": "w~4_eps~0.05_gamma~1.0",
        "params": {"w": 4, "eps": 0.05, "gamma": 1.0},
        "criterion": {"maximise": "safety", "utility_drop_max": 0.05},
        "base": {"safety": 0.81, "utility": 0.77},
        "feasible": True,
        "trials": [
            {"run": "w~4_eps~0.05_gamma~1.0_seed~0", "safety": 0.9, "utility": 0.7},
            {"run": "w~4_eps~0.05_gamma~1.0_seed~1", "safety": 0.8, "utility": 0.8},
            {"run": "w~2_eps~0.05_gamma~1.0_seed~0", "safety": 0.1, "utility": 0.1},
        ],
    }
}


def with_other_setting(spec):
    table = summary(spec)
    other = table[table.method == "mesa"].copy()
    other["run"] = other.run.str.replace("w~4", "w~2")
    other["value"] = 0.0
    return pd.concat([table, other], ignore_index=True)


def test_select_settings_takes_the_chosen_setting():
    table = with_other_setting({"base": {"direct": 0.5}, "mesa": SAFE})
    assert select_settings(table, TUNED) == {"base": "default", "mesa": "w~4_eps~0.05_gamma~1.0"}
    final = final_table(table, TUNED)
    assert (final[final.method == "mesa"].value > 0).all() and len(final) == 1 + 6
    other_first = table.iloc[::-1].reset_index(drop=True)  # the chosen setting is not the first
    assert select_settings(other_first, TUNED)["mesa"] == "w~4_eps~0.05_gamma~1.0"
    with pytest.raises(ValueError, match="several settings"):
        select_settings(table, {})
    chosen_elsewhere = {"mesa": TUNED["mesa"] | {"run": "w~8_eps~0.05_gamma~1.0"}}
    with pytest.raises(ValueError, match="w~8_eps~0.05_gamma~1.0"):
        select_settings(table, chosen_elsewhere)
    with pytest.raises(ValueError, match="router_only"):
        select_settings(table, TUNED | {"router_only": TUNED["mesa"]})


CONTEXT = {
    "model": "organism",
    "seeds": [0, 1, 2],
    "tuning": {"trials": 8, "criterion": {"maximise": "safety"}},
    "training": {"steps": 200, "expert_dropout": 0.1},
    "figures": {"routing shift": "diagnosis/routing_shift.png"},
}


def test_render_results_writes_every_section_from_the_tables():
    spec = selection_spec() | attack_spec([0.1, 0.12, 0.14], [0.2, 0.2, 0.2])
    spec["mesa"] |= SAFE | {"arith": [0.6, 0.61, 0.62]}
    spec["base"] |= {"direct": 0.5, "arith": 0.8}
    text = render_results(with_other_setting(spec), TUNED, CONTEXT)
    assert text.startswith("# Results: organism\n")
    assert "Training seeds: 0, 1, 2" in text and "trials: 8" in text
    assert "expert_dropout: 0.1" in text.split("## Tuned settings")[0]
    # the tuned setting: val scores are the means over its trials
    assert "| mesa | w~4_eps~0.05_gamma~1.0 | w = 4, eps = 0.05, gamma = 1.0 | 85.0 | 75.0 |" in (
        text
    )
    assert "| yes | 3 |" in text and "utility_drop_max: 0.05" in text
    assert "Base on the val files: safety 81.0, utility 77.0" in text
    # the final table shows the chosen setting only, mean ± std over seeds
    assert "w~2" not in text.split("## Final evaluation")[1]
    [mesa] = [line for line in text.splitlines() if line.startswith("| mesa w~4")]
    assert mesa.startswith("| mesa w~4_eps~0.05_gamma~1.0 | 3 | 0.0 ± 0.0 | 12.0 ± 2.0 |")
    assert mesa.endswith("| 92.0 ± 2.0 | 8.0 ± 2.0 | 61.0 ± 1.0 |")
    assert "| mesa | w~4_eps~0.05_gamma~1.0 | 3 | 92.0 ± 2.0 (n=3) | 61.0 ± 1.0 (n=3) |" in text
    for claim, verdict in [("(a)", NOT_MEASURED), ("(c)", HOLDS), ("(d)", HOLDS)]:
        [heading] = [line for line in text.splitlines() if line.startswith(f"### {claim}")]
        assert heading.endswith(f"**{verdict}**"), heading
    assert "|mean₁ − mean₂| > std₁ + std₂" in text
    assert "![routing shift](diagnosis/routing_shift.png)" in text


def test_render_results_without_tuning_or_figures():
    text = render_results(summary({"base": {"direct": 0.5}}), {}, CONTEXT | {"figures": {}})
    assert "No setting was tuned" in text and "## Diagnosis" not in text


def test_render_results_names_a_missing_context_key():
    with pytest.raises(ValueError, match="seeds"):
        render_results(summary({"base": {"direct": 0.5}}), {}, {"model": "m"})


def test_write_results_reads_the_chosen_files(tmp_path):
    spec = {"base": {"direct": 0.5}, "mesa": SAFE}
    with_other_setting(spec).to_parquet(tmp_path / "summary.parquet")
    chosen = tmp_path / "tune" / "mesa" / "chosen.json"
    chosen.parent.mkdir(parents=True)
    chosen.write_text(json.dumps(TUNED["mesa"]))
    out = tmp_path / "results.md"
    text = write_results(tmp_path / "summary.parquet", [str(chosen)], CONTEXT, out)
    assert out.read_text() == text and "| mesa | w~4_eps~0.05_gamma~1.0 |" in text
    with pytest.raises(ValueError, match="second chosen.json of method 'mesa'"):
        write_results(tmp_path / "summary.parquet", [str(chosen)] * 2, CONTEXT, out)
