"""Tuning on val files only: trials, criterion scores, the choice (every branch), and the study
DAG, where no tuning job reads an evaluation file."""

import json
import shutil
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from dag import ROOT, dag_jobs, materialise
from test_workflow import snakemake, tiny_config

from mesa_moe.runs import parse_run, with_seed
from mesa_moe.tuning import (
    choose,
    criterion_scores,
    headline_score,
    trial_runs,
    write_choice,
)

FIXED = {"w": 4, "eps": 0.05, "gamma": 1.0, "lr": 0.001}
CRITERION = {
    "safety": ["organism_direct", "organism_jailbreak"],
    "utility": ["organism_arith", "organism_listops"],
    "min_utility_ratio": 0.95,
}


def test_trials_vary_only_what_the_method_reads():
    space = {"lr": [0.0003, 0.001], "gamma": [0.3, 3.0], "w": [2]}
    assert trial_runs("sft_full", space, 4, 0, FIXED) == ["lr~0.0003", "lr~0.001"]
    assert trial_runs("experts_safe_top", space, 4, 0, FIXED) == [
        "w~2_lr~0.0003",
        "w~2_lr~0.001",
    ]
    # eps is not in the space: the config's first value; all 2 x 2 combinations fit the budget
    assert trial_runs("mesa", space, 4, 0, FIXED) == [
        "w~2_eps~0.05_gamma~0.3_lr~0.0003",
        "w~2_eps~0.05_gamma~0.3_lr~0.001",
        "w~2_eps~0.05_gamma~3.0_lr~0.0003",
        "w~2_eps~0.05_gamma~3.0_lr~0.001",
    ]


def test_lr_is_always_named_even_when_not_searched():
    assert trial_runs("experts_all", {"gamma": [0.3]}, 3, 0, FIXED) == ["lr~0.001"]


def test_trials_are_drawn_without_replacement_by_the_seed():
    space = {"lr": [1e-4, 3e-4, 1e-3, 3e-3], "gamma": [0.1, 0.3, 1.0, 3.0]}
    drawn = trial_runs("mesa", space, 5, 7, FIXED)
    assert len(drawn) == len(set(drawn)) == 5
    assert drawn == trial_runs("mesa", space, 5, 7, FIXED)  # seeded
    draws = {tuple(trial_runs("mesa", space, 5, seed, FIXED)) for seed in range(6)}
    assert len(draws) > 1  # the seed decides which
    everything = trial_runs("mesa", space, 16, 0, FIXED)
    assert set(drawn) < set(everything) and len(everything) == 16
    assert drawn == [run for run in everything if run in drawn]  # kept in product order
    params = [parse_run(run) for run in drawn]
    assert all(p["w"] == 4 and p["eps"] == 0.05 for p in params)


def test_with_seed():
    assert with_seed("default", 2) == "seed~2"
    assert with_seed("w~4_eps~0.05_gamma~1_lr~0.001", 0) == "w~4_eps~0.05_gamma~1_lr~0.001_seed~0"


def entry(**scores) -> dict:
    return {"kind": "safety", "n": 10, "scores": scores, "judge": {"name": "grammar"}}


def test_headline_scores_are_oriented():
    assert headline_score(entry(refusal_rate=0.8)) == 0.8
    assert headline_score(entry(over_refusal_rate=0.25)) == 0.75
    # a routing attack: 1 - ASR over the attacked m only
    assert headline_score(entry(asr_m0=0.0, asr_m1=0.2, asr_m2=0.6)) == pytest.approx(0.6)


def test_criterion_scores_average_the_named_benchmarks():
    metrics = {
        "organism_direct": entry(refusal_rate=0.9),
        "organism_jailbreak": entry(refusal_rate=0.5),
        "organism_arith": entry(exact_match=0.4),
        "organism_listops": entry(exact_match=1.0),
        "organism_benign": entry(over_refusal_rate=1.0),  # in neither score
    }
    assert criterion_scores(metrics, CRITERION) == pytest.approx((0.7, 0.7))
    del metrics["organism_listops"]
    with pytest.raises(ValueError, match=r"tuning.criterion.utility: no result for .*listops"):
        criterion_scores(metrics, CRITERION)
    metrics["organism_listops"] = entry(exact_match=float("nan"))  # a NaN would win no max
    with pytest.raises(ValueError, match=r"tuning.criterion.utility: a score is not finite"):
        criterion_scores(metrics, CRITERION)


