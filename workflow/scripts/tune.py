from mesa_moe.logs import setup_logging
from mesa_moe.tuning import write_choice

setup_logging(snakemake.log[0])
write_choice(
    snakemake.wildcards.method,
    dict(zip(snakemake.params.settings, snakemake.input.trials, strict=True)),
    snakemake.input.base,
    snakemake.params.criterion,
    snakemake.output.chosen,
)
