# Diagnosis (docs/method.md §6.7): which files the `diagnosis` rule reads and writes.
from pathlib import Path

DIAGNOSIS_DIR = f"{RESULTS}/diagnosis"
TUNING_TRIALS = f"{RESULTS}/tune/trials.parquet"
# One figure of the tuning trials per parameter the tuning searches (two values or more).
VAL_PARAMS = [
    param
    for param in ("gamma", "eps")
    if TUNING_ON and len(TUNING["space"].get(param, [])) >= 2
]


def ot_run(params):
    """The OT selection a run is measured against: its own (w, ε), else the config's first."""
    return OT_RUN.format(
        w=params.get("w", SELECTION["w"][0]),
        eps=params.get("eps", SELECTION["epsilon"][0]),
    )


def diagnosed_selections(method, run):
    """[{selector, run, path}]: the OT selection of the run's (w, ε) (Base: every OT selection),
    and the method's own selection where it has one and it is not OT."""
    if method == BASE:
        settings = itertools.product(SELECTION["w"], SELECTION["epsilon"])
        ot_runs = [ot_run({"w": w, "eps": eps}) for w, eps in settings]
    else:
        ot_runs = [ot_run(parse_run(run))]
    selections = [
        {
            "selector": "ot",
            "run": name,
            "path": f"{RESULTS}/select/ot/{name}/experts.parquet",
        }
        for name in ot_runs
    ]
    selector = METHODS[method].selector if method != BASE else None
    if selector not in (None, "ot"):
        path = selection_file(method, run)
        selections.append(
            {"selector": selector, "run": Path(path).parent.name, "path": path}
        )
    return selections


def diagnosed_evaluations():
    """What write_diagnosis reads per evaluated model: its profile, sparsity and selections."""
    return [
        {
            "method": method,
            "run": run,
            "activations": f"{EVAL_DIR.format(method=method, run=run)}/activations.parquet",
            "sparsity": f"{EVAL_DIR.format(method=method, run=run)}/sparsity.parquet",
            "selections": diagnosed_selections(method, run),
        }
        for method, run in evaluation_runs()
    ]


def diagnosis_input(wildcards):
    evaluations = diagnosed_evaluations()
    inputs = {
        "activations": [e["activations"] for e in evaluations],
        "sparsity": [e["sparsity"] for e in evaluations],
        "selections": sorted({s["path"] for e in evaluations for s in e["selections"]}),
        "summary": rules.summary.output.table,
    }
    return inputs | ({"trials": TUNING_TRIALS} if TUNING_ON else {})


# The routing-attack part of the diagnosis exists only when a benchmark runs the attack.
ATTACKED = any(
    get_benchmark(name).attack == "routing" for name in EVALUATION["benchmarks"]
)


def attack_outputs():
    """The ASR-vs-m table and figure {key: path}; none without a routing-attack benchmark."""
    if not ATTACKED:
        return {}
    return {
        "attack": f"{DIAGNOSIS_DIR}/asr_vs_m.parquet",
        "attack_figure": report(
            f"{DIAGNOSIS_DIR}/asr_vs_m.png",
            caption="../workflow/report/diagnosis.rst",
            category="Diagnosis",
        ),
    }


def val_figures():
    """The validation figures {val_vs_<param>: path} of VAL_PARAMS (none when tuning is off)."""
    return {
        f"val_vs_{param}": report(
            f"{DIAGNOSIS_DIR}/val_vs_{param}.png",
            caption="../workflow/report/diagnosis.rst",
            category="Diagnosis",
        )
        for param in VAL_PARAMS
    }
