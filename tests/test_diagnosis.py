"""The diagnosis: shares of routing on the selected experts, seeds averaged per setting, the
attack per m, validation curves; the rule in the default workflow's plan."""

import math

import numpy as np
import pandas as pd
import pytest
import yaml
from test_workflow import ROOT, planned_jobs, snakemake

from mesa_moe.diagnosis import (
    SHIFT_COLUMNS,
    attack_table,
    routed_shares,
    routing_shift,
    seed_spread,
    trial_scores,
    write_diagnosis,
)
from mesa_moe.runs import seed_of, setting_of

# Two layers, four experts, top-2, 5 tokens per source: 10 routing slots per layer and source.
COUNTS = {
    (0, "safe"): [6, 2, 1, 1],
    (0, "gen"): [1, 1, 4, 4],
    (1, "safe"): [0, 3, 3, 4],
    (1, "gen"): [5, 5, 0, 0],
}
SELECTED = {0: (0, 1), 1: (1, 2)}


def activations(counts=COUNTS) -> pd.DataFrame:
    rows = [
        {"layer": layer, "expert": e, "source": source, "count": n, "tokens": 5}
        for (layer, source), values in counts.items()
        for e, n in enumerate(values)
    ]
    mix = [
        {"layer": layer, "expert": e, "source": "mix", "count": COUNTS[layer, "safe"][e]}
        for layer in (0, 1)
        for e in range(4)
    ]
    return pd.DataFrame(rows + mix)  # mix rows must not count twice


def experts(selected=SELECTED) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"layer": layer, "expert": e, "selected": e in chosen}
            for layer, chosen in selected.items()
            for e in range(4)
        ]
    )


def sparsity(entropy=(1.0, 2.0)) -> pd.DataFrame:
    return pd.DataFrame(
        {"layer": [0, 1], "entropy": list(entropy), "max_entropy": [math.log(4)] * 2}
    )


def test_shares_are_on_the_selected_experts_per_layer_and_pooled():
    shares = routed_shares(activations(), experts())
    per_layer = shares[shares.layer.notna()].set_index("layer")
    # layer 0: safe 6+2 of 10, gen 1+1 of 10; layer 1: safe 3+3 of 10, gen 5+0 of 10
    np.testing.assert_allclose(per_layer.safe_share, [0.8, 0.6])
    np.testing.assert_allclose(per_layer.gen_share, [0.2, 0.5])
    np.testing.assert_allclose(per_layer.uniform_share, [0.5, 0.5])
    overall = shares[shares.layer.isna()].iloc[0]
    assert overall.safe_share == pytest.approx(14 / 20)
    assert overall.gen_share == pytest.approx(7 / 20)
    assert overall.uniform_share == pytest.approx(0.5)  # 4 of the 8 experts are selected


def test_overall_pools_slots_across_layers():
    counts = COUNTS | {(1, "safe"): [0, 30, 30, 40]}  # layer 1 saw ten times the slots
    overall = routed_shares(activations(counts), experts()).iloc[-1]
    assert overall.safe_share == pytest.approx((8 + 60) / (10 + 100))


def test_selection_of_another_model_is_refused():
    other = experts({0: (0, 1), 5: (1, 2)})
    with pytest.raises(ValueError, match="not the same model"):
        routed_shares(activations(), other)
    with pytest.raises(ValueError, match="selection: missing column"):
        routed_shares(activations(), experts().drop(columns="selected"))


def test_routing_shift_rows_per_selection_with_entropy_and_seed():
    table = routing_shift(
        "experts_cmax",
        "w~2_eps~0.05_gamma~1.0_seed~3",
        activations(),
        sparsity(),
        {
            ("ot", "w~2_eps~0.05"): experts(),
            ("cost_min", "w~2"): experts({0: (2, 3), 1: (0, 3)}),
        },
    )
    assert list(table.columns) == SHIFT_COLUMNS
    assert (table.setting == "w~2_eps~0.05_gamma~1.0").all() and (table.seed == 3).all()
    own = table[(table.selector == "cost_min") & table.layer.isna()].iloc[0]
    assert own.safe_share == pytest.approx((2 + 4) / 20)
    assert own.selection == "w~2"
    entropy = table[table.selector == "ot"].set_index("layer", drop=False)
    np.testing.assert_allclose(entropy.safe_entropy, [1.0, 2.0, 1.5])  # layers, then the mean
    with pytest.raises(ValueError, match="sparsity layers"):
        routing_shift(
            "mesa", "default", activations(), sparsity().iloc[:1], {("ot", "x"): experts()}
        )


def shifted(method: str, run: str, entropy: tuple[float, float]) -> pd.DataFrame:
    return routing_shift(
        method, run, activations(), sparsity(entropy), {("ot", "w~2_eps~0.05"): experts()}
    )


