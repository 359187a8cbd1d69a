import itertools
import json
import os

import mesa_moe.organism.benchmarks  # noqa: F401  (registers the organism's benchmarks)
from mesa_moe.adapters import check_expert_dropout
from mesa_moe.config import (
    ConfigError,
    canonical,
    import_plugins,
    merge_defaults,
    model_architecture,
    validate_config,
)
from mesa_moe.data import read_local_table
from mesa_moe.evaluation.benchmarks import get_benchmark
from mesa_moe.methods import BASE, METHODS
from mesa_moe.organism import DEFAULTS as ORGANISM_DEFAULTS
from mesa_moe.organism.benchmarks import FILES as ORGANISM_FILES
from mesa_moe.runs import format_run, parse_run, with_seed
from mesa_moe.training import OPTIONAL_SETTINGS, RUN_FILES, check_launcher_args
from mesa_moe.tuning import trial_runs

validate_config(config, workflow.source_path("../workflow/schemas/config.schema.yaml"))
config["organism"] = merge_defaults(ORGANISM_DEFAULTS, config["organism"], "organism")

SEED = config["seed"]
SEEDS = config["seeds"]
THREADS = config["threads"]
ORGANISM = config["model"]["source"] == "organism"
SELECTION = config["selection"]
TRAINING = config["training"]
EVALUATION = config["evaluation"]
TUNING = config["tuning"]
TUNING_ON = TUNING["enabled"]
CHAT_KWARGS = canonical(config["model"]["chat_template_kwargs"])

# Path templates: every file a job writes is named here or in its rule, never in the library.
RESULTS = f"results/{config['model']['name']}"
ORGANISM_DIR = f"{RESULTS}/organism"
VENDOR_DIR = f"{ORGANISM_DIR}/vendor"
PROFILE_DIR = f"{RESULTS}/profile"
OT_RUN = "w~{w}_eps~{eps}"
OT_DIR = f"{RESULTS}/select/ot/{OT_RUN}"
SELECT_DIR = f"{RESULTS}/select/{{selector}}/{{run}}"
TRAIN_DIR = f"{RESULTS}/train/{{method}}/{{run}}"
EVAL_DIR = f"{RESULTS}/eval/{{method}}/{{run}}"
TUNE_DIR = f"{RESULTS}/tune"
TUNE_EVAL_DIR = f"{TUNE_DIR}/eval/{{method}}/{{run}}"
CHOSEN = f"{TUNE_DIR}/{{method}}/chosen.json"
LOGS = f"{RESULTS}/logs"


wildcard_constraints:
    w=r"\d+",
    eps=r"[0-9.eE+-]+",


def benchmark_file(rule, *names):
    """results/<model>/benchmarks/<rule>/<names joined by _, or default>.tsv"""
    return f"{RESULTS}/benchmarks/{rule}/{'_'.join(names) or 'default'}.tsv"


def organism_sections(*keys):
    return canonical({key: config["organism"][key] for key in keys})


def base_model_dir():
    """The model every stage starts from: the organism's Base, or the configured folder / hub id."""
    return f"{VENDOR_DIR}/model" if ORGANISM else config["model"]["source"]


def model_spec():
    keys = ("revision", "dtype", "device", "device_map", "chat_template_kwargs")
    return canonical(
        {key: config["model"][key] for key in keys} | {"source": base_model_dir()}
    )


def trained_model_spec():
    """The model settings training reads (the device comes from accelerate, not the config)."""
    return {k: v for k, v in model_spec().items() if k not in ("device", "device_map")}


def model_input(wildcards):
    return {"model": base_model_dir()} if ORGANISM else {}


def organism_file(stem):
    return f"{ORGANISM_DIR}/data/{stem}.jsonl"


def resolved_data(*names):
    """The data config's `names` sections, organism file stems turned into the world's files."""
    data = {}
    for name in names:
        value = config["data"][name]
        if isinstance(value, dict) and value.get("kind") == "organism":
            value = value | {"kind": "local", "path": organism_file(value["path"])}
        data[name] = value
    return canonical(data)


def profile_data():
    return resolved_data("safe", "gen") | canonical(
        {key: config["data"][key] for key in ("stat", "max_length")}
    )


def data_input(wildcards):
    """The data a job reads: the organism's folder, or the configured local files (so editing
    one re-runs what read it)."""
    inputs = {}
    for name in ("safe", "gen"):
        source = config["data"][name]
        if source["kind"] == "organism":
            inputs["data"] = f"{ORGANISM_DIR}/data"
        elif source["kind"] == "local":
            inputs[f"data_{name}"] = source["path"]
    return inputs


