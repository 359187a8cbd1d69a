import torch

from mesa_moe.logs import setup_logging
from mesa_moe.organism.vendor import evaluate_vendor

log = setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)  # the cores Snakemake gave this job
evaluate_vendor(
    snakemake.input.model,
    snakemake.input.data,
    snakemake.params.eval,
    snakemake.output.metrics,
    log,
    snakemake.params.chat_template_kwargs,
)
