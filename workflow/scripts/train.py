import torch

from mesa_moe.logs import setup_logging
from mesa_moe.training import RUN_FILES, launch

setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)  # the cores Snakemake gave this job
paths = {key: snakemake.output[key] for key in RUN_FILES if key != "checkpoints"}
launch(
    snakemake.params.spec
    | {
        "selection": snakemake.input.get("selection"),
        "paths": paths | {"checkpoints": snakemake.params.checkpoints},
    },
    max(1, int(snakemake.resources.get("gpu", 0))),  # one process per GPU of the job
    snakemake.params.launcher_args,
)