# Checks at DAG build: a bad model, data file or benchmark stops the workflow before any job.
if ORGANISM:
    NUM_EXPERTS = config["organism"]["model"]["num_experts"]
    if config["organism"]["vendor"]["experts"] > NUM_EXPERTS:
        raise ConfigError(
            f"config key organism.vendor.experts: {config['organism']['vendor']['experts']} "
            f"> organism.model.num_experts ({NUM_EXPERTS})"
        )
else:
    ARCHITECTURE = model_architecture(
        config["model"]["source"], config["model"]["revision"]
    )
    NUM_EXPERTS = ARCHITECTURE and ARCHITECTURE["num_experts"]
    if config["model"]["revision"] is None and not os.path.exists(
        config["model"]["source"]
    ):
        logger.warning(
            f"config key model.revision is null: every stage reads the default branch of "
            f"{config['model']['source']} as it is when the stage runs, so a push to the hub "
            "between stages would mix two versions (provenance.json records the commit each "
            "stage read, commit_hash). Pin model.revision to a commit for a reproducible run."
        )
    if ARCHITECTURE and TRAINING["expert_dropout"]:
        try:
            check_expert_dropout(ARCHITECTURE["model_type"], "training.expert_dropout")
        except ValueError as error:
            raise ConfigError(str(error)) from None
try:
    check_launcher_args(TRAINING["launcher_args"])
except ValueError as error:
    raise ConfigError(str(error)) from None
for key, values in (
    ("selection.w", SELECTION["w"]),
    ("tuning.space.w", TUNING["space"].get("w", [])),
):
    for w in values:
        if NUM_EXPERTS and w > NUM_EXPERTS:
            raise ConfigError(
                f"config key {key}: {w} experts per layer, but {config['model']['source']} "
                f"has {NUM_EXPERTS} routed experts per MoE layer"
            )
for name in ("safe", "gen"):
    if config["data"][name]["kind"] == "local":
        read_local_table(config["data"][name]["path"], f"data.{name}")
for name, path in EVALUATION["paths"].items():
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        raise ConfigError(
            f"config key evaluation.paths.{name}: {path} is missing or empty"
        )
import_plugins(EVALUATION["plugins"], os.getcwd())
# an unknown benchmark name stops the workflow here, naming the known ones
for name in EVALUATION["benchmarks"]:
    get_benchmark(name)


# Selection: which settings each selector reads (a change re-runs only the selectors it concerns).
SELECTOR_SETTINGS = {
    "ot": ("alpha_shift", "scope", "tau", "max_iter", "tol"),
    "cost_min": ("alpha_shift", "scope"),
    "cost_mid": ("alpha_shift", "scope"),
    "safe_top": ("alpha_shift", "scope"),
    "random": ("alpha_shift", "scope", "seed"),
    "esft": ("alpha_shift",),
    "all": ("alpha_shift",),
}


def selection_params(selector, run):
    """select_experts' keyword arguments: the run's own (w, ε, p) and the selector's settings."""
    names = {"w": "w", "eps": "epsilon", "p": "esft_top_p"}
    settings = {
        key: SELECTION[key] for key in SELECTOR_SETTINGS[selector] if key != "seed"
    }
    if "seed" in SELECTOR_SETTINGS[selector]:
        settings["seed"] = SEED
    return canonical(
        settings | {names[key]: value for key, value in parse_run(run).items()}
    )


def baseline_runs(selector):
    if selector == "all":
        return [format_run()]
    if selector == "esft":
        return [format_run(p=SELECTION["esft_top_p"])]
    return [format_run(w=w) for w in SELECTION["w"]]


def selection_outputs():
    ot = expand(f"{OT_DIR}/experts.parquet", w=SELECTION["w"], eps=SELECTION["epsilon"])
    baselines = [
        f"{SELECT_DIR.format(selector=selector, run=run)}/experts.parquet"
        for selector in SELECTION["selectors"]
        for run in baseline_runs(selector)
    ]
    return ot + baselines


# Training: the methods (mesa_moe.methods) name the parameters of their run folders; every
# setting trains once per seed (run name + seed~N).
TRAIN_METHODS = TRAINING["methods"]
for name in TRAINING["method_lr"]:
    if name not in METHODS:
        raise ConfigError(
            f"config key training.method_lr: {name} is not a method (known: {', '.join(METHODS)})"
        )
RUN_VALUES = {
    "w": SELECTION["w"],
    "eps": SELECTION["epsilon"],
    "gamma": TRAINING["gamma"],
}