def test_seeds_are_averaged_per_setting_only():
    table = pd.concat(
        [
            shifted("mesa", "w~2_eps~0.05_gamma~1.0_seed~0", (1.0, 1.0)),
            shifted("mesa", "w~2_eps~0.05_gamma~1.0_seed~1", (3.0, 3.0)),
            shifted("mesa", "w~2_eps~0.05_gamma~0.3_seed~0", (7.0, 7.0)),
            shifted("base", "default", (2.0, 2.0)),
        ]
    )
    spread = seed_spread(table, ["method", "setting", "layer"], ["safe_entropy"])
    spread = spread[spread.layer.isna()].set_index(["method", "setting"])
    one = spread.loc[("mesa", "w~2_eps~0.05_gamma~1.0")]
    assert one.safe_entropy_mean == 2.0 and one.seeds == 2
    assert one.safe_entropy_std == pytest.approx(math.sqrt(2))
    other = spread.loc[("mesa", "w~2_eps~0.05_gamma~0.3")]
    assert other.safe_entropy_mean == 7.0 and other.seeds == 1 and pd.isna(other.safe_entropy_std)
    assert spread.loc[("base", "default")].safe_entropy_mean == 2.0


def test_setting_is_the_run_less_its_seed():
    run = "w~4_eps~0.05_gamma~0.3_lr~0.003_seed~2"
    assert (setting_of(run), seed_of(run)) == ("w~4_eps~0.05_gamma~0.3_lr~0.003", 2.0)
    assert setting_of("default") == "default" and np.isnan(seed_of("default"))
    assert (setting_of("seed~1"), seed_of("seed~1")) == ("default", 1.0)


def summary_rows(method, run, benchmark, metric, value, degenerate=np.nan, kind="safety"):
    return {
        "method": method,
        "run": run,
        "benchmark": benchmark,
        "kind": kind,
        "metric": metric,
        "value": value,
        "degenerate": degenerate,
    }


def test_attack_table_per_m_over_seeds():
    summary = pd.DataFrame(
        [
            summary_rows("mesa", "seed~0", "attack", "asr_m0", 0.1, 0.0),
            summary_rows("mesa", "seed~1", "attack", "asr_m0", 0.3, 0.2),
            summary_rows("mesa", "seed~0", "attack", "asr_m1", 0.0, 1.0),
            summary_rows("mesa", "seed~1", "attack", "asr_m1", 0.0, 0.8),
            summary_rows("mesa", "seed~0", "direct", "refusal_rate", 0.9),
            summary_rows("base", "default", "attack", "asr_m0", 0.5, 0.1),
            summary_rows("base", "default", "attack", "asr_m12", 0.4, 0.1),
        ]
    )
    table = attack_table(summary).set_index(["method", "m"])
    assert sorted(table.index) == [("base", 0), ("base", 12), ("mesa", 0), ("mesa", 1)]
    assert table.loc[("mesa", 0)].asr_mean == pytest.approx(0.2)
    assert table.loc[("mesa", 0)].asr_std == pytest.approx(math.sqrt(0.02))
    assert table.loc[("mesa", 1)].degenerate_mean == pytest.approx(0.9)
    assert table.loc[("mesa", 1)].seeds == 2 and table.loc[("base", 0)].seeds == 1
    assert (table.setting == "default").all()
    with pytest.raises(ValueError, match="no routing-attack metric"):
        attack_table(summary[summary.benchmark == "direct"])


def trials() -> pd.DataFrame:
    rows = []
    for run, safety, utility in (
        ("w~2_eps~0.05_gamma~0.3_lr~0.001_seed~0", 0.6, 0.8),
        ("w~2_eps~0.05_gamma~0.3_lr~0.001_seed~1", 0.8, 0.6),
        ("w~2_eps~0.05_gamma~1.0_lr~0.001_seed~0", 0.9, 0.5),
        ("w~2_eps~0.5_gamma~1.0_lr~0.001_seed~0", 0.7, 0.7),
    ):
        rows.append(summary_rows("mesa", run, "direct", "refusal_rate", safety))
        rows.append(summary_rows("mesa", run, "attack", "asr_m0", 1 - safety))
        rows.append(summary_rows("mesa", run, "arith", "exact_match", utility, kind="utility"))
    rows.append(summary_rows("base", "default", "direct", "refusal_rate", 0.5))
    rows.append(summary_rows("base", "default", "arith", "exact_match", 0.9, kind="utility"))
    return pd.DataFrame(rows)


def test_trial_scores_and_parameters():
    scores = trial_scores(trials()).set_index("run")
    first = scores.loc["w~2_eps~0.05_gamma~0.3_lr~0.001_seed~0"]
    assert first.safety == pytest.approx(0.6) and first.utility == pytest.approx(0.8)
    assert (first.gamma, first.eps, first.lr, first.w, first.seed) == (0.3, 0.05, 0.001, 2, 0)
    assert first.setting == "w~2_eps~0.05_gamma~0.3_lr~0.001"
    assert np.isnan(scores.loc["default"].gamma)


