"""Per-stage wall times of a workflow run, from Snakemake's benchmark files.

    python benchmarks/stage_times.py [results] [--csv stage_times.csv]

Reads results/<model>/benchmarks/<rule>/*.tsv (one file per job, written by each rule's
`benchmark:` directive; a file may hold several rows when a job is repeated) and prints, per
model and rule: jobs, total / mean / max wall seconds, total CPU seconds and the largest peak RSS.
The share column is the rule's part of the model's summed job time (jobs that ran in parallel
count in full).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

COLUMNS = ["model", "rule", "jobs", "total_s", "mean_s", "max_s", "cpu_s", "max_rss_mb", "share"]


def read_benchmarks(results: Path) -> pd.DataFrame:
    """One row per benchmark record: model, rule, job (file stem), s, cpu_time, max_rss."""
    frames = []
    for path in sorted(results.glob("*/benchmarks/*/*.tsv")):
        frame = pd.read_csv(path, sep="\t", na_values=["NA", "-"])
        missing = {"s", "cpu_time", "max_rss"} - set(frame.columns)
        if missing:
            raise ValueError(
                f"{path}: not a Snakemake benchmark file (no {sorted(missing)} columns)"
            )
        model, rule = path.parts[-4], path.parts[-2]
        frames.append(
            frame[["s", "cpu_time", "max_rss"]].assign(model=model, rule=rule, job=path.stem)
        )
    if not frames:
        raise FileNotFoundError(f"no benchmark files under {results}/<model>/benchmarks/<rule>/")
    return pd.concat(frames, ignore_index=True)


def stage_times(records: pd.DataFrame) -> pd.DataFrame:
    """Per (model, rule): COLUMNS; a repeated job counts once, with its mean time."""
    jobs = records.groupby(["model", "rule", "job"], as_index=False).agg(
        s=("s", "mean"), cpu_time=("cpu_time", "mean"), max_rss=("max_rss", "max")
    )
    table = jobs.groupby(["model", "rule"], as_index=False).agg(
        jobs=("job", "size"),
        total_s=("s", "sum"),
        mean_s=("s", "mean"),
        max_s=("s", "max"),
        cpu_s=("cpu_time", "sum"),
        max_rss_mb=("max_rss", "max"),
    )
    table["share"] = table.total_s / table.groupby("model").total_s.transform("sum")
    return table.sort_values(["model", "total_s"], ascending=[True, False], ignore_index=True)[
        COLUMNS
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", default="results", type=Path)
    parser.add_argument("--csv", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    table = stage_times(read_benchmarks(args.results))
    if args.csv:
        table.to_csv(args.csv, index=False)
    pd.options.display.float_format = "{:.2f}".format
    pd.options.display.width = 120
    for model, rows in table.groupby("model"):
        print(f"{model}: {rows.total_s.sum():.1f} s of jobs")
        print(rows.drop(columns="model").to_string(index=False))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
