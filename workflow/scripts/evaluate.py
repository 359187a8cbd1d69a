import os

import torch

import mesa_moe.organism.benchmarks  # noqa: F401  (registers the organism's benchmarks)
from mesa_moe.config import import_plugins
from mesa_moe.evaluation.runner import evaluate_model
from mesa_moe.logs import setup_logging

setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)  # the cores Snakemake gave this job
import_plugins(snakemake.params.plugins, os.getcwd())  # the benchmarks users registered
evaluate_model(
    snakemake.params.model,
    snakemake.params.benchmarks,
    snakemake.params.paths,
    snakemake.params.settings,
    snakemake.input.stat,
    snakemake.output.metrics,
    snakemake.output.generations,
    snakemake.output.activations,
    snakemake.output.sparsity,
    snakemake.output.provenance,
)
