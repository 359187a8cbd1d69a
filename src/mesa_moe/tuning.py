"""Tuning on validation files only: each method's trials, their scores, and the chosen one.

A trial is one setting of the run parameters a method reads (`Method.run_keys`) plus the learning
rate, trained with one seed and evaluated on the criterion's val files. The choice (`choose`) is
the safest trial whose utility keeps `min_utility_ratio` of the Base's; its settings are then
trained with every seed and evaluated on the eval files, which the choice never sees.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .artifacts import write_json
from .methods import get_method
from .reporting import oriented
from .runs import format_run, parse_run

# a routing-attack score under attack (m > 0 experts masked); m = 0 is the unattacked model
ATTACKED = re.compile(r".+_m[1-9]\d*")


def trial_keys(method: str) -> tuple[str, ...]:
    """The run parameters a method's trials set: its run keys, then the learning rate."""
    return (*get_method(method).run_keys, "lr")


def trial_runs(method: str, space: dict, trials: int, seed: int, fixed: dict) -> list[str]:
    """The method's trial run names (without a training seed), in trial order.

    Only the space's keys the method reads vary; every other key of the trial takes `fixed`'s
    value (the config's first). With at most `trials` combinations all of them are tried, else
    `trials` of them drawn without replacement by a generator seeded with `seed` (kept in the
    order of the full product, so a trial's position never depends on the draw).
    """
    keys = trial_keys(method)
    varied = [key for key in keys if key in space]
    combinations = list(itertools.product(*(space[key] for key in varied)))
    if len(combinations) > trials:
        drawn = np.random.default_rng(seed).choice(len(combinations), trials, replace=False)
        combinations = [combinations[i] for i in sorted(drawn)]
    runs = []
    for values in combinations:
        params = fixed | dict(zip(varied, values))
        runs.append(format_run(**{key: params[key] for key in keys}))
    return runs


def headline_score(entry: dict) -> float:
    """A metrics.json entry's headline score, higher is better (`reporting.oriented`): its one
    metric, or for a routing attack the mean over the attacked m (m > 0)."""
    scores = entry["scores"]
    attacked = {key: value for key, value in scores.items() if ATTACKED.fullmatch(key)}
    chosen = attacked or scores
    table = pd.DataFrame({"metric": list(chosen), "value": list(chosen.values())})
    return float(oriented(table).mean())


def criterion_scores(metrics: dict[str, dict], criterion: dict) -> tuple[float, float]:
    """(safety, utility): the means of the headline scores of the criterion's safety and
    utility benchmarks in `metrics` (benchmark → its metrics.json entry)."""
    scores = []
    for name in ("safety", "utility"):
        missing = [b for b in criterion[name] if b not in metrics]
        if missing:
            raise ValueError(
                f"tuning.criterion.{name}: no result for {missing} (have {sorted(metrics)})"
            )
        values = [headline_score(metrics[benchmark]) for benchmark in criterion[name]]
        if not np.all(np.isfinite(values)):
            raise ValueError(f"tuning.criterion.{name}: a score is not finite: {values}")
        scores.append(float(np.mean(values)))
    return scores[0], scores[1]


def choose(method: str, trials: list[dict], base: dict, criterion: dict) -> dict:
    """The chosen trial (chosen.json): the highest safety among the trials whose utility is at
    least criterion['min_utility_ratio'] × the Base's; when none is, the highest utility
    (feasible false). Ties: the higher utility (the higher safety when none is feasible), then
    the earlier trial.

    trials: [{"run", "safety", "utility"}] in trial order; base: {"safety", "utility"}.
    """
    if not trials:
        raise ValueError(f"tuning: method {method!r} has no trials")
    floor = criterion["min_utility_ratio"] * base["utility"]
    scored = [
        {
            "run": trial["run"],
            "params": parse_run(trial["run"]),
            "safety": trial["safety"],
            "utility": trial["utility"],
            "feasible": trial["utility"] >= floor,
        }
        for trial in trials
    ]
    feasible = [trial for trial in scored if trial["feasible"]]
    if feasible:
        best = max(feasible, key=lambda trial: (trial["safety"], trial["utility"]))
    else:
        best = max(scored, key=lambda trial: (trial["utility"], trial["safety"]))
    return {
        "method": method,
        "run": best["run"],
        "params": best["params"],
        "criterion": criterion,
        "base": {"safety": base["safety"], "utility": base["utility"]},
        "feasible": best["feasible"],
        "trials": scored,
    }


def read_scores(metrics_path: str | Path, criterion: dict) -> dict:
    safety, utility = criterion_scores(json.loads(Path(metrics_path).read_text()), criterion)
    return {"safety": safety, "utility": utility}


def write_choice(
    method: str,
    trial_metrics: dict[str, str],
    base_metrics: str,
    criterion: dict,
    chosen_path: str | Path,
) -> dict:
    """The `tune_choose` stage: chosen.json from each trial's val metrics.json (trial run name
    without seed → path, in trial order) and the Base's."""
    trials = [{"run": run} | read_scores(path, criterion) for run, path in trial_metrics.items()]
    chosen = choose(method, trials, read_scores(base_metrics, criterion), criterion)
    write_json(chosen, chosen_path)
    return chosen
