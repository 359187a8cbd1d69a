from mesa_moe.logs import setup_logging
from mesa_moe.selection import run_selection

setup_logging(snakemake.log[0])
run_selection(
    snakemake.input.activations,
    snakemake.input.coactivation,
    snakemake.params.selector,
    snakemake.params.selection,
    snakemake.output.experts,
    snakemake.output.figure,
    snakemake.output.cost_curve,
    snakemake.output.provenance,
    snakemake.output.get("plan"),
)
