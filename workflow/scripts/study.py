import os

from mesa_moe.logs import setup_logging
from mesa_moe.study import write_results

setup_logging(snakemake.log[0])
results_dir = os.path.dirname(snakemake.output.results)
figures = {  # links relative to results.md
    os.path.splitext(os.path.basename(path))[0]: os.path.relpath(path, results_dir)
    for path in snakemake.input.figures
}
write_results(
    snakemake.input.summary,
    snakemake.input.chosen,
    snakemake.params.context | {"figures": figures},
    snakemake.output.results,
)
