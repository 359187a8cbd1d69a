"""The workflow's DAG as data: every job's rule, wildcards, input, output and params (what a dry
run does not print), and stand-in outputs so that a DAG can be planned past its checkpoints."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Snakemake's own DAG (its API, then the Workflow it builds), in a child process: the Snakefile
# runs with the config given, as `snakemake -n` would.
DAG_SCRIPT = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.enums import Quietness
from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

snakefile, workdir, configfile, forceall = sys.argv[1:5]
with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
    workflow_api = api.workflow(
        ResourceSettings(cores=2),
        ConfigSettings(configfiles=[Path(configfile)]),
        snakefile=Path(snakefile),
        workdir=Path(workdir),
    )
    workflow_api.dag(DAGSettings(forceall=forceall == "1"))
    workflow = workflow_api._workflow
    workflow._prepare_dag(
        forceall=forceall == "1", ignore_incomplete=True, lock_warn_only=True, nolock=True
    )
    workflow._build_dag()
    jobs = [
        {
            "rule": job.rule.name,
            "wildcards": dict(job.wildcards_dict),
            "input": [str(f) for f in job.input],
            "output": [str(f) for f in job.output],
            "params": dict(job.params.items()),
            "needrun": workflow.dag.needrun(job),
        }
        for job in workflow.dag.jobs
    ]
json.dump(jobs, sys.stdout, default=str)
"""


def dag_jobs(workdir: Path, configfile: Path, forceall: bool = True) -> list[dict]:
    """Every job of the DAG of `configfile` in `workdir` (all of them with forceall, else the
    ones Snakemake has in its DAG, `needrun` saying which would run)."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            DAG_SCRIPT,
            str(ROOT / "Snakefile"),
            str(workdir),
            str(configfile),
            "1" if forceall else "0",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def materialise(workdir: Path, jobs: list[dict], contents: dict[str, str] | None = None) -> None:
    """Stand-in outputs of every job (empty files and folders, or `contents` by path), each
    newer than its inputs, so Snakemake sees the DAG as run (no metadata: its params trigger
    stays silent)."""
    contents = contents or {}
    producer = {path: job for job in jobs for path in job["output"]}
    depth: dict[int, int] = {}

    def level(job: dict) -> int:
        key = id(job)
        if key not in depth:
            depth[key] = 1 + max(
                (level(producer[p]) for p in job["input"] if p in producer), default=0
            )
        return depth[key]

    start = time.time()  # after the scripts', or their code trigger fires
    for job in jobs:
        for path in map(workdir.joinpath, job["output"]):
            if path.suffix:  # files carry a suffix here; model and data folders do not
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(contents.get(str(path.relative_to(workdir)), ""))
            else:
                path.mkdir(parents=True, exist_ok=True)
            os.utime(path, (start + level(job), start + level(job)))
