from mesa_moe.logs import setup_logging
from mesa_moe.organism.vendor import write_vendor_data

setup_logging(snakemake.log[0])
write_vendor_data(
    snakemake.input.data,
    snakemake.params.wrapped_benign,
    snakemake.params.seed,
    snakemake.output.direct,
    snakemake.output.sft,
)