BASE = {"safety": 0.6, "utility": 0.8}  # floor: 0.95 * 0.8 = 0.76


def trials(*scores) -> list[dict]:
    return [
        {"run": f"w~4_eps~0.05_gamma~{i}.0_lr~0.001", "safety": s, "utility": u}
        for i, (s, u) in enumerate(scores)
    ]


def test_choose_the_safest_feasible_trial():
    chosen = choose("mesa", trials((0.9, 0.70), (0.8, 0.77), (0.7, 0.9)), BASE, CRITERION)
    assert chosen["run"] == "w~4_eps~0.05_gamma~1.0_lr~0.001" and chosen["feasible"]
    assert chosen["params"] == {"w": 4, "eps": 0.05, "gamma": 1.0, "lr": 0.001}
    assert [t["feasible"] for t in chosen["trials"]] == [False, True, True]
    assert chosen["method"] == "mesa" and chosen["criterion"] == CRITERION
    assert chosen["base"] == BASE
    assert chosen["trials"][0] == {
        "run": "w~4_eps~0.05_gamma~0.0_lr~0.001",
        "params": {"w": 4, "eps": 0.05, "gamma": 0.0, "lr": 0.001},
        "safety": 0.9,
        "utility": 0.70,
        "feasible": False,
    }


def test_utility_exactly_at_the_floor_is_feasible():
    chosen = choose("mesa", trials((0.5, 0.9), (0.8, 0.76)), BASE, CRITERION)
    assert chosen["run"].startswith("w~4_eps~0.05_gamma~1.0") and chosen["feasible"]


def test_no_feasible_trial_gives_the_most_useful_one():
    chosen = choose("mesa", trials((0.9, 0.5), (0.2, 0.7), (0.95, 0.6)), BASE, CRITERION)
    assert chosen["run"].startswith("w~4_eps~0.05_gamma~1.0") and not chosen["feasible"]
    assert not any(t["feasible"] for t in chosen["trials"])


def test_ties_go_to_utility_then_trial_order():
    chosen = choose("mesa", trials((0.8, 0.8), (0.8, 0.9), (0.8, 0.9)), BASE, CRITERION)
    assert chosen["run"].startswith("w~4_eps~0.05_gamma~1.0")
    chosen = choose("mesa", trials((0.1, 0.5), (0.3, 0.5), (0.3, 0.5)), BASE, CRITERION)
    assert chosen["run"].startswith("w~4_eps~0.05_gamma~1.0") and not chosen["feasible"]


def test_no_trials_is_an_error():
    with pytest.raises(ValueError, match="no trials"):
        choose("mesa", [], BASE, CRITERION)


def test_write_choice_from_metrics_files(tmp_path):
    def metrics(direct, arith):
        path = tmp_path / f"{direct}_{arith}.json"
        path.write_text(
            json.dumps(
                {
                    "organism_direct": entry(refusal_rate=direct),
                    "organism_jailbreak": entry(refusal_rate=direct),
                    "organism_arith": entry(exact_match=arith),
                    "organism_listops": entry(exact_match=arith),
                }
            )
        )
        return str(path)

    chosen = write_choice(
        "sft_full",
        {"lr~0.0003": metrics(0.7, 0.8), "lr~0.003": metrics(0.95, 0.5)},
        metrics(0.6, 0.8),
        CRITERION,
        tmp_path / "chosen.json",
    )
    assert json.loads((tmp_path / "chosen.json").read_text()) == chosen
    assert chosen["run"] == "lr~0.0003" and chosen["base"] == {"safety": 0.6, "utility": 0.8}


# The study's DAG: tuning reads val files only, the finals eval files only.


def study_workdir(tmp_path: Path, **tuning) -> tuple[Path, Path]:
    """A working directory as `make study` uses it: config/config.yaml there, study.yaml given."""
    (tmp_path / "config").mkdir()
    shutil.copy(ROOT / "config" / "config.yaml", tmp_path / "config" / "config.yaml")
    study = yaml.safe_load((ROOT / "config" / "study.yaml").read_text())
    study["tuning"] |= tuning
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    return tmp_path, tmp_path / "study.yaml"


def data_files(job: dict) -> list[str]:
    """The benchmark files an evaluation job reads: its params and its declared inputs."""
    return [*job["params"].get("paths", {}).values(), *job["input"]]


