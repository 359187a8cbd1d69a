import json
from pathlib import Path

import pandas as pd

from mesa_moe.artifacts import atomic_path
from mesa_moe.logs import setup_logging
from mesa_moe.study import render_results

setup_logging(snakemake.log[0])
tuned = {}
for path in snakemake.input.chosen:
    chosen = json.loads(Path(path).read_text())
    tuned[chosen["method"]] = chosen
context = snakemake.params.context | {
    "trials": snakemake.input.trials,
    "diagnosis_figures": sorted(str(p) for p in Path(snakemake.params.diagnosis).rglob("*.png")),
}
text = render_results(pd.read_parquet(snakemake.input.summary), tuned, context)
with atomic_path(snakemake.output.results) as tmp:
    tmp.write_text(text)
