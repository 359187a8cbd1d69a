from mesa_moe.logs import setup_logging
from mesa_moe.reporting import write_summary

setup_logging(snakemake.log[0])
write_summary(
    snakemake.params.model,
    snakemake.input.metrics,
    snakemake.input.sparsity,
    snakemake.output.table,
    snakemake.output.markdown,
    snakemake.output.scatter,
    snakemake.output.sparsity,
)
