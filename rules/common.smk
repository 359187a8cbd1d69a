from pathlib import Path

from mesa_moe.config import merge_defaults, validate_config
from mesa_moe.organism import DEFAULTS as ORGANISM_DEFAULTS
from mesa_moe.evaluation.benchmarks import get_benchmark
from mesa_moe.organism.benchmarks import FILES as ORGANISM_FILES
from mesa_moe.runs import format_run, parse_run

validate_config(config, workflow.source_path("../workflow/schemas/config.schema.yaml"))
config["organism"] = merge_defaults(ORGANISM_DEFAULTS, config["organism"], "organism")

RESULTS = f"results/{config['model']['name']}"
ORGANISM = config["model"]["source"] == "organism"
SELECTION = config["selection"]


wildcard_constraints:
    w=r"\d+",
    eps=r"[0-9.eE+-]+",


def organism_sections(*keys):
    return {key: config["organism"][key] for key in keys}


def base_model_dir():
    """The model every stage starts from: the organism's Base, or the configured folder / hub id."""
    return f"{RESULTS}/organism/vendor/model" if ORGANISM else config["model"]["source"]


def model_spec():
    keys = ("revision", "dtype", "device", "device_map", "chat_template_kwargs")
    return {key: config["model"][key] for key in keys} | {"source": base_model_dir()}


def model_input(wildcards):
    return {"model": base_model_dir()} if ORGANISM else {}


def resolved_data():
    """The data config with organism file stems turned into the organism's JSONL files."""
    data = {
        key: dict(value) if isinstance(value, dict) else value
        for key, value in config["data"].items()
    }
    for name in ("safe", "gen"):
        if data[name]["kind"] == "organism":
            data[name] |= {
                "kind": "local",
                "path": f"{RESULTS}/organism/data/{data[name]['path']}.jsonl",
            }
    return data


def data_input(wildcards):
    return (
        {"data": f"{RESULTS}/organism/data"}
        if any(config["data"][name]["kind"] == "organism" for name in ("safe", "gen"))
        else {}
    )


def baseline_runs(selector):
    if selector == "all":
        return [format_run()]
    if selector == "esft":
        return [format_run(p=SELECTION["esft_top_p"])]
    return [format_run(w=w) for w in SELECTION["w"]]


def selection_outputs():
    ot = expand(
        f"{RESULTS}/select/ot/w~{{w}}_eps~{{eps}}/experts.parquet",
        w=SELECTION["w"],
        eps=SELECTION["epsilon"],
    )
    baselines = [
        f"{RESULTS}/select/{selector}/{run}/experts.parquet"
        for selector in SELECTION["selectors"]
        for run in baseline_runs(selector)
    ]
    return ot + baselines


def selection_params(**overrides):
    keys = ("tau", "alpha_shift", "scope", "esft_top_p", "max_iter", "tol")
    return {key: SELECTION[key] for key in keys} | {"seed": config["seed"]} | overrides


def run_params(run):
    """select_experts' keyword arguments named by a baseline run folder."""
    names = {"w": "w", "p": "esft_top_p"}
    return {names[key]: value for key, value in parse_run(run).items()}


TRAINING = config["training"]
TRAIN_METHODS = TRAINING["methods"]
# Which selection each method trains (or takes its online cost from); None: no selection.
METHOD_SELECTOR = {
    "mesa": "ot",
    "experts_ot": "ot",
    "router_only": "ot",
    "experts_cmax": "cost_min",
    "experts_cmid": "cost_mid",
    "experts_safe_top": "safe_top",
    "experts_all": None,
    "sft_full": None,
}
METHODS_WITH_OT_LOSS = {"mesa", "router_only", "experts_cmax", "experts_cmid"}


def train_runs(method):
    """Run folders of a method: only the parameters the method uses name it."""
    selector = METHOD_SELECTOR[method]
    if selector is None:
        return [format_run()]
    uses_ot_loss = method in METHODS_WITH_OT_LOSS
    epsilons = SELECTION["epsilon"] if selector == "ot" or uses_ot_loss else [None]
    gammas = TRAINING["gamma"] if uses_ot_loss else [None]
    return [
        format_run(
            **{k: v for k, v in (("w", w), ("eps", eps), ("gamma", g)) if v is not None}
        )
        for w in SELECTION["w"]
        for eps in epsilons
        for g in gammas
    ]


def train_outputs():
    return [
        f"{RESULTS}/train/{method}/{run}/model"
        for method in TRAIN_METHODS
        for run in train_runs(method)
    ]


def selection_file(method, run):
    selector = METHOD_SELECTOR[method]
    params = parse_run(run)
    if selector == "ot":
        return (
            f"{RESULTS}/select/ot/w~{params['w']}_eps~{params['eps']}/experts.parquet"
        )
    return f"{RESULTS}/select/{selector}/{format_run(w=params['w'])}/experts.parquet"


def train_input(wildcards):
    inputs = model_input(wildcards) | data_input(wildcards)
    if METHOD_SELECTOR[wildcards.method] is not None:
        inputs["selection"] = selection_file(wildcards.method, wildcards.run)
    return inputs


def train_spec(wildcards, input, output):
    params = parse_run(wildcards.run)
    keys = (
        "steps",
        "batch_size",
        "lr",
        "weight_decay",
        "warmup",
        "grad_clip",
        "reference",
        "online_cost",
        "checkpoint_every",
        "log_every",
        "mixed_precision",
    )
    return {
        "method": wildcards.method,
        "model": model_spec(),
        "selection": input.get("selection"),
        "data": resolved_data(),
        "training": {key: TRAINING[key] for key in keys}
        | {
            "gamma": params.get("gamma", 0.0),
            "epsilon": params.get("eps", SELECTION["epsilon"][0]),
        },
        "seed": config["seed"],
        "out_dir": str(Path(output.model).parent),
    }


EVALUATION = config["evaluation"]
for name in EVALUATION["benchmarks"]:
    get_benchmark(
        name
    )  # an unknown name stops the workflow here, naming the known ones


def evaluation_runs():
    """(method, run) of every evaluated model: Base first, then each trained run."""
    return [("base", format_run())] + [
        (method, run) for method in TRAIN_METHODS for run in train_runs(method)
    ]


def evaluation_outputs():
    return [
        f"{RESULTS}/eval/{method}/{run}/metrics.json"
        for method, run in evaluation_runs()
    ]


def evaluated_model(wildcards):
    if wildcards.method == "base":
        return base_model_dir()
    return f"{RESULTS}/train/{wildcards.method}/{wildcards.run}/model"


def evaluated_model_spec(wildcards):
    """The Base as configured (hub revision pinned); a trained run from its local folder."""
    if wildcards.method == "base":
        return model_spec()
    return model_spec() | {"source": evaluated_model(wildcards), "revision": None}


def evaluate_input(wildcards):
    inputs = {"stat": rules.profile.output.stat} | data_input(wildcards)
    if wildcards.method != "base" or ORGANISM:
        inputs["model"] = evaluated_model(wildcards)
    return inputs


def benchmark_paths():
    """Benchmark → local file: the organism's eval files, then the config's own paths."""
    paths = (
        {
            name: f"{RESULTS}/organism/data/{stem}.jsonl"
            for name, stem in ORGANISM_FILES.items()
        }
        if ORGANISM
        else {}
    )
    return paths | EVALUATION["paths"]


def evaluation_settings():
    keys = ("limit", "batch_size", "backend", "attack_m", "judge", "sandbox")
    return {key: EVALUATION[key] for key in keys} | {
        "seed": config["seed"],
        "max_length": config["data"]["max_length"],
    }