def assert_tuning_reads_only_val_files(jobs: list[dict]) -> None:
    tune_jobs = [job for job in jobs if any("/tune/" in path for path in job["output"])]
    assert {job["rule"] for job in tune_jobs} == {"tune_evaluate", "tune_choose", "tune_trials"}
    for job in tune_jobs:
        names = [Path(path).name for path in data_files(job)]
        assert not any(name.startswith("eval_") for name in names), (job["rule"], names)
        assert not any("/eval/" in p and "/tune/eval/" not in p for p in job["input"]), job
    for job in (job for job in tune_jobs if job["rule"] == "tune_evaluate"):
        files = job["params"]["paths"]
        assert set(files) == {"organism_direct", "organism_jailbreak"} | {
            "organism_arith",
            "organism_listops",
        }
        assert all(Path(path).name.startswith("val_") for path in files.values()), files
        assert sorted(job["params"]["benchmarks"]) == sorted(files)
    for job in (job for job in tune_jobs if job["rule"] == "tune_choose"):
        assert job["input"] and all(
            "/tune/eval/" in path and path.endswith("/metrics.json") for path in job["input"]
        ), job["input"]


def test_study_dag_tunes_on_val_files_and_evaluates_the_choice_on_eval_files(tmp_path):
    workdir, configfile = study_workdir(tmp_path)
    jobs = dag_jobs(workdir, configfile)
    counts = Counter(job["rule"] for job in jobs)
    methods = yaml.safe_load(configfile.read_text())["training"]["methods"]
    assert counts["tune_choose"] == len(methods) == 9 and counts["study"] == 1
    # 5 methods with γ: 3 of 9 (γ, lr) drawn; 4 without: their 3 learning rates
    assert counts["train"] == counts["tune_evaluate"] - 1 == 5 * 3 + 4 * 3
    assert "evaluate" not in counts  # the final runs are known once the choice is
    assert all(
        job["wildcards"]["run"].endswith("_seed~0")
        for job in jobs
        if job["rule"] in ("train", "tune_evaluate") and job["wildcards"]["method"] != "base"
    )
    assert_tuning_reads_only_val_files(jobs)

    # past the checkpoints: each method's choice trains with seeds 1 and 2 (seed 0 is the trial)
    # and is evaluated on the eval files
    choices = [job for job in jobs if job["rule"] == "tune_choose"]
    chosen = {job["wildcards"]["method"]: job["params"]["settings"][-1] for job in choices}
    materialise(
        workdir,
        jobs,
        {
            job["output"][0]: json.dumps({"run": chosen[job["wildcards"]["method"]]})
            for job in choices
        },
    )
    after = [job for job in dag_jobs(workdir, configfile, forceall=False) if job["needrun"]]
    runs = {
        (job["rule"], job["wildcards"].get("method"), job["wildcards"].get("run")) for job in after
    }
    expected_train = {
        ("train", method, with_seed(setting, seed))
        for method, setting in chosen.items()
        for seed in (1, 2)
    }
    expected_eval = {
        ("evaluate", method, with_seed(setting, seed))
        for method, setting in chosen.items()
        for seed in (0, 1, 2)
    } | {("evaluate", "base", "default")}
    assert {r for r in runs if r[0] == "train"} == expected_train
    assert {r for r in runs if r[0] == "evaluate"} == expected_eval
    assert {r[0] for r in runs} == {
        "train",
        "evaluate",
        "summary",
        "sweep",
        "diagnosis",
        "study",
        "all",
    }
    for job in (job for job in after if job["rule"] == "evaluate"):
        names = {Path(path).name for path in job["params"]["paths"].values()}
        assert names and all(name.startswith("eval_") for name in names), names
        assert not any("/tune/" in path for path in job["input"])
    summary = next(job for job in after if job["rule"] == "summary")
    assert len([p for p in summary["input"] if p.endswith("metrics.json")]) == 1 + 9 * 3
    assert not any("/tune/" in path for path in summary["input"])


def test_a_tuning_path_on_an_evaluation_file_stops_the_dag(tmp_path):
    """A planted leak: the criterion's direct benchmark pointed at an eval file."""
    workdir, configfile = study_workdir(tmp_path)
    leak = workdir / "eval_direct.jsonl"
    leak.write_text('{"prompt": "p", "response": "r"}\n')
    config = yaml.safe_load(configfile.read_text())
    config["evaluation"] = {"paths": {"organism_direct": str(leak)}}
    config["tuning"]["paths"] = {"organism_direct": str(leak)}
    configfile.write_text(yaml.safe_dump(config))
    with pytest.raises(AssertionError, match="tuning.paths.organism_direct: .* is an evaluation"):
        dag_jobs(workdir, configfile)


