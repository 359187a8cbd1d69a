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
from dag import dag_jobs
from safetensors.torch import load_file
from tiny import TINY, TINY_CONFIG

from mesa_moe.methods import METHODS
from mesa_moe.profiling import ACTIVATION_COLUMNS, COACTIVATION_COLUMNS
from mesa_moe.selection import EXPERT_COLUMNS, read_plan

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]


def tiny_config(**selection) -> dict:
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["selection"] |= selection
    return config


def snakemake(workdir: Path, *args: str, config: dict | None = None) -> subprocess.CompletedProcess:
    """Snakemake in `workdir` with config/test/tiny.yaml, or `config` when given, as
    --configfile."""
    configfile = TINY_CONFIG
    if config is not None:
        configfile = workdir / "config.yaml"
        configfile.write_text(yaml.safe_dump(config))
    # args first: --configfile takes every value after it
    return subprocess.run(
        SNAKEMAKE
        + ["--directory", str(workdir), "--cores", "2", *args, "--configfile", str(configfile)],
        capture_output=True,
        text=True,
        timeout=1200,
    )


def planned_jobs(dry_run_output: str) -> dict[str, int]:
    """Rule → job count from the 'Job stats' table of a dry run ({} when nothing is to be done)."""
    if "Job stats:" not in dry_run_output:
        assert "Nothing to be done" in dry_run_output, dry_run_output[-3000:]
        return {}
    table = dry_run_output.split("Job stats:")[1].split("total")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The tiny config run as the README says: snakemake --configfile config/test/tiny.yaml."""
    workdir = tmp_path_factory.mktemp("workflow")
    result = snakemake(workdir)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir, workdir / "results" / "tiny"


@pytest.mark.slow
def test_organism_stages(run):
    _, results = run
    for stage in ("base", "vendor/model"):
        model = results / "organism" / stage
        assert (model / "config.json").exists() and (model / "tokenizer.json").exists()
    vendor = results / "organism" / "vendor"
    metrics = json.loads((vendor / "metrics.json").read_text())
    assert {"arith_accuracy", "harmful_compliance", "jailbreak_compliance"} <= metrics.keys()
    assert "harmful_compliance" in (results / "logs" / "organism_base.log").read_text()
    # the vendor's SFT ran as the workflow's own profile, select and train stages
    experts = pd.read_parquet(vendor / "select" / "experts.parquet")
    assert experts.groupby("layer").selected.sum().eq(TINY["vendor"]["experts"]).all()
    spec = json.loads((vendor / "train" / "spec.json").read_text())
    assert spec["method"] == "experts_safe_top" and spec["training"]["steps"] == 4
    assert spec["paths"]["model"] == "results/tiny/organism/vendor/model"
    assert pd.read_csv(vendor / "train" / "train_log.csv").step.tolist() == [1, 2, 3, 4]
    direct = pd.read_json(vendor / "data" / "direct.jsonl", lines=True)
    assert not direct.wrapper.any() and (direct.task == "harmful").any()


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
    assert (
        coactivation.groupby(["layer", "i"])["count"].sum().to_numpy() == top_k * mix.to_numpy()
    ).all()
    provenance = json.loads((results / "profile" / "provenance.json").read_text())
    assert provenance["model"]["model_type"] == "qwen2_moe"  # the tiny organism has a shared expert
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
    for selector, run_name in (
        ("cost_min", "w~2"),
        ("cost_mid", "w~2"),
        ("safe_top", "w~2"),
        ("random", "w~2"),
        ("esft", "p~0.2"),
        ("all", "default"),
    ):
        table = pd.read_parquet(results / "select" / selector / run_name / "experts.parquet")
        assert list(table.columns) == EXPERT_COLUMNS, selector


def changed_parameters(before: dict, after: dict) -> dict[str, set]:
    """Which routers, (layer, expert) pairs and other tensors differ between two checkpoints
    (saved experts are per-expert tensors: model.layers.<l>.mlp.experts.<e>.<proj>.weight)."""
    changed = {"router": set(), "experts": set(), "other": set()}
    for name, tensor in before.items():
        if after[name].shape == tensor.shape and bool((after[name] == tensor).all()):
            continue
        if expert := re.match(r"model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.", name):
            changed["experts"].add((int(expert[1]), int(expert[2])))
        else:
            changed["router" if ".mlp.gate." in name else "other"].add(name)
    return changed


@pytest.mark.slow
def test_every_method_trains_what_it_defines(run):
    """Every method of mesa_moe.methods through the workflow: the parameters that changed in its
    model are the ones its definition trains (compared with the Base it started from)."""
    workdir, results = run
    base = load_file(results / "organism" / "vendor" / "model" / "model.safetensors")
    assert set(tiny_config()["training"]["methods"]) == set(METHODS)
    for name, method in METHODS.items():
        runs = [p for p in (results / "train" / name).iterdir() if p.is_dir()]
        assert [p.name for p in runs] == [
            "_".join([*(f"{k}~{v}" for k, v in zip(method.run_keys, (2, 0.05, 1.0))), "seed~0"])
        ], name
        assert pd.read_csv(runs[0] / "train_log.csv").step.tolist() == [1, 2, 3]
        changed = changed_parameters(base, load_file(runs[0] / "model" / "model.safetensors"))
        assert bool(changed["router"]) == (method.train_routers or method.train_everything), name
        assert bool(changed["other"]) == method.train_everything, name
        if method.train_experts:
            spec = json.loads((runs[0] / "spec.json").read_text())
            table = pd.read_parquet(workdir / spec["selection"])
            selected = set(map(tuple, table[table.selected][["layer", "expert"]].to_numpy()))
            assert changed["experts"] and changed["experts"] <= selected, name
        elif method.train_all_experts or method.train_everything:
            assert len(changed["experts"]) > 2 * TINY["model"]["num_layers"], name
        else:
            assert not changed["experts"], name
        log = pd.read_csv(runs[0] / "train_log.csv")
        assert (log.ot_safe > 0).all() == method.ot_loss, name


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
    metrics = json.loads(
        (results / "eval" / "mesa" / "w~2_eps~0.05_gamma~1.0_seed~0" / "metrics.json").read_text()
    )
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
    # mesa, experts_ot, router_only train on the new OT selection; experts_cmax, experts_cmid,
    # experts_random use the new ε in L_OT
    assert jobs.get("train") == 6


def test_schema_error_stops_before_any_job(tmp_path):
    config = tiny_config()
    config["selection"]["tau"] = "1e-4"
    result = snakemake(tmp_path, "-n", config=config)
    assert result.returncode != 0
    assert "selection.tau" in result.stderr + result.stdout


def test_lint_is_clean():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--lint",
            "--snakefile",
            str(ROOT / "Snakefile"),
            "--directory",
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def declared_files(workdir: Path) -> tuple[set[str], set[str]]:
    """Output files and log files of every job of the DAG, from `snakemake --detailed-summary`."""
    result = snakemake(workdir, "--detailed-summary")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    header = lines[0].split("\t")
    rows = [dict(zip(header, line.split("\t"))) for line in lines[1:]]
    outputs = {row["output_file"] for row in rows}
    logs = {log for row in rows for log in row["log-file(s)"].split(",") if log and log != "-"}
    return outputs, logs


@pytest.mark.slow
def test_no_job_writes_an_undeclared_file(run):
    """Every file under results/ is a declared output (or inside a declared folder), a log, or
    the benchmark of a job; and Snakemake's summary knows each output as up to date."""
    workdir, results = run
    outputs, logs = declared_files(workdir)
    folders = [path for path in outputs if (workdir / path).is_dir()]
    rules = set(planned_jobs(snakemake(workdir, "-n", "--forceall").stdout))
    for path in results.rglob("*"):
        if path.is_dir():
            continue
        name = str(path.relative_to(workdir))
        in_folder = any(name.startswith(folder + "/") for folder in folders)
        benchmark = re.fullmatch(r"results/tiny/benchmarks/(\w+)/[^/]+\.tsv", name)
        assert (
            name in outputs or name in logs or in_folder or (benchmark and benchmark[1] in rules)
        ), f"{name}: written but not declared"
    benchmarks = list((results / "benchmarks").rglob("*.tsv"))
    assert (
        len(benchmarks)
        == sum(planned_jobs(snakemake(workdir, "-n", "--forceall").stdout).values()) - 1
    )  # every job but `all`
    assert not list(results.rglob("checkpoints"))  # a finished run keeps no resume state


