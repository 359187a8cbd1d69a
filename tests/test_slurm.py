"""The SLURM profile: resources per rule in a dry run, and a real sbatch line through stub
commands."""

import os
import re
import stat
import subprocess
import sys

import pytest
import yaml
from test_workflow import ROOT, tiny_config

pytest.importorskip("snakemake_executor_plugin_slurm")
pytestmark = pytest.mark.slow  # snakemake on the organism, through the SLURM profile
PROFILE = ROOT / "profiles" / "slurm"
STUBS = {
    "sbatch": 'printf "%s\\n" "$*" >> "$SBATCH_LOG"; echo 4242',
    "sacct": 'echo "4242|FAILED|1:0"',
    "squeue": "exit 0",
    "sinfo": "echo cpu",
    "sacctmgr": "echo acct",
    "scancel": "exit 0",
}


@pytest.fixture
def slurm_env(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in STUBS.items():
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    workdir = tmp_path / "work"
    (workdir / "config").mkdir(parents=True)
    config = tiny_config()
    config["training"]["gpus"] = 2
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    env = dict(
        os.environ,
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        SBATCH_LOG=str(tmp_path / "sbatch.log"),
        MESA_SLURM_ACCOUNT="acct",
        MESA_SLURM_PARTITION="cpu",
        MESA_SLURM_GPU_PARTITION="gpu",
    )
    return workdir, env, tmp_path / "sbatch.log"


def slurm_snakemake(workdir, env, *args):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(ROOT / "Snakefile"),
            "--directory",
            str(workdir),
            "--profile",
            str(PROFILE),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_dry_run_shows_resources_per_rule(slurm_env):
    workdir, env, _ = slurm_env
    result = slurm_snakemake(workdir, env, "-n")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    train = out[out.index("rule train:") :]
    train = train[: train.index("\n\n")]
    assert re.search(r"resources:.*gpu=2", train) and "cpus_per_gpu=8" in train
    assert (
        "mem_mb=128000" in train and "slurm_partition=gpu" in train and "tasks_per_gpu=0" in train
    )
    select = out[out.index("rule select:") :]
    assert "gpu=" not in select[: select.index("\n\n")]


def test_submission_line_through_stub_sbatch(slurm_env):
    workdir, env, log = slurm_env
    result = slurm_snakemake(
        workdir,
        env,
        "--until",
        "organism_data",
        "--jobs",
        "1",
        "--slurm-init-seconds-before-status-checks",
        "1",
    )
    assert log.exists(), result.stderr[-3000:]
    line = log.read_text().splitlines()[0]
    assert "-A acct" in line and "-p cpu" in line and "--mem 2000" in line
    assert "--ntasks=1" in line and "-t 10" in line
    assert "--wrap=" in line and "--target-jobs 'organism_data:'" in line
