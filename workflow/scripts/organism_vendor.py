import torch

from mesa_moe.logs import setup_logging
from mesa_moe.organism.vendor import build_vendor

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)  # the cores Snakemake gave this job
organism = snakemake.params.organism
build_vendor(
    snakemake.input.data,
    snakemake.input.base,
    snakemake.output.model,
    organism["vendor"],
    organism["eval"],
    organism["seed"],
    log,
    snakemake.params.chat_template_kwargs,
)
