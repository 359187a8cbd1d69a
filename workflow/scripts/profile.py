import torch

from mesa_moe.logs import setup_logging
from mesa_moe.profiling import run_profile

setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)  # the cores Snakemake gave this job
run_profile(
    snakemake.params.model,
    snakemake.params.data,
    snakemake.params.batch_size,
    snakemake.params.seed,
    snakemake.output.activations,
    snakemake.output.coactivation,
    snakemake.output.stat,
    snakemake.output.provenance,
)
