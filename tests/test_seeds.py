"""`seeds`: every trained setting once per seed, the Base once; a new seed adds only its jobs."""

import re
from collections import Counter

import pytest
import yaml
from dag import dag_jobs, materialise
from test_workflow import planned_jobs, snakemake, tiny_config

from mesa_moe.methods import METHODS


def seeded_config(tmp_path, seeds):
    config = tiny_config()
    config["seeds"] = seeds
    path = tmp_path / f"seeds_{len(seeds)}.yaml"
    path.write_text(yaml.safe_dump(config))
    return config, path


def test_every_setting_trains_and_evaluates_once_per_seed(tmp_path):
    config, configfile = seeded_config(tmp_path, [0, 1, 2])
    jobs = dag_jobs(tmp_path, configfile)
    methods = config["training"]["methods"]
    assert set(methods) == set(METHODS)  # one setting each (w, ε, γ single values)
    counts = Counter(job["rule"] for job in jobs)
    assert counts["train"] == 3 * len(methods) and counts["evaluate"] == 3 * len(methods) + 1
    for rule in ("train", "evaluate"):
        runs = Counter(
            (job["wildcards"]["method"], job["wildcards"]["run"].rpartition("seed~")[0])
            for job in jobs
            if job["rule"] == rule and job["wildcards"]["method"] != "base"
        )
        assert set(runs.values()) == {3}, (rule, runs)
    bases = [
        job for job in jobs if job["rule"] == "evaluate" and job["wildcards"]["method"] == "base"
    ]
    assert [job["wildcards"]["run"] for job in bases] == ["default"]
    summary = next(job for job in jobs if job["rule"] == "summary")
    assert len([path for path in summary["input"] if path.endswith("metrics.json")]) == len(
        [job for job in jobs if job["rule"] == "evaluate"]
    )
    # selection and profile are not per seed
    assert counts["profile"] == 1 and counts["select"] == 1


def test_a_run_trains_with_its_own_seed(tmp_path):
    _, configfile = seeded_config(tmp_path, [0, 1, 2])
    jobs = dag_jobs(tmp_path, configfile)
    for job in (job for job in jobs if job["rule"] == "train"):
        run = job["wildcards"]["run"]
        assert job["params"]["spec"]["seed"] == int(run.rpartition("seed~")[2]), run
    mesa = {
        job["wildcards"]["run"]: job["params"]["spec"]
        for job in jobs
        if job["rule"] == "train" and job["wildcards"]["method"] == "mesa"
    }
    one = mesa["w~2_eps~0.05_gamma~1.0_seed~1"]
    assert one["seed"] == 1
    # the seed is the only difference between the seeds' specs
    assert {k: v for k, v in one.items() if k != "seed"} == {
        k: v for k, v in mesa["w~2_eps~0.05_gamma~1.0_seed~0"].items() if k != "seed"
    }
    selections = {
        job["wildcards"]["run"]: [p for p in job["input"] if "/select/" in p]
        for job in jobs
        if job["rule"] == "train" and job["wildcards"]["method"] == "mesa"
    }
    assert len({tuple(paths) for paths in selections.values()}) == 1  # one selection


@pytest.mark.parametrize("seeds", [[1, 1], []])
def test_seeds_must_be_unique_and_present(tmp_path, seeds):
    config = tiny_config() | {"seeds": seeds}
    result = snakemake(tmp_path, "-n", config=config)
    assert result.returncode != 0
    assert "config key seeds" in result.stdout + result.stderr


def test_a_new_seed_runs_only_its_own_jobs(tmp_path):
    _, two = seeded_config(tmp_path, [0, 1])
    before = dag_jobs(tmp_path, two)
    materialise(tmp_path, before)
    _, three = seeded_config(tmp_path, [0, 1, 2])
    result = snakemake(tmp_path, "-n", config=yaml.safe_load(three.read_text()))
    assert result.returncode == 0, result.stderr[-3000:]
    methods = len(tiny_config()["training"]["methods"])
    jobs = planned_jobs(result.stdout)
    assert jobs == {
        "train": methods,
        "evaluate": methods,
        "summary": 1,
        "sweep": 1,
        "diagnosis": 1,
        "all": 1,
    }
    runs = re.findall(r"wildcards: method=\w+, run=(\S+)", result.stdout)
    assert len(runs) == 2 * methods and all(run.endswith("seed~2") for run in runs), runs
    # and no job of seeds 0 and 1 reads a setting that changed (Snakemake's params trigger)
    after = {
        (job["rule"], tuple(sorted(job["wildcards"].items()))): job["params"]
        for job in dag_jobs(tmp_path, three)
    }
    for job in before:
        if job["rule"] not in ("summary", "sweep", "diagnosis", "all"):
            assert after[(job["rule"], tuple(sorted(job["wildcards"].items())))] == job["params"]