def method_lr(method):
    """The method's learning rate: training.method_lr's, else training.lr."""
    return TRAINING["method_lr"].get(method, TRAINING["lr"])


def configured_settings(method):
    """The method's settings from the config lists (run names without a seed)."""
    keys = METHODS[method].run_keys
    return [
        format_run(**dict(zip(keys, values)))
        for values in itertools.product(*(RUN_VALUES[key] for key in keys))
    ]


def final_settings(method):
    """The settings evaluated on the eval files: the config's, or with tuning on the one
    chosen on the val files (known once its tune_choose checkpoint has run)."""
    if not TUNING_ON:
        return configured_settings(method)
    with open(checkpoints.tune_choose.get(method=method).output.chosen) as f:
        return [json.load(f)["run"]]


def train_runs(method):
    return [with_seed(run, seed) for run in final_settings(method) for seed in SEEDS]


def train_outputs(wildcards):
    return [
        f"{TRAIN_DIR.format(method=method, run=run)}/model"
        for method in TRAIN_METHODS
        for run in train_runs(method)
    ]


def selection_file(method, run):
    selector = METHODS[method].selector
    params = parse_run(run)
    if selector == "ot":
        folder = OT_DIR.format(w=params["w"], eps=params["eps"])
    else:
        folder = SELECT_DIR.format(selector=selector, run=format_run(w=params["w"]))
    return f"{folder}/experts.parquet"


def train_input(wildcards):
    inputs = model_input(wildcards) | data_input(wildcards)
    if METHODS[wildcards.method].selector is not None:
        inputs["selection"] = selection_file(wildcards.method, wildcards.run)
    return inputs


TRAINING_SETTINGS = ("steps", "batch_size", "lr", "weight_decay", "warmup", "grad_clip")
TRAINING_SETTINGS += ("checkpoint_every", "log_every", "mixed_precision")
OT_LOSS_SETTINGS = ("reference", "online_cost")


def optional_settings(method):
    """The later-added settings the method reads, each only where it differs from its default:
    a run at the defaults is the run from before they existed, and is not re-run."""
    reads = {
        "safety_flow_tokens": method.ot_loss,
        "router_lr_scale": method.train_routers or method.train_everything,
        "expert_dropout": True,
    }
    return {
        key: TRAINING[key]
        for key, default in OPTIONAL_SETTINGS.items()
        if reads[key] and TRAINING[key] != default
    }


def train_spec(wildcards):
    """The run's training spec less its paths: only what the method reads, so a setting another
    method uses alone never re-runs it."""
    method = METHODS[wildcards.method]
    params = parse_run(wildcards.run)
    keys = TRAINING_SETTINGS + (OT_LOSS_SETTINGS if method.ot_loss else ())
    # a tuning trial's learning rate (in its run name) replaces the method's
    settings = (
        {key: TRAINING[key] for key in keys}
        | optional_settings(method)
        | {"lr": params.get("lr", method_lr(method.name))}
    )
    return canonical(
        {
            "method": method.name,
            "model": trained_model_spec(),
            "data": resolved_data("safe", *(["gen"] if method.ot_loss else []))
            | {key: config["data"][key] for key in ("max_length", "max_dropped_share")},
            "training": settings
            | {"gamma": params.get("gamma", 0.0), "epsilon": params.get("eps")},
            "seed": params["seed"],
        }
    )


def train_output(folder, model=None):
    """The train rule's outputs: RUN_FILES in `folder` but the checkpoints (a job's scratch);
    the model folder at `model` when given."""
    outputs = {
        key: f"{folder}/{name}"
        for key, name in RUN_FILES.items()
        if key != "checkpoints"
    }
    return outputs | {"model": directory(model or outputs["model"])}


# Evaluation: Base and every trained run.
def evaluation_runs():
    """(method, run) of every evaluated model: Base first, then each trained run."""
    return [(BASE, format_run())] + [
        (method, run) for method in TRAIN_METHODS for run in train_runs(method)
    ]


def evaluation_outputs(name):
    return [
        f"{EVAL_DIR.format(method=method, run=run)}/{name}"
        for method, run in evaluation_runs()
    ]


def evaluated_model(wildcards):
    if wildcards.method == BASE:
        return base_model_dir()
    return f"{TRAIN_DIR.format(method=wildcards.method, run=wildcards.run)}/model"


def evaluated_model_spec(wildcards):
    """The Base as configured (hub revision pinned); a trained run from its local folder."""
    if wildcards.method == BASE:
        return model_spec()
    return model_spec() | {"source": evaluated_model(wildcards), "revision": None}


