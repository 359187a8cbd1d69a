"""The workflow end to end on the tiny organism: files, schemas, numbers, caching, lint."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mesa_moe.organism import TINY
from mesa_moe.profiling import ACTIVATION_COLUMNS, COACTIVATION_COLUMNS
from mesa_moe.selection import EXPERT_COLUMNS, read_plan

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]
# Every method trains in tests/test_training.py; here a subset keeps the run short.
METHODS = ["mesa", "experts_ot", "router_only", "sft_full"]


def tiny_config(**selection) -> dict:
    return {
        "seed": 0,
        "model": {"name": "tiny", "source": "organism"},
        "organism": TINY,
        "data": {"safe": {"kind": "organism", "path": "d_safe"},
                 "gen": {"kind": "organism", "path": "d_gen"},
                 "stat": {"size": 40}, "max_length": 96},  # the tiny world's prompts reach 82
        "profile": {"batch_size": 16},
        "selection": {"w": [2], "epsilon": [0.05]} | selection,
        "training": {"methods": METHODS, "steps": 3, "batch_size": 4, "checkpoint_every": 2,
                     "log_every": 1, "warmup": 1},
        "evaluation": {"limit": 4, "batch_size": 8, "attack_m": [0, 1]},
    }


def snakemake(workdir: Path, *args: str, config: dict | None = None) -> subprocess.CompletedProcess:
    if config is not None:
        (workdir / "config").mkdir(exist_ok=True)
        (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return subprocess.run(SNAKEMAKE + ["--directory", str(workdir), "--cores", "2", *args],
                          capture_output=True, text=True, timeout=1200)


def planned_jobs(dry_run_output: str) -> dict[str, int]:
    """Rule → job count from the 'Job stats' table of a dry run."""
    table = dry_run_output.split("Job stats:")[1].split("total")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    result = snakemake(workdir, config=tiny_config())
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir, workdir / "results" / "tiny"


@pytest.mark.slow
def test_organism_stages(run):
    _, results = run
    for stage in ("base", "vendor/model"):
        model = results / "organism" / stage
        assert (model / "config.json").exists() and (model / "tokenizer.json").exists()
    metrics = json.loads((results / "organism" / "vendor" / "metrics.json").read_text())
    assert {"arith_accuracy", "harmful_compliance", "jailbreak_compliance"} <= metrics.keys()
    assert "harmful_compliance" in (results / "logs" / "organism_base.log").read_text()


@pytest.mark.slow
def test_profile_tables(run):
    _, results = run
    activations = pd.read_parquet(results / "profile" / "activations.parquet")
    coactivation = pd.read_parquet(results / "profile" / "coactivation.parquet")
    assert list(activations.columns) == ACTIVATION_COLUMNS
    assert list(coactivation.columns) == COACTIVATION_COLUMNS
    experts, top_k = TINY["model"]["num_experts"], TINY["model"]["top_k"]
    layers = sorted(activations.layer.unique())
    assert layers == list(range(TINY["model"]["num_layers"]))
    assert len(activations) == len(layers) * experts * 3
    assert len(coactivation) == len(layers) * experts * experts
    sums = activations.groupby(["layer", "source"]).freq.sum()
    np.testing.assert_allclose(sums, 1.0)  # every token picks exactly k experts
    mix = activations[activations.source == "mix"].set_index(["layer", "expert"])["count"]
    parts = activations[activations.source != "mix"].groupby(["layer", "expert"])["count"].sum()
    pd.testing.assert_series_equal(mix, parts, check_names=False)
    diagonal = coactivation[coactivation.i == coactivation.j].set_index(["layer", "i"])["count"]
    np.testing.assert_array_equal(diagonal.to_numpy(), mix.to_numpy())
    assert (coactivation.groupby(["layer", "i"])["count"].sum().to_numpy()
            == top_k * mix.to_numpy()).all()
    provenance = json.loads((results / "profile" / "provenance.json").read_text())
    assert provenance["model"]["model_type"] == "qwen3_moe"
    assert provenance["packages"]["torch"] and provenance["seed"] == 0
    stat = pd.read_json(results / "profile" / "d_stat.jsonl", lines=True)
    assert stat.source.value_counts().to_dict() == {"safe": 20, "gen": 20}


@pytest.mark.slow
def test_selection_outputs(run):
    _, results = run
    ot = results / "select" / "ot" / "w~2_eps~0.05"
    experts = pd.read_parquet(ot / "experts.parquet")
    assert list(experts.columns) == EXPERT_COLUMNS
    assert experts.groupby("layer").selected.sum().eq(2).all()
    layers, pi = read_plan(ot / "plan.npz")
    assert list(layers) == sorted(experts.layer.unique())
    row_sums = pi.sum(axis=2).ravel()
    np.testing.assert_allclose(row_sums, experts.sort_values(["layer", "expert"]).p_safe, atol=1e-6)
    for figure in ("selection.png", "cost_curve.png"):
        assert (ot / figure).read_bytes()[:4] == b"\x89PNG"
    for selector, run_name in (("cost_min", "w~2"), ("cost_mid", "w~2"), ("safe_top", "w~2"),
                               ("random", "w~2"), ("esft", "p~0.2"), ("all", "default")):
        table = pd.read_parquet(results / "select" / selector / run_name / "experts.parquet")
        assert list(table.columns) == EXPERT_COLUMNS, selector


@pytest.mark.slow
def test_every_method_trained(run):
    _, results = run
    for method in METHODS:
        runs = [p for p in (results / "train" / method).iterdir() if p.is_dir()]
        assert len(runs) == 1, method
        assert (runs[0] / "model" / "config.json").exists()
        log = pd.read_csv(runs[0] / "train_log.csv")
        assert log.step.tolist() == [1, 2, 3]
    assert (results / "train" / "mesa" / "w~2_eps~0.05_gamma~1.0").is_dir()
    assert (results / "train" / "sft_full" / "default").is_dir()


@pytest.mark.slow
def test_evaluation_and_summary(run):
    _, results = run
    table = pd.read_parquet(results / "summary.parquet")
    assert set(table.method) == {"base", *METHODS}
    assert {"organism_direct", "organism_routing_attack", "organism_arith"} <= set(table.benchmark)
    assert set(table[table.benchmark == "organism_routing_attack"].metric) == {"asr_m0", "asr_m1"}
    assert table.value.between(0, 1).all()
    markdown = (results / "summary.md").read_text()
    assert all(f"| {method} " in markdown for method in ("base", *METHODS))
    metrics = json.loads((results / "eval" / "mesa" / "w~2_eps~0.05_gamma~1.0" / "metrics.json").read_text())
    assert metrics["organism_direct"]["n"] == 4
    for figure in ("safety_vs_utility.png", "safety_sparsity.png"):
        assert (results / figure).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_second_run_does_nothing(run):
    workdir, _ = run
    result = snakemake(workdir, "-n")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Nothing to be done" in result.stdout + result.stderr


@pytest.mark.slow
def test_new_epsilon_reuses_the_profile(run):
    workdir, _ = run
    config = tiny_config(epsilon=[0.05, 0.5])
    result = snakemake(workdir, "-n", config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result.stdout + result.stderr)
    assert jobs.get("select") == 1 and "profile" not in jobs and "organism_base" not in jobs
    assert jobs.get("train") == 3  # mesa, experts_ot, router_only use the OT selection
    snakemake(workdir, "-n", config=tiny_config())  # restore


def test_schema_error_stops_before_any_job(tmp_path):
    config = tiny_config()
    config["selection"]["tau"] = "1e-4"
    result = snakemake(tmp_path, "-n", config=config)
    assert result.returncode != 0
    assert "selection.tau" in result.stderr + result.stdout


def test_lint_is_clean():
    result = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "--snakefile",
                             str(ROOT / "Snakefile"), "--directory", str(ROOT)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.slow
def test_sweep_2x2x2(run):
    """w × ε × γ = 2 × 2 × 2 on the same world: job counts per rule, then the run itself."""
    workdir, results = run
    config = tiny_config(w=[2, 3], epsilon=[0.05, 0.5])
    config["training"] |= {"methods": ["mesa", "experts_ot"], "gamma": [0.5, 1.0]}
    config["evaluation"] |= {"benchmarks": ["organism_direct", "organism_arith"], "limit": 2}
    dry = snakemake(workdir, "-n", "--forceall", config=config)
    assert dry.returncode == 0, dry.stderr[-3000:]
    jobs = planned_jobs(dry.stdout + dry.stderr)
    assert jobs["profile"] == 1 and jobs["select"] == 4
    assert jobs["train"] == 8 + 4  # mesa: every (w, ε, γ); experts_ot: every (w, ε)
    assert jobs["evaluate"] == 1 + 12 and jobs["sweep"] == 1
    result = snakemake(workdir, config=config)
    assert result.returncode == 0, result.stderr[-5000:]
    sweep = pd.read_parquet(results / "sweep.parquet")
    mesa = sweep[sweep.method == "mesa"]
    assert sorted(zip(mesa.w, mesa.eps, mesa.gamma)) == sorted(
        (w, eps, gamma) for w in (2, 3) for eps in (0.05, 0.5) for gamma in (0.5, 1.0))
    assert sweep.pareto.any() and {"safety", "utility"} <= set(sweep.columns)
    assert (results / "train" / "mesa" / "w~3_eps~0.5_gamma~0.5" / "model").is_dir()
    for figure in ("w", "eps", "gamma", "pareto"):
        assert (results / "sweep" / f"{figure}.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_report(run):
    workdir, _ = run
    result = snakemake(workdir, "--report", str(workdir / "report.html"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (workdir / "report.html").stat().st_size > 10_000


def test_example_configs_dry_run(tmp_path):
    for name in ("deepseek-v2-lite", "qwen3-30b-a3b"):
        result = subprocess.run(SNAKEMAKE + ["--directory", str(ROOT), "-n", "--configfile",
                                             str(ROOT / "config" / f"{name}.yaml")],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        jobs = planned_jobs(result.stdout + result.stderr)
        assert jobs["train"] == 8 and jobs["evaluate"] == 9 and "organism_base" not in jobs
