from mesa_moe.artifacts import write_parquet
from mesa_moe.logs import setup_logging
from mesa_moe.reporting import summary_table

setup_logging(snakemake.log[0])
write_parquet(
    summary_table(snakemake.params.model, snakemake.input.metrics), snakemake.output.table
)