def evaluation_input(wildcards, paths):
    """An evaluation job's inputs: D_stat, the data, the model and the benchmark files
    `paths` (benchmark → local file) the config names."""
    inputs = {"stat": rules.profile.output.stat} | data_input(wildcards)
    inputs |= {f"benchmark_{name}": path for name, path in paths.items()}
    if wildcards.method != BASE or ORGANISM:
        inputs["model"] = evaluated_model(wildcards)
    return inputs


def evaluate_input(wildcards):
    return evaluation_input(wildcards, EVALUATION["paths"])


def benchmark_paths():
    """Benchmark → local file: the organism's eval files, then the config's own paths."""
    paths = (
        {name: organism_file(stem) for name, stem in ORGANISM_FILES.items()}
        if ORGANISM
        else {}
    )
    return canonical(paths | EVALUATION["paths"])


def evaluation_settings():
    keys = ("limit", "batch_size", "backend", "attack_m", "judge", "sandbox")
    return canonical(
        {key: EVALUATION[key] for key in keys}
        | {"seed": SEED, "max_length": config["data"]["max_length"]}
    )


# Tuning (README "Tuning"): trials trained with the first seed, scored on VAL files only.
TRIAL_SEED = SEEDS[0]
TRIAL_FIXED = {
    "w": SELECTION["w"][0],
    "eps": SELECTION["epsilon"][0],
    "gamma": TRAINING["gamma"][0],
}
CRITERION = TUNING["criterion"]
TUNE_BENCHMARKS = list(dict.fromkeys(CRITERION["safety"] + CRITERION["utility"]))


def trial_settings(method):
    """The method's trial settings (run names without a seed), in trial order."""
    fixed = TRIAL_FIXED | {"lr": method_lr(method)}
    return trial_runs(method, TUNING["space"], TUNING["trials"], SEED, fixed)


def tune_metrics(method, setting):
    run = setting if method == BASE else with_seed(setting, TRIAL_SEED)
    return f"{TUNE_EVAL_DIR.format(method=method, run=run)}/metrics.json"


def tune_outputs():
    """The val metrics of the Base and of every method's trials."""
    return [tune_metrics(BASE, format_run())] + [
        tune_metrics(method, setting)
        for method in TRAIN_METHODS
        for setting in trial_settings(method)
    ]


def organism_val_file(benchmark):
    """The world's val file of an organism benchmark (the val twin of its eval_* file)."""
    return organism_file(f"val_{ORGANISM_FILES[benchmark].removeprefix('eval_')}")


def val_paths():
    """Benchmark → VAL file of every criterion benchmark: tuning.paths, else the organism's.
    A benchmark without one, or whose val file is an evaluation file, stops the workflow.
    """
    eval_files = {os.path.realpath(path) for path in benchmark_paths().values()}
    paths = {}
    for name in TUNE_BENCHMARKS:
        get_benchmark(name)
        if name in TUNING["paths"]:
            path = TUNING["paths"][name]
            if not os.path.isfile(path) or os.path.getsize(path) == 0:
                raise ConfigError(
                    f"config key tuning.paths.{name}: {path} is missing or empty"
                )
        elif ORGANISM and name in ORGANISM_FILES:
            path = organism_val_file(name)
        else:
            raise ConfigError(
                f"config key tuning.criterion: benchmark {name} has no validation file; "
                f"name one in tuning.paths.{name} (tuning never reads evaluation files)"
            )
        if os.path.realpath(path) in eval_files:
            raise ConfigError(
                f"config key tuning.paths.{name}: {path} is an evaluation file "
                "(tuning reads validation files only)"
            )
        paths[name] = path
    return canonical(paths)


VAL_PATHS = val_paths() if TUNING_ON else {}


def tune_evaluate_input(wildcards):
    return evaluation_input(wildcards, TUNING["paths"])


def tune_choose_input(wildcards):
    return {
        "base": tune_metrics(BASE, format_run()),
        "trials": [
            tune_metrics(wildcards.method, setting)
            for setting in trial_settings(wildcards.method)
        ],
    }


# training keys that do not change what a method learns (how it runs, or which methods run)
NOT_REPORTED = ("methods", "gpus", "launcher_args", "checkpoint_every", "log_every")


def study_context():
    """What the study report states besides the tables (mesa_moe.study.render_results)."""
    training = {
        key: value for key, value in TRAINING.items() if key not in NOT_REPORTED
    }
    return canonical(
        {
            "model": config["model"]["name"],
            "seeds": SEEDS,
            "tuning": TUNING,
            "training": training,
        }
    )