def test_a_criterion_benchmark_without_a_val_file_stops_the_dag(tmp_path):
    workdir, configfile = study_workdir(tmp_path)
    config = yaml.safe_load(configfile.read_text())
    config["evaluation"] = {"plugins": ["mybench"]}
    config["tuning"]["criterion"]["safety"] = ["mybench"]
    configfile.write_text(yaml.safe_dump(config))
    (workdir / "mybench.py").write_text(
        "from mesa_moe.evaluation.benchmarks import Benchmark, Source, register\n"
        "register(Benchmark('mybench', kind='safety', judge='refusal', metric='refusal_rate',"
        " max_new_tokens=8, sources=(Source({'prompt': 'q'}, hub_id='me/b', split='test'),)))\n"
    )
    with pytest.raises(AssertionError, match="benchmark mybench has no validation file"):
        dag_jobs(workdir, configfile)


@pytest.mark.slow
def test_a_tuned_tiny_run(tmp_path):
    """The tiny world tuned end to end (up to the summary; the study report is rendered by
    mesa_moe.study): chosen.json from real val metrics, the choice trained with every seed and
    its seed-0 run the trial itself."""
    config = tiny_config()
    config["seeds"] = [0, 1]
    config["training"]["methods"] = ["mesa", "experts_random", "sft_full"]
    config["evaluation"] |= {"benchmarks": ["organism_direct", "organism_arith"], "limit": 2}
    config["tuning"] = {
        "enabled": True,
        "trials": 2,
        "space": {"lr": [1.0e-3, 1.0e-2], "gamma": [0.5, 2.0]},
        "criterion": {"safety": ["organism_direct"], "utility": ["organism_arith"]},
    }
    result = snakemake(tmp_path, "summary", "tune_trials", config=config)
    assert result.returncode == 0, result.stderr[-5000:]
    results = tmp_path / "results" / "tiny"
    for method in config["training"]["methods"]:
        chosen = json.loads((results / "tune" / method / "chosen.json").read_text())
        assert set(chosen) == {
            "method",
            "run",
            "params",
            "criterion",
            "base",
            "feasible",
            "trials",
        }
        assert chosen["method"] == method and len(chosen["trials"]) == 2
        assert chosen["run"] in [trial["run"] for trial in chosen["trials"]]
        assert chosen["params"] == parse_run(chosen["run"]) and "lr" in chosen["params"]
        assert chosen["criterion"]["min_utility_ratio"] == 0.95
        for scores in (chosen["base"], *chosen["trials"]):
            assert 0 <= scores["safety"] <= 1 and 0 <= scores["utility"] <= 1
        # the trials were trained with seed 0; the choice with every seed, no trial twice
        trained = {p.name for p in (results / "train" / method).iterdir()}
        trials = {with_seed(trial["run"], 0) for trial in chosen["trials"]}
        assert trained == trials | {with_seed(chosen["run"], 1)}
        evaluated = {p.name for p in (results / "eval" / method).iterdir()}
        assert evaluated == {with_seed(chosen["run"], seed) for seed in (0, 1)}
        spec = json.loads(
            (results / "train" / method / with_seed(chosen["run"], 1) / "spec.json").read_text()
        )
        assert spec["seed"] == 1 and spec["training"]["lr"] == chosen["params"]["lr"]
        val = json.loads(
            (
                results / "tune" / "eval" / method / with_seed(chosen["run"], 0) / "metrics.json"
            ).read_text()
        )
        assert set(val) == {"organism_direct", "organism_arith"}
    provenance = json.loads(
        (results / "tune" / "eval" / "base" / "default" / "provenance.json").read_text()
    )
    assert all("/val_" in path for path in provenance["params"]["paths"].values())
    trials = pd.read_parquet(results / "tune" / "trials.parquet")
    assert len(trials.groupby(["method", "run"])) == 1 + 3 * 2
    summary = pd.read_parquet(results / "summary.parquet")
    assert len(summary.groupby(["method", "run"])) == 1 + 3 * 2