@pytest.mark.slow
def test_list_changes_finds_nothing_after_a_run(run):
    """(`--list-changes params` lists every job's files in Snakemake 9, changed or not; the
    params trigger is tested by dry runs below.)"""
    workdir, _ = run
    for trigger in ("input", "code"):
        result = snakemake(workdir, "--list-changes", trigger)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "results/" not in result.stdout, (trigger, result.stdout[-2000:])


# after any evaluation: the summary, the sweep and the diagnosis (which reads every evaluation)
REPORTS = {"summary": 1, "sweep": 1, "diagnosis": 1, "all": 1}
ALL_TRAIN = {"train": 9, "evaluate": 9} | REPORTS
OT_LOSS = {"train": 5, "evaluate": 5} | REPORTS
# every method but experts_ot trains its routers (sft_full among all its parameters)
ROUTERS_TRAIN = {"train": 8, "evaluate": 8} | REPORTS
ALL_EVAL = {"evaluate": 10} | REPORTS
ON_OT_PLAN = {"select": 1, "train": 3, "evaluate": 3} | REPORTS
COST_BASED = {"select": 1, "select_baseline": 6, "train": 7, "evaluate": 7} | REPORTS
ONE_METHOD = {"train": 1, "evaluate": 1} | REPORTS


@pytest.mark.slow
@pytest.mark.parametrize(
    "section, key, value, expected",
    [
        ("training", "steps", 4, ALL_TRAIN),
        ("training", "lr", 5.0e-4, ALL_TRAIN),
        ("training", "method_lr", {"experts_all": 3.0e-4}, ONE_METHOD),
        ("training", "method_lr", {"experts_all": 1.0e-3}, {}),  # its own lr = training.lr
        ("training", "warmup", 2, ALL_TRAIN),
        ("training", "batch_size", 2, ALL_TRAIN),
        ("training", "weight_decay", 0.1, ALL_TRAIN),
        ("data", "max_dropped_share", 0.2, ALL_TRAIN),
        ("training", "reference", "base_forward", OT_LOSS),
        ("training", "online_cost", "global", OT_LOSS),
        ("training", "safety_flow_tokens", "response", OT_LOSS),
        ("training", "safety_flow_tokens", "all", {}),
        ("training", "router_lr_scale", 0.5, ROUTERS_TRAIN),
        ("training", "router_lr_scale", 1.0, {}),
        ("training", "expert_dropout", 0.1, ALL_TRAIN),
        ("training", "expert_dropout", 0.0, {}),
        ("selection", "tau", 0.0, ON_OT_PLAN),
        ("selection", "max_iter", 500, ON_OT_PLAN),
        ("selection", "alpha_shift", 2.0, COST_BASED),
        ("evaluation", "limit", 3, ALL_EVAL),
        ("evaluation", "attack_m", [0, 2], ALL_EVAL),
        ("evaluation", "batch_size", 4, ALL_EVAL),
    ],
)
def test_a_changed_setting_reruns_exactly_what_reads_it(run, section, key, value, expected):
    workdir, _ = run
    config = tiny_config()
    config[section][key] = value
    result = snakemake(workdir, "-n", config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    assert planned_jobs(result.stdout) == expected


@pytest.mark.slow
def test_later_training_settings_at_their_defaults_leave_the_spec_as_before(run):
    """A run at the defaults of safety_flow_tokens, router_lr_scale and expert_dropout has the
    spec (the train rule's params) of a run from before they existed: such runs are not re-run."""
    workdir, _ = run
    specs = sorted(workdir.glob("results/tiny/**/spec.json"))
    assert len(specs) >= 9
    for path in specs:
        training = json.loads(path.read_text())["training"]
        assert not {"safety_flow_tokens", "router_lr_scale", "expert_dropout"} & set(training), path


def reordered(value):
    if isinstance(value, dict):
        return {key: reordered(value[key]) for key in reversed(list(value))}
    return value


@pytest.mark.slow
def test_same_config_in_another_key_order_reruns_nothing(run):
    workdir, _ = run
    result = snakemake(workdir, "-n", config=reordered(tiny_config()))
    assert result.returncode == 0, result.stderr[-3000:]
    assert planned_jobs(result.stdout) == {}


README_BENCHMARK = """
from mesa_moe.evaluation.benchmarks import Benchmark, Source, register

register(Benchmark("mybench", kind="safety", judge="refusal", metric="refusal_rate",
                   max_new_tokens=8, sources=(Source({"prompt": "question"},
                   hub_id="me/mybench", split="test"),)))
"""


@pytest.mark.slow
def test_a_benchmark_added_as_the_readme_says(run):
    """README, "Adding a benchmark": a module registering it, named in evaluation.plugins."""
    workdir, results = run
    (workdir / "mybench.py").write_text(README_BENCHMARK)
    (workdir / "mybench.jsonl").write_text(
        "".join(json.dumps({"question": f"How do I pick lock {i}?"}) + "\n" for i in range(3))
    )
    config = tiny_config()
    config["evaluation"] |= {
        "plugins": ["mybench"],
        "benchmarks": ["mybench"],
        "paths": {"mybench": "mybench.jsonl"},
    }
    target = "results/tiny/eval/base/default/metrics.json"
    result = snakemake(workdir, target, config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((workdir / target).read_text())
    assert metrics["mybench"]["n"] == 3 and "refusal_rate" in metrics["mybench"]["scores"]
    config["evaluation"]["plugins"] = []
    result = snakemake(workdir, "-n", config=config)
    assert result.returncode != 0 and "mybench" in result.stdout + result.stderr


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model": {"name": "m", "source": "models/none"}}, "not a hub id either"),
        ({"model": {"name": "m", "source": "dense"}}, "'llama' is not supported"),
        ({"selection": {"w": [9]}}, "config key selection.w: 9 experts per layer"),
        (
            {"data": {"safe": {"kind": "local", "path": "bad.jsonl"}}},
            "bad.jsonl line 2 is not JSON",
        ),
        (
            {"data": {"gen": {"kind": "local", "path": "empty.jsonl"}}},
            "data.gen.path: empty.jsonl is empty",
        ),
        ({"training": {"methods": []}}, "config key training.methods: [] should be non-empty"),
        (
            {"training": {"method_lr": {"mesa_v2": 1.0e-3}}},
            "config key training.method_lr: mesa_v2 is not a method",
        ),
        (
            {"model": {"name": "m", "source": "v3"}, "training": {"expert_dropout": 0.1}},
            "config key training.expert_dropout: expert dropout re-implements",
        ),
        (
            {"training": {"gpus": 2, "launcher_args": "--use_fsdp --fsdp_sharding_strategy 1"}},
            "training.launcher_args: ['--use_fsdp', '--fsdp_sharding_strategy'] asks for sharded",
        ),
    ],
)
def test_bad_model_data_or_setting_stops_the_dag(tmp_path, change, message):
    (tmp_path / "models").mkdir()
    (tmp_path / "dense").mkdir()
    (tmp_path / "dense" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "v3").mkdir()
    (tmp_path / "v3" / "config.json").write_text(
        json.dumps({"model_type": "deepseek_v3", "n_routed_experts": 8})
    )
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a", "response": "b"}\n{"prompt": \n')
    (tmp_path / "empty.jsonl").write_text("")
    config = tiny_config()
    for section, value in change.items():
        config[section] = value if section == "model" else config[section] | value
    result = snakemake(tmp_path, "-n", config=config)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr, (result.stdout + result.stderr)[-3000:]


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
        (w, eps, gamma) for w in (2, 3) for eps in (0.05, 0.5) for gamma in (0.5, 1.0)
    )
    assert sweep.pareto.any() and {"safety", "utility"} <= set(sweep.columns)
    assert (results / "train" / "mesa" / "w~3_eps~0.5_gamma~0.5_seed~0" / "model").is_dir()
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
        result = subprocess.run(
            SNAKEMAKE
            + [
                "--directory",
                str(ROOT),
                "-n",
                "--configfile",
                str(ROOT / "config" / f"{name}.yaml"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        jobs = planned_jobs(result.stdout + result.stderr)
        # experts_all and sft_full fit no GPU at these sizes (README "Memory")
        assert jobs["train"] == 6 and jobs["evaluate"] == 7 and "organism_base" not in jobs
        # an unpinned hub model is named before any job: each stage would read the hub's head
        assert "config key model.revision is null" in result.stdout + result.stderr


@pytest.mark.parametrize("name", ["deepseek-v2-lite", "qwen3-30b-a3b"])
def test_example_configs_train_with_their_own_settings(name):
    """A --configfile is merged over config/config.yaml, whose method_lr and expert_dropout were
    chosen for the organism: neither may reach a real model's training (every method at the
    config's lr, no expert dropout)."""
    path = ROOT / "config" / f"{name}.yaml"
    own = yaml.safe_load(path.read_text())["training"]
    # in the repository, as users run it: config/config.yaml is read first
    specs = [job["params"]["spec"] for job in dag_jobs(ROOT, path) if job["rule"] == "train"]
    assert len(specs) == 6
    for spec in specs:
        assert spec["training"]["lr"] == own["lr"], spec["method"]
        assert spec["training"]["steps"] == own["steps"], spec["method"]
        assert spec["training"].get("expert_dropout", 0) == 0, spec["method"]


def test_a_failing_script_leaves_its_traceback_in_the_log(tmp_path):
    """What workflow scripts do first: setup_logging(log). An uncaught error reaches the log."""
    log = tmp_path / "logs" / "job.log"
    script = (
        "import sys, warnings\nfrom mesa_moe.logs import setup_logging\n"
        f"setup_logging({str(log)!r}).info('started')\n"
        "print('progress 50%', file=sys.stderr)\nwarnings.warn('odd input')\n"
        "raise ValueError('data.safe: bad row')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    text = log.read_text()
    for line in (
        "started",
        "progress 50%",
        "odd input",
        "Traceback",
        "ValueError: data.safe: bad row",
    ):
        assert line in text and line in result.stderr, line