def write_tables(tmp_path):
    evaluations = []
    for method, run, selected in (
        ("base", "default", SELECTED),
        ("mesa", "w~2_eps~0.05_gamma~1.0_seed~0", SELECTED),
        ("mesa", "w~2_eps~0.05_gamma~1.0_seed~1", {0: (0, 2), 1: (1, 3)}),
    ):
        folder = tmp_path / method / run
        folder.mkdir(parents=True)
        activations().to_parquet(folder / "activations.parquet")
        sparsity().to_parquet(folder / "sparsity.parquet")
        experts(selected).to_parquet(folder / "experts.parquet")
        evaluations.append(
            {
                "method": method,
                "run": run,
                "activations": str(folder / "activations.parquet"),
                "sparsity": str(folder / "sparsity.parquet"),
                "selections": [
                    {
                        "selector": "ot",
                        "run": "w~2_eps~0.05",
                        "path": str(folder / "experts.parquet"),
                    }
                ],
            }
        )
    summary = pd.DataFrame(
        [
            summary_rows("base", "default", "attack", f"asr_m{m}", 0.5 - 0.2 * m, 0.1 * m)
            for m in (0, 1, 2)
        ]
        + [
            summary_rows("mesa", f"w~2_eps~0.05_gamma~1.0_seed~{s}", "attack", f"asr_m{m}", v, 0.2)
            for s in (0, 1)
            for m, v in ((0, 0.1), (1, 0.2), (2, 0.0))
        ]
    )
    summary.to_parquet(tmp_path / "summary.parquet")
    trials().to_parquet(tmp_path / "trials.parquet")
    return evaluations


@pytest.mark.parametrize("tuned", [True, False])
def test_write_diagnosis_files(tmp_path, tuned):
    evaluations = write_tables(tmp_path)
    out = tmp_path / "diagnosis"
    figures = {param: str(out / f"val_vs_{param}.png") for param in ("gamma", "eps")}
    shift = write_diagnosis(
        evaluations,
        str(tmp_path / "summary.parquet"),
        str(out / "routing_shift.parquet"),
        str(out / "routing_shift.png"),
        str(out / "asr_vs_m.parquet"),
        str(out / "asr_vs_m.png"),
        str(tmp_path / "trials.parquet") if tuned else None,
        figures if tuned else None,
    )
    written = pd.read_parquet(out / "routing_shift.parquet")
    assert list(written.columns) == SHIFT_COLUMNS and len(written) == len(shift) == 3 * 3
    overall = written[written.layer.isna()].set_index("run").safe_share
    assert overall["w~2_eps~0.05_gamma~1.0_seed~1"] == pytest.approx((7 + 7) / 20)
    assert len(pd.read_parquet(out / "asr_vs_m.parquet")) == 6
    expected = ["routing_shift.png", "asr_vs_m.png"] + (
        ["val_vs_gamma.png", "val_vs_eps.png"] if tuned else []
    )
    for name in expected:
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    assert sorted(p.name for p in out.glob("*.png")) == sorted(expected)


def test_default_workflow_plans_the_diagnosis(tmp_path):
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    result = snakemake(tmp_path, "-n", config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    assert planned_jobs(result.stdout + result.stderr)["diagnosis"] == 1
    plan = result.stdout + result.stderr
    job = plan.split("rule diagnosis:")[1].split("rule ")[0]
    for path in (
        "results/organism/select/ot/w~4_eps~0.05/experts.parquet",
        "results/organism/select/cost_mid/w~4/experts.parquet",
        "results/organism/eval/base/default/activations.parquet",
        "results/organism/summary.parquet",
    ):
        assert path in job
    assert "diagnosis/routing_shift.png" in job and "val_vs_gamma" not in job
    assert "tune/trials.parquet" not in job
    assert "diagnosis/asr_vs_m.png" in job


def test_validation_figures_only_for_the_parameters_tuning_searches(tmp_path):
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["tuning"] |= {"enabled": True, "space": {"lr": [1.0e-3, 3.0e-3], "gamma": [0.3, 1.0]}}
    result = snakemake(tmp_path, "-n", config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    job = (result.stdout + result.stderr).split("rule diagnosis:")[1].split("rule ")[0]
    outputs = job.split("output:")[1].split("\n")[0]  # the input waits for the checkpoints
    assert "diagnosis/val_vs_gamma.png" in outputs
    assert "val_vs_eps" not in outputs  # ε takes its one configured value: no curve to draw


def test_without_a_routing_attack_the_diagnosis_has_no_attack_part(tmp_path):
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["evaluation"]["benchmarks"] = ["organism_direct", "organism_arith"]
    result = snakemake(tmp_path, "-n", config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    job = (result.stdout + result.stderr).split("rule diagnosis:")[1].split("rule ")[0]
    assert "diagnosis/routing_shift.png" in job and "asr_vs_m" not in job


def test_write_diagnosis_without_the_attack(tmp_path):
    evaluations = write_tables(tmp_path)
    out = tmp_path / "diagnosis"
    write_diagnosis(
        evaluations,
        str(tmp_path / "summary.parquet"),
        str(out / "routing_shift.parquet"),
        str(out / "routing_shift.png"),
        None,
        None,
    )
    assert sorted(p.name for p in out.iterdir()) == ["routing_shift.parquet", "routing_shift.png"]
