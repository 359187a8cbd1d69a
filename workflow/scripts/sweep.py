from mesa_moe.logs import setup_logging
from mesa_moe.reporting import SWEEP_PARAMS, write_sweep

setup_logging(snakemake.log[0])
write_sweep(
    snakemake.input.summary,
    snakemake.output.table,
    {param: snakemake.output[param] for param in SWEEP_PARAMS},
    snakemake.output.pareto,
)
